// Child of the matter bench group: one full commissioning per run, matter.js controller on our noble bindings ↔
// matter.js device behind a simulated proxy. Its own process because matter.js needs UDP (CASE, mDNS), which the
// bench's network guard forbids; the LoopbackNetwork it runs on refuses any destination off this host.

import { createSocket } from 'node:dgram';
import { createRequire } from 'node:module';
import { loadDist } from './common.mjs';

const require = createRequire(import.meta.url);

const mdnsPort = await new Promise((resolve) => {
  const socket = createSocket('udp4');
  socket.bind(0, '127.0.0.1', () => {
    const { port } = socket.address();
    socket.close(() => resolve(port));
  });
});
const { prepareMatterEnvironment } = await loadDist('fixture-server/matter/matter-environment.js');
await prepareMatterEnvironment({ mdnsPort });
const { startSimulatedProxy } = await loadDist('internal.js');
const { ProxyPool } = await loadDist('index.js');
const { installNobleBindings } = await loadDist('noble/index.js');
const noble = require('@stoprocent/noble');
const { Environment, singleton } = await import('@matter/main');
const { Ble, ControllerCommissioningFlow, MdnsService } = await import('@matter/main/protocol');
const { NodeJsBle } = await import('@matter/nodejs-ble');
const { CommissioningController } = await import('@project-chip/matter.js');
Ble.get = singleton(() => new NodeJsBle());

let result;
{
  const run = 0;
  const marks = {};
  const mark = (name) => (marks[name] ??= performance.now());
  const t0 = performance.now();
  const node = await startSimulatedProxy({ name: `bench-matter-${run}`, profile: 'matter', matter: { mdnsPort } });
  mark('deviceReady');
  const pool = new ProxyPool([`127.0.0.1:${node.server.address.port}`]);
  const bindings = installNobleBindings(noble, pool);
  bindings.on('discover', (id) => {
    if (id === node.matter[0].peripheral.mac.replaceAll(':', '').toLowerCase()) mark('discovered');
  });
  // BTP segments over BLE: C1 writes from the controller, C2 indications from the device.
  let writes = 0;
  let indications = 0;
  bindings.on('write', () => writes++);
  bindings.on('read', (_id, _service, _characteristic, _data, isNotification) => isNotification && indications++);
  node.matter[0].onEvent((event) => {
    if (event.type === 'btpSession') mark('btp');
  });
  class TimedFlow extends ControllerCommissioningFlow {
    async executeCommissioning() {
      mark('pase');
      for (const step of this.commissioningSteps) {
        const logic = step.stepLogic;
        step.stepLogic = async () => {
          if (step.name === 'Reconnect') mark('bleStepsDone');
          const result = await logic();
          if (step.name === 'Reconnect') mark('case');
          return result;
        };
      }
      await super.executeCommissioning();
    }
  }
  const controller = new CommissioningController({
    environment: { environment: Environment.default, id: `bench-${run}` },
    autoConnect: false,
    adminFabricLabel: 'bench',
  });
  await controller.start();
  mark('controllerReady');
  try {
    await controller.commissionNode(
      {
        passcode: 20202021,
        discovery: { identifierData: { longDiscriminator: 3840 }, discoveryCapabilities: { ble: true } },
        commissioning: { regulatoryLocation: 0, regulatoryCountryCode: 'XX', wifiNetwork: { wifiSsid: 'bench', wifiCredentials: 'bench' } },
      },
      { connectNodeAfterCommissioning: false, commissioningFlowImpl: TimedFlow },
    );
    mark('commissioned');
    const start = marks.controllerReady;
    result = {
      deviceStartMs: marks.deviceReady - t0,
      discoveryMs: marks.discovered - start,
      btpMs: marks.btp - start,
      paseMs: marks.pase - start,
      bleStepsMs: marks.bleStepsDone - marks.pase,
      caseMs: marks.case - marks.bleStepsDone,
      totalMs: marks.commissioned - start,
      segments: writes + indications,
    };
  } finally {
    await controller.close();
    await bindings.close();
    await pool.close();
    await node.server.close();
  }
}
await Environment.default.get(MdnsService)[Symbol.asyncDispose]();
process.send(result);
