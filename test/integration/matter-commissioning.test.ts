import noble from '@stoprocent/noble';
import { beforeAll, describe, expect, it } from 'vitest';
import { formatMac } from '../../src/bluetooth/address.js';
import { startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import type { MatterDeviceEvent } from '../../src/fixture-server/matter/matter-ipc.js';
import type { LinkEvent } from '../../src/fixture-server/simulated-peripheral.js';
import { installNobleBindings } from '../../src/noble/index.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { freeUdpPort, prepareMatterController } from '../helpers/matter.js';

const MATTER_MAC = 'C4:4D:A7:00:0F:00';

/** ControllerCommissioningFlow's result codes (its enum is not exported). */
const STEP_RESULTS = ['success', 'failure', 'skipped', 'stop'];

/** The part of matter.js's OnOff cluster client the test uses. */
interface OnOffClient {
  getOnOffAttribute(requestFromRemote?: boolean): Promise<boolean>;
  toggle(): Promise<void>;
}
/** matter.js's own commissioning steps a BLE commissioning must pass (ControllerCommissioningFlow names). */
const REQUIRED_STEPS = [
  'GetInitialData',
  'GeneralCommissioning.ArmFailsafe',
  'GeneralCommissioning.ConfigureRegulatoryInformation',
  'OperationalCredentials.DeviceAttestation',
  'OperationalCredentials.Certificates',
  'AccessControl',
  'NetworkCommissioning.Validate',
  'NetworkCommissioning.Wifi',
  'Reconnect',
  'GeneralCommissioning.Complete',
];

let mdnsPort = 0;
let matter: Awaited<ReturnType<typeof prepareMatterController>>;

// matter.js is loaded once per process, before the tests: its modules start process-wide caches (with their
// own timers) when they load, which are not the test's doing.
beforeAll(async () => {
  mdnsPort = await freeUdpPort();
  matter = await prepareMatterController(mdnsPort);
}, 30_000);

describe('matter - commissioning through a simulated proxy', () => {
  it('matter - a matter.js controller on our noble bindings commissions serve --profile matter over BLE, then reads OnOff over CASE', async () => {
    // The device first: its own process, its own matter.js.
    const node = await startSimulatedProxy({ profile: 'matter', matter: { mdnsPort } });
    const device = node.matter[0]!;
    const deviceEvents: MatterDeviceEvent[] = [];
    device.onEvent((event) => deviceEvents.push(event));
    const linkEvents: LinkEvent[] = [];
    device.peripheral.onLink((event) => linkEvents.push(event));
    const stages: string[] = [];

    // Then the controller: matter.js set up for loopback, and noble's default instance on our bindings before
    // matter.js's BLE layer loads it.
    const pool = new ProxyPool([`127.0.0.1:${node.server.address.port}`]);
    const bindings = installNobleBindings(noble, pool);
    bindings.on('discover', (id: string) => {
      if (id === MATTER_MAC.replaceAll(':', '').toLowerCase() && !stages.includes('discovered')) stages.push('discovered');
    });
    const { Environment, singleton } = await import('@matter/main');
    const { Ble, ControllerCommissioningFlow } = await import('@matter/main/protocol');
    const { NodeJsBle } = await import('@matter/nodejs-ble');
    const { CommissioningController } = await import('@project-chip/matter.js');
    const { OnOff } = await import('@matter/main/clusters/on-off');
    Ble.get = singleton(() => new NodeJsBle());

    /** matter.js's own flow, recording each step it completed and with what result. */
    class RecordingFlow extends ControllerCommissioningFlow {
      override async executeCommissioning(): Promise<void> {
        for (const step of this.commissioningSteps) {
          const run = step.stepLogic;
          step.stepLogic = async () => {
            const result = await run();
            stages.push(`${step.name}:${STEP_RESULTS[result.code] ?? result.code}`);
            return result;
          };
        }
        await super.executeCommissioning();
      }
    }

    const controller = new CommissioningController({
      environment: { environment: Environment.default, id: 'test-controller' },
      autoConnect: false,
      adminFabricLabel: 'esphome-ble test',
    });
    try {
      await controller.start();
      const nodeId = await controller.commissionNode(
        {
          passcode: device.info.passcode,
          discovery: { identifierData: { longDiscriminator: device.info.discriminator }, discoveryCapabilities: { ble: true } },
          commissioning: {
            regulatoryLocation: 0,
            regulatoryCountryCode: 'XX',
            wifiNetwork: { wifiSsid: 'esphome-ble-test', wifiCredentials: 'not-a-real-network' },
          },
        },
        { connectNodeAfterCommissioning: false, commissioningFlowImpl: RecordingFlow },
      );

      // Discovery by discriminator through the proxy's advertisements, the link through its slot, BTP at the MTU.
      expect(stages[0]).toBe('discovered');
      expect(linkEvents[0]).toEqual({ type: 'connected', mtu: 247 });
      expect(deviceEvents).toContainEqual({ type: 'btpSession', attMtu: 244 });
      // PASE worked (every step runs on its session) and each commissioning step succeeded or was skipped.
      const completed = stages.slice(1).map((s) => s.split(':')[0]);
      for (const step of REQUIRED_STEPS) expect(completed, step).toContain(step);
      expect(stages.filter((s) => s.includes(':') && !/:(success|skipped|stop)$/.test(s))).toEqual([]);
      expect(deviceEvents).toContainEqual({ type: 'commissioned', fabrics: 1 });
      // The device left commissioning mode: it ended the BLE link (0x13) and went off the air.
      await expect.poll(() => linkEvents.at(-1)).toEqual({ type: 'disconnected', reason: 0x13 });
      expect(device.peripheral.advertisingEnabled).toBe(false);
      await expect.poll(() => node.bluetooth.linkAddresses).toEqual([]);

      // Operational: CASE over UDP on loopback (found by mDNS on loopback), an attribute read and a command.
      const paired = await controller.getNode(nodeId);
      paired.connect();
      await paired.events.initialized;
      const light = paired.getDevices()[0]!;
      // Typed by hand: matter.js's cluster typing does not survive exactOptionalPropertyTypes.
      const onOff = (light.getClusterClient as (cluster: unknown) => OnOffClient | undefined).call(light, OnOff.Cluster)!;
      expect(await onOff.getOnOffAttribute(true)).toBe(false);
      await onOff.toggle();
      expect(await onOff.getOnOffAttribute(true)).toBe(true);
      expect(deviceEvents).toContainEqual({ type: 'onOff', on: true });
      expect(formatMac(device.peripheral.address)).toBe(MATTER_MAC);
    } finally {
      await controller.close();
      await matter.closeMdns();
      await bindings.close();
      await pool.close();
      await node.server.close();
    }
  }, 60_000);
});
