// #region readme
import noble from '@stoprocent/noble';
import { ProxyPool } from 'esphome-ble';
import { prepareMatterEnvironment } from 'esphome-ble/matter';
import { installNobleBindings } from 'esphome-ble/noble';

/**
 * Commissions the simulated light of `npx esphome-ble serve --profile matter --matter-mdns-port 5390` from this
 * process, then talks to it over IP (CASE), all on loopback: e.g. `await commissionSimulatedLight('127.0.0.1:46203',
 * 5390)` with the port serve printed.
 */
async function commissionSimulatedLight(proxy: string, mdnsPort: number): Promise<{ product: string; connected: boolean }> {
  // 1. matter.js on loopback, its mDNS on serve's port: before anything loads matter.js.
  await prepareMatterEnvironment({ mdnsPort });
  // 2. noble's default instance on the proxy, before matter.js's BLE layer loads it.
  const pool = new ProxyPool([proxy]);
  installNobleBindings(noble, pool);
  // 3. matter.js itself, its BLE layer on noble.
  const { Environment, singleton } = await import('@matter/main');
  const { Ble } = await import('@matter/main/protocol');
  const { NodeJsBle } = await import('@matter/nodejs-ble');
  const { CommissioningController } = await import('@project-chip/matter.js');
  Ble.get = singleton(() => new NodeJsBle());

  const controller = new CommissioningController({
    environment: { environment: Environment.default, id: 'my-controller' },
    autoConnect: false,
    adminFabricLabel: 'my-controller',
  });
  await controller.start();
  try {
    const nodeId = await controller.commissionNode({
      passcode: 20202021, // the simulated device's (manual code 34970112332)
      discovery: { identifierData: { longDiscriminator: 3840 }, discoveryCapabilities: { ble: true } },
      commissioning: {
        regulatoryLocation: 0,
        regulatoryCountryCode: 'XX',
        wifiNetwork: { wifiSsid: 'any', wifiCredentials: 'any' }, // it "joins" whatever it is given
      },
    });
    // commissionNode() then connects over IP: the device is on loopback already, found by mDNS there (CASE).
    const node = await controller.getNode(nodeId);
    return { product: String(node.basicInformation?.productName), connected: node.isConnected };
  } finally {
    await controller.close();
    await pool.close();
  }
}

// #endregion readme

export { commissionSimulatedLight };
