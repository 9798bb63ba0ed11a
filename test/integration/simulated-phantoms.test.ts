import { describe, expect, it } from 'vitest';
import type { ApiConnection } from '../../src/connection/connection.js';
import { BluetoothConnectionsFreeResponse, SubscribeBluetoothConnectionsFreeRequest } from '../../src/gen/api_pb.js';
import { useClosers } from '../helpers/closers.js';
import { openApi, startProxy, subscribeAsOther } from '../helpers/fleet.js';

const PHANTOM = 0xf0_00_00_00_00_10;

const closers = useClosers();

/** One slot query from a client that never subscribes (answered to anyone). */
async function slotsSeenBy(api: ApiConnection): Promise<{ free: number; allocated: number[] }> {
  const m = await api.request(SubscribeBluetoothConnectionsFreeRequest, {}, BluetoothConnectionsFreeResponse, () => true, {
    timeout: 2000,
  });
  return { free: m.free, allocated: [...m.allocated] };
}

describe('simulated proxy phantoms', () => {
  it('simulated proxy - busy slots are links of another client: held only while somebody is subscribed (spec §6.3)', async () => {
    const node = await startProxy(closers, { name: 'phantoms', slotsBusy: 2, subscriptionPolicy: 'newest-wins' });
    const reader = await openApi(closers, node);
    // Nobody subscribed: the firmware holds no link at all, the phantoms' included.
    expect(await slotsSeenBy(reader)).toEqual({ free: 3, allocated: [] });
    const ha = await subscribeAsOther(node, closers);
    expect(await slotsSeenBy(reader)).toEqual({ free: 1, allocated: [PHANTOM, PHANTOM + 1] });
    // A newest-wins takeover leaves the links up (their events go to the new subscriber)...
    const other = await subscribeAsOther(node, closers);
    ha.destroy();
    expect(await slotsSeenBy(reader)).toEqual({ free: 1, allocated: [PHANTOM, PHANTOM + 1] });
    // ...and once the last subscriber is gone, so are they.
    other.destroy();
    await expect.poll(() => node.bluetooth.subscriber).toBeUndefined();
    expect(await slotsSeenBy(reader)).toEqual({ free: 3, allocated: [] });
    expect(node.bluetooth.allocated).toEqual([]);
  });
});
