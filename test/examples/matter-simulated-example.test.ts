import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { freeUdpPort, prepareMatterController } from '../helpers/matter.js';
import { commissionSimulatedLight } from './matter-simulated.js';

let mdnsPort = 0;
let matter: Awaited<ReturnType<typeof prepareMatterController>>;
let node: SimulatedNode | undefined;

// The example prepares matter.js itself; the helper does it first (same port, so the example's call returns the same
// network) to load matter.js outside the test and to close its process-wide mDNS afterwards.
beforeAll(async () => {
  mdnsPort = await freeUdpPort();
  matter = await prepareMatterController(mdnsPort);
}, 30_000);

afterEach(async () => {
  await matter.closeMdns();
  await node?.server.close();
  node = undefined;
});

describe('README examples - Matter, the simulated device from your own script', () => {
  it('examples - a script commissions serve --profile matter over BLE and reaches it over CASE, on loopback', async () => {
    node = await startSimulatedProxy({ profile: 'matter', matter: { mdnsPort } });
    const result = await commissionSimulatedLight(`127.0.0.1:${node.server.address.port}`, mdnsPort);
    expect(result).toEqual({ product: 'Simulated light', connected: true });
    expect(node.matter[0]!.events).toContainEqual({ type: 'commissioned', fabrics: 1 });
  }, 60_000);
});
