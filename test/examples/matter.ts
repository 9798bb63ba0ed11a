// #region readme
import noble from '@stoprocent/noble';
import { ProxyPool } from 'esphome-ble';
import { installNobleBindings } from 'esphome-ble/noble';

/**
 * Commissions a Matter device over BLE, with ESPHome proxies as the radio, and joins it to a Wi-Fi network, e.g.
 * `await commissionOverProxies(['192.168.1.40', 'kitchen-proxy.local:6053'], 20202021, 3840, { ssid: 'home', password: '…' })`
 * with the passcode and discriminator from the device's QR code or manual pairing code.
 */
async function commissionOverProxies(
  proxies: string[],
  passcode: number,
  discriminator: number,
  wifi: { ssid: string; password: string },
): Promise<{ nodeId: bigint; product: string }> {
  // First, before matter.js loads its BLE layer: @matter/nodejs-ble drives noble's default instance.
  const pool = new ProxyPool(proxies);
  installNobleBindings(noble, pool);
  const { Environment, singleton } = await import('@matter/main');
  const { Ble } = await import('@matter/main/protocol');
  const { NodeJsBle } = await import('@matter/nodejs-ble');
  const { CommissioningController } = await import('@project-chip/matter.js');
  Ble.get = singleton(() => new NodeJsBle());

  const controller = new CommissioningController({
    environment: { environment: Environment.default, id: 'home-controller' },
    autoConnect: false,
    adminFabricLabel: 'home',
  });
  await controller.start();
  try {
    // Discovery, BTP, PASE and the commissioning steps run over BLE through whichever proxy hears the device;
    // the device then joins the Wi-Fi and the controller reaches it over IP (CASE).
    const nodeId = await controller.commissionNode({
      passcode,
      discovery: { identifierData: { longDiscriminator: discriminator }, discoveryCapabilities: { ble: true } },
      commissioning: {
        regulatoryLocation: 0, // indoor
        regulatoryCountryCode: 'XX',
        wifiNetwork: { wifiSsid: wifi.ssid, wifiCredentials: wifi.password },
      },
    });
    const node = await controller.getNode(nodeId);
    return { nodeId: BigInt(nodeId), product: String(node.basicInformation?.productName) };
  } finally {
    await controller.close();
    await pool.close();
  }
}

// #endregion readme

export { commissionOverProxies };
