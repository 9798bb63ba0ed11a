import { afterEach, describe, expect, it } from 'vitest';
import type { SlotState } from '../../../src/bluetooth/proxy-client.js';
import { type GhostCheck, type GhostHost, GhostLinkGuard } from '../../../src/pool/ghost-links.js';

// The guard's decisions as data, against a host that plays the pool's proxies: what they last reported, what a
// fresh check finds, and which DISCONNECTs went out.

const DEVICE = 0xc0ffee000001;
const SETTLE = 1_000;
const T0 = Date.now();

class Host implements GhostHost {
  readonly reported = new Map<string, SlotState>();
  readonly fresh = new Map<string, GhostCheck | undefined>();
  readonly released: string[] = [];
  readonly checked: string[] = [];
  busyNow = false;
  /** Addresses a relay client holds on the proxy's shared session, as `proxy:address`. */
  readonly elsewhere = new Set<string>();
  /** Runs while a check is on the wire (a connect of ours may start then). */
  duringCheck: () => void = () => {};
  slots(proxy: string): SlotState | undefined {
    return this.reported.get(proxy);
  }
  busy(): boolean {
    return this.busyNow;
  }
  heldElsewhere(proxy: string, address: number): boolean {
    return this.elsewhere.has(`${proxy}:${address.toString(16)}`);
  }
  async check(proxy: string): Promise<GhostCheck | undefined> {
    this.checked.push(proxy);
    await Promise.resolve();
    this.duringCheck();
    return this.fresh.has(proxy) ? this.fresh.get(proxy) : { subscriber: true, slots: this.reported.get(proxy)! };
  }
  async release(proxy: string, address: number): Promise<boolean> {
    this.released.push(`${proxy}:${address.toString(16)}`);
    return true;
  }
}

const listed = (...allocated: number[]): SlotState => ({ free: 3 - allocated.length, limit: 3, allocated });

let guard: GhostLinkGuard | undefined;
afterEach(() => guard?.close());

function setup(): { host: Host; guard: GhostLinkGuard } {
  const host = new Host();
  guard = new GhostLinkGuard(host, { settleDelay: SETTLE, silenceDelay: 60_000 });
  return { host, guard };
}

describe('pool/ghost-links', () => {
  it('ghost-links - a slot a relay client holds on a shared session is no ghost of ours: never listed, never released', async () => {
    const { host, guard } = setup();
    host.reported.set('p1', listed(DEVICE));
    guard.down('p1', DEVICE, T0);
    guard.linkEnded('p1', DEVICE, T0 - 500, T0);
    // Our link ended; the same device is now a relay client's link through that proxy.
    host.elsewhere.add('p1:c0ffee000001');
    expect(guard.ghosts(T0 + SETTLE)).toEqual([]);
    await guard.heal(undefined, T0 + SETTLE);
    expect(host.released).toEqual([]);
  });

  it('ghost-links - a link the proxy confirmed ended but kept listed gets one DISCONNECT, after a fresh check', async () => {
    const { host, guard } = setup();
    host.reported.set('p1', listed(DEVICE));
    guard.down('p1', DEVICE, T0);
    guard.linkEnded('p1', DEVICE, T0 - 500, T0);
    expect(guard.ghosts(T0 + SETTLE - 1)).toEqual([]);
    await guard.heal(undefined, T0 + SETTLE);
    expect(host.checked).toEqual(['p1']);
    expect(host.released).toEqual(['p1:c0ffee000001']);
    expect(guard.takeRecent(DEVICE)).toEqual([expect.objectContaining({ kind: 'ghost', proxy: 'p1' })]);
  });

  it('ghost-links - keyed by (proxy, device): a later link through another proxy does not hide the first ghost', async () => {
    const { host, guard } = setup();
    host.reported.set('p1', listed(DEVICE));
    host.reported.set('p2', listed());
    guard.down('p1', DEVICE, T0);
    guard.linkEnded('p1', DEVICE, T0 - 500, T0);
    // Our next link went through p2 and ended cleanly there (p2 lists nothing).
    guard.down('p2', DEVICE, T0 + 100);
    guard.linkEnded('p2', DEVICE, T0 + 50, T0 + 100);
    await guard.heal(undefined, T0 + SETTLE + 100);
    expect(host.released).toEqual(['p1:c0ffee000001']);
  });

  it('ghost-links - a slot report that freed the slot ends the watch: a later listing is another connect', async () => {
    const { host, guard } = setup();
    host.reported.set('p1', listed(DEVICE));
    guard.down('p1', DEVICE, T0);
    guard.linkEnded('p1', DEVICE, T0 - 500, T0);
    guard.slots('p1', listed());
    // Another client reserves a slot for the device (connecting for longer than the settle delay).
    host.reported.set('p1', listed(DEVICE));
    guard.slots('p1', listed(DEVICE));
    await guard.heal(undefined, T0 + 10 * SETTLE);
    expect(host.checked).toEqual([]);
    expect(host.released).toEqual([]);
  });

  it('ghost-links - our disconnect never confirmed by the proxy (its answers went to a newer subscriber): never acts', async () => {
    const { host, guard } = setup();
    host.reported.set('p1', listed(DEVICE));
    guard.linkEnded('p1', DEVICE, T0 - 500, T0);
    await guard.heal(undefined, T0 + 10 * SETTLE);
    expect(guard.pending(DEVICE, T0 + 10 * SETTLE)).toEqual([]);
    expect(host.released).toEqual([]);
    // A confirmation that arrives later (the answer to a DISCONNECT sent on an abort) makes it a candidate again.
    guard.down('p1', DEVICE, T0 + 100);
    await guard.heal(undefined, T0 + 10 * SETTLE);
    expect(host.released).toEqual(['p1:c0ffee000001']);
  });

  it('ghost-links - no proof that we are still the subscriber, or a fresh report without the slot: no DISCONNECT', async () => {
    const { host, guard } = setup();
    host.reported.set('p1', listed(DEVICE));
    guard.down('p1', DEVICE, T0);
    guard.linkEnded('p1', DEVICE, T0 - 500, T0);
    host.fresh.set('p1', { subscriber: false, slots: listed(DEVICE) });
    await guard.heal(undefined, T0 + SETTLE);
    expect(host.released).toEqual([]);
    host.fresh.set('p1', undefined);
    await guard.heal(undefined, T0 + 3 * SETTLE);
    expect(host.released).toEqual([]);
    // Subscriber after all, but the fresh query shows the slot free: the watch ends without a DISCONNECT.
    host.fresh.set('p1', { subscriber: true, slots: listed() });
    await guard.heal(undefined, T0 + 5 * SETTLE);
    expect(host.released).toEqual([]);
    expect(guard.ghosts(T0 + 7 * SETTLE)).toEqual([]);
  });

  it('ghost-links - a connect of ours that starts while the proxy is being checked: no DISCONNECT', async () => {
    const { host, guard } = setup();
    host.reported.set('p1', listed(DEVICE));
    guard.down('p1', DEVICE, T0);
    guard.linkEnded('p1', DEVICE, T0 - 500, T0);
    host.duringCheck = () => {
      host.busyNow = true;
    };
    await guard.heal(undefined, T0 + SETTLE);
    expect(host.checked).toEqual(['p1']);
    expect(host.released).toEqual([]);
  });
});
