import { afterEach, describe, expect, it } from 'vitest';
import { ApiConnection } from '../../src/connection/connection.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { BluetoothConnectionsFreeResponse, SubscribeBluetoothConnectionsFreeRequest } from '../../src/gen/api_pb.js';
import { subscribeAsOther } from '../helpers/fleet.js';

const PHANTOM = 0xf0_00_00_00_00_10;

const nodes: SimulatedNode[] = [];
const apis: ApiConnection[] = [];

afterEach(async () => {
  for (const api of apis.splice(0)) api.destroy();
  for (const node of nodes.splice(0)) await node.server.close();
});

/** One slot query from a client that never subscribes (answered to anyone). */
async function slotsSeenBy(api: ApiConnection): Promise<{ free: number; allocated: number[] }> {
  const m = await api.request(SubscribeBluetoothConnectionsFreeRequest, {}, BluetoothConnectionsFreeResponse, () => true, {
    timeout: 2000,
  });
  return { free: m.free, allocated: [...m.allocated] };
}

describe('simulated proxy phantoms', () => {
  it('simulated proxy - busy slots are links of another client: held only while somebody is subscribed (spec §6.3)', async () => {
    const node = await startSimulatedProxy({ name: 'phantoms', slotsBusy: 2, subscriptionPolicy: 'newest-wins' });
    nodes.push(node);
    const reader = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, timeout: 3000 });
    apis.push(reader);
    // Nobody subscribed: the firmware holds no link at all, the phantoms' included.
    expect(await slotsSeenBy(reader)).toEqual({ free: 3, allocated: [] });
    const ha = await subscribeAsOther(node);
    apis.push(ha);
    expect(await slotsSeenBy(reader)).toEqual({ free: 1, allocated: [PHANTOM, PHANTOM + 1] });
    // A newest-wins takeover leaves the links up (their events go to the new subscriber)...
    const other = await subscribeAsOther(node);
    apis.push(other);
    ha.destroy();
    expect(await slotsSeenBy(reader)).toEqual({ free: 1, allocated: [PHANTOM, PHANTOM + 1] });
    // ...and once the last subscriber is gone, so are they.
    other.destroy();
    await expect.poll(() => node.bluetooth.subscriber).toBeUndefined();
    expect(await slotsSeenBy(reader)).toEqual({ free: 3, allocated: [] });
    expect(node.bluetooth.allocated).toEqual([]);
  });
});
