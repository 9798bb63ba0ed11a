import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { freeUdpPort, prepareMatterController } from '../helpers/matter.js';
import { commissionOverProxies } from './matter.js';

let mdnsPort = 0;
let matter: Awaited<ReturnType<typeof prepareMatterController>>;
let node: SimulatedNode | undefined;

// The README's controller runs on a real LAN; here matter.js is first pinned to loopback (mDNS on a private port).
beforeAll(async () => {
  mdnsPort = await freeUdpPort();
  matter = await prepareMatterController(mdnsPort);
}, 30_000);

afterEach(async () => {
  await matter.closeMdns();
  await node?.server.close();
  node = undefined;
});

describe('README examples - Matter', () => {
  it('examples - a matter.js controller commissions the simulated Matter light through a proxy', async () => {
    node = await startSimulatedProxy({ profile: 'matter', matter: { mdnsPort } });
    const result = await commissionOverProxies([`127.0.0.1:${node.server.address.port}`], 20202021, 3840, {
      ssid: 'home',
      password: 'secret',
    });
    expect(typeof result.nodeId).toBe('bigint');
    expect(result.product).toBe('Simulated light');
    expect(node.matter[0]!.events).toContainEqual({ type: 'commissioned', fabrics: 1 });
  }, 60_000);
});
