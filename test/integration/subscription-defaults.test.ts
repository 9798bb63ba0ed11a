import { afterEach, describe, expect, it, vi } from 'vitest';
import { BluetoothProxy, type BluetoothProxyStatus } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import type { ApiSession } from '../../src/server/api-server.js';

// The watchdog's and the resubscribe's defaults are seconds to minutes long, so this file runs them on fake
// timers: only setTimeout/setInterval are faked, and only from the attach on. Sockets, the sessions' keep-alive
// (started before) and expect.poll keep real time, so every probe and subscribe still crosses loopback TCP.

const MSG_SUBSCRIBE = 66;
const MSG_DEVICE_REQUEST = 68;
/** What the issue asks for: a probe after 30 s of silence; resubscribes after 10 s, 30 s, then every 60 s. */
const SILENCE_MS = 30_000;
const DELAYS_MS = [10_000, 30_000, 60_000, 60_000] as const;
/** Real time for loopback round trips to settle before asserting that nothing was sent. */
const SETTLE_MS = 40;
/** Real time a poll waits for a round trip: generous, the machine may be busy with other test runs. */
const POLL = { timeout: 3000 } as const;

const realSetTimeout = globalThis.setTimeout;
const settle = (): Promise<void> => new Promise((resolve) => realSetTimeout(resolve, SETTLE_MS));
const count = (session: ApiSession, id: number): number => session.received.filter((t) => t === id).length;

let node: SimulatedNode | undefined;
const apis: ApiConnection[] = [];

afterEach(async () => {
  for (const api of apis.splice(0)) api.destroy();
  vi.useRealTimers();
  await node?.server.close();
  node = undefined;
});

async function open(sim: SimulatedNode): Promise<{ api: ApiConnection; session: ApiSession }> {
  const sessionReady = sim.server.nextSession();
  const api = await ApiConnection.connect({ host: '127.0.0.1', port: sim.server.address.port, timeout: 3000 });
  apis.push(api);
  return { api, session: await sessionReady };
}

/** Moves fake time forward by `ms` and lets the loopback traffic it caused settle in real time. */
async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  await settle();
}

describe('subscription watchdog defaults', () => {
  it('watchdog - attach() without options probes after 30 s of silence and resubscribes after 10 s, 30 s, then every 60 s', async () => {
    node = await startSimulatedProxy({ name: 'proxy-defaults', firmware: '2026.7', advertise: false });
    const sim = node;
    const ours = await open(sim);
    const other = await open(sim);
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });

    const proxy = await BluetoothProxy.attach(ours.api);
    const events: BluetoothProxyStatus[] = [];
    proxy.onStatus((status) => events.push(status));

    // The watchdog is on: nothing before 30 s of silence, a probe right after.
    await advance(SILENCE_MS - 1);
    expect(count(ours.session, MSG_DEVICE_REQUEST)).toBe(0);
    await advance(1);
    await expect.poll(() => count(ours.session, MSG_DEVICE_REQUEST), POLL).toBe(1);
    expect(proxy.subscription.state).toBe('subscribed');

    // Another client takes the subscription (newest wins), then keeps it (as a stale first-wins holder would).
    other.api.sendRaw(MSG_SUBSCRIBE, Uint8Array.of(0x08, 0x01));
    await expect.poll(() => sim.bluetooth.subscriber, POLL).toBe(other.session);
    sim.bluetooth.subscriptionPolicy = 'first-wins';
    await advance(SILENCE_MS);
    await expect.poll(() => proxy.subscription.state, POLL).toBe('lost');
    expect(events.map((e) => e.type)).toEqual(['subscriptionLost', 'resubscribing']);

    // Each attempt goes out exactly when its delay has passed, and fails while the other client holds on.
    const subscribesBefore = count(ours.session, MSG_SUBSCRIBE);
    for (const [i, delay] of DELAYS_MS.slice(0, 3).entries()) {
      expect(events.at(-1)).toEqual({ type: 'resubscribing', attempt: i + 1, delay });
      await advance(delay - 1);
      expect(count(ours.session, MSG_SUBSCRIBE)).toBe(subscribesBefore + i);
      await advance(1);
      await expect.poll(() => events.filter((e) => e.type === 'resubscribeFailed').length, POLL).toBe(i + 1);
      expect(count(ours.session, MSG_SUBSCRIBE)).toBe(subscribesBefore + i + 1);
    }
    expect(events.filter((e) => e.type === 'resubscribing').map((e) => (e.type === 'resubscribing' ? e.delay : 0))).toEqual([...DELAYS_MS]);

    // The other client leaves: the next attempt, a minute later, takes the subscription back.
    other.api.destroy();
    await advance(DELAYS_MS[3]);
    await expect.poll(() => proxy.subscription.state, POLL).toBe('subscribed');
    expect(events.at(-1)).toMatchObject({ type: 'resubscribed', attempt: 4 });
    expect(sim.bluetooth.subscriber).toBe(ours.session);
  });
});
