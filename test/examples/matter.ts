import noble from '@stoprocent/noble';
import { ProxyPool } from 'esphome-ble';
import { installNobleBindings } from 'esphome-ble/noble';

/** README: a Node Matter controller (matter.js) commissions a device over BLE, with ESPHome proxies as its radio. */
export async function matterExample(
  proxies: string[],
  wifi: { ssid: string; password: string },
): Promise<{ nodeId: bigint; product: string }> {
  // #region readme
  // First, before matter.js loads its BLE layer: @matter/nodejs-ble drives noble's default instance.
  const pool = new ProxyPool(proxies); // e.g. ['192.168.1.40', 'kitchen-proxy.local:6053']
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
      passcode: 20202021, // from the device's QR code or manual pairing code
      discovery: { identifierData: { longDiscriminator: 3840 }, discoveryCapabilities: { ble: true } },
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
  // #endregion readme
}
