import { DeviceTypeId, ServerNode, VendorId } from '@matter/main';
import type { NetworkCommissioningServer } from '@matter/main/behaviors/network-commissioning';
import { OnOffLightDevice } from '@matter/main/devices/on-off-light';
import { Ble } from '@matter/main/protocol';
import { BridgeBle, type DeviceLink } from './bridge-ble.js';
import type { MatterDeviceConfig, ToDevice } from './matter-ipc.js';
import { SimulatedWifiNetworkCommissioningServer } from './simulated-wifi.js';

/** A running simulated Matter device: feed it the proxy's messages, stop it once. */
export interface RunningMatterDevice {
  receive(message: ToDevice): void;
  stop(): Promise<void>;
}

/**
 * Starts matter.js's own device — a ServerNode with an On/Off light, test attestation (matter.js's test DAC for
 * vendor 0xFFF1), BLE commissioning through BridgeBle and a simulated Wi-Fi interface — in this process.
 * prepareMatterEnvironment() must have run first.
 */
export async function runMatterDevice(config: MatterDeviceConfig, link: DeviceLink): Promise<RunningMatterDevice> {
  const ble = new BridgeBle(link);
  Ble.get = () => ble;
  const serial = config.mac.replaceAll(':', '');
  // Typed as the plain root endpoint: matter.js's `with()` types do not survive exactOptionalPropertyTypes.
  const root = ServerNode.RootEndpoint.with(
    SimulatedWifiNetworkCommissioningServer as unknown as typeof NetworkCommissioningServer,
  ) as unknown as typeof ServerNode.RootEndpoint;
  const options = {
    id: `esphome-ble-matter-${serial}`,
    network: {
      port: config.operationalPort,
      ble: true,
      // Commissionable over BLE only, as a device that is not on an IP network yet.
      discoveryCapabilities: { ble: true, onIpNetwork: false },
    },
    commissioning: { passcode: config.passcode, discriminator: config.discriminator },
    productDescription: { name: 'esphome-ble simulated light', deviceType: DeviceTypeId(OnOffLightDevice.deviceType) },
    basicInformation: {
      vendorName: 'esphome-ble',
      vendorId: VendorId(config.vendorId),
      productName: 'Simulated light',
      productId: config.productId,
      nodeLabel: 'Simulated light',
      serialNumber: serial,
      uniqueId: `esphome-ble-${serial}`,
      hardwareVersion: 1,
      hardwareVersionString: '1',
      softwareVersion: 1,
      softwareVersionString: '1',
    },
    networkCommissioning: SimulatedWifiNetworkCommissioningServer.initialState,
  };
  const node = await ServerNode.create(root, options);
  const light = await node.add(OnOffLightDevice, { id: 'light' });
  light.events.onOff.onOff$Changed.on((on: boolean) => link.send({ type: 'event', event: { type: 'onOff', on } }));
  node.lifecycle.commissioned.on(() =>
    link.send({ type: 'event', event: { type: 'commissioned', fabrics: node.state.operationalCredentials.commissionedFabrics } }),
  );
  node.lifecycle.decommissioned.on(() => link.send({ type: 'event', event: { type: 'decommissioned' } }));
  await node.start();
  const state = node.state as unknown as {
    commissioning: { pairingCodes: { manualPairingCode: string; qrPairingCode: string } };
    network: { operationalPort: number };
  };
  const { manualPairingCode, qrPairingCode } = state.commissioning.pairingCodes;
  link.send({ type: 'ready', operationalPort: state.network.operationalPort, manualPairingCode, qrPairingCode });
  let stopped: Promise<void> | undefined;
  return {
    receive: (message) => ble.receive(message),
    stop: () => {
      stopped ??= node.close();
      return stopped;
    },
  };
}
