import { describe, expect, it } from 'vitest';
import {
  type AttachOptions,
  BluetoothProxy,
  type BluetoothProxyStatus,
  type ConnectionStateChange,
  SUBSCRIPTION_PROBE_ADDRESS,
} from '../../src/bluetooth/proxy-client.js';
import type { ApiConnection } from '../../src/connection/connection.js';
import { NotSubscriberError, SubscriptionLostError } from '../../src/errors.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import type { ApiSession } from '../../src/server/api-server.js';
import { runCliProcess, startCliServer } from '../helpers/cli.js';
import { useClosers } from '../helpers/closers.js';
import { type AttachedClient, attachClient, openApi as openApiOf, startProxy } from '../helpers/fleet.js';
import { AT_ONCE_MS, LONG_WAIT_MS, sleep } from '../helpers/wait.js';

const DEMO = 0xc0ffee000001;
/** An address whose connect the simulation never answers. */
const HANGING = 0xc0ffee0000ee;
/** Short watchdog for tests: silence is noticed after 60–120 ms, a probe waits at most 300 ms. */
const WATCHDOG = { silenceTimeout: 60, probeTimeout: 300 } as const;
const MSG_SUBSCRIBE = 66;
const MSG_PING = 7;
/** An advertisement-only proxy (passive scan, raw advertisements, scanner state): what `active: false` reports. */
const AD_ONLY = 0x61;
/** Advertisement-only without scanner state (a hub platform): nothing but an advertisement proves the subscription. */
const AD_ONLY_WITHOUT_STATE = 0x21;
/** Silence periods a quiet proxy is watched for (the old code declared the loss after one or two). */
const QUIET_PERIODS = 6;
/** One raw advertisement of the demo peripheral (flags AD only). */
const ONE_AD = { advertisements: [{ address: DEMO, rssi: -60, addressType: 1, data: Uint8Array.of(0x02, 0x01, 0x06) }] };

const closers = useClosers();

const startNode = (options: SimulatedNodeOptions = {}): Promise<SimulatedNode> =>
  startProxy(closers, { name: 'proxy-takeover', firmware: '2026.7', ...options });
const openApi = (node: SimulatedNode): Promise<ApiConnection> => openApiOf(closers, node);
const attach = (node: SimulatedNode, options: AttachOptions = {}): Promise<AttachedClient> =>
  attachClient(closers, node, { attach: options });

/** Collects a proxy's subscription events. */
function record(proxy: BluetoothProxy): BluetoothProxyStatus[] {
  const events: BluetoothProxyStatus[] = [];
  proxy.onStatus((status) => events.push(status));
  return events;
}

/** A second client that only subscribes (as Home Assistant does), with no watchdog of its own. */
async function rawSubscriber(node: SimulatedNode): Promise<{ api: ApiConnection; session: ApiSession }> {
  const sessionReady = node.server.nextSession();
  const api = await openApi(node);
  const session = await sessionReady;
  api.sendRaw(MSG_SUBSCRIBE, Uint8Array.of(0x08, 0x01)); // flags = 1
  await expect.poll(() => node.bluetooth.subscriber).toBe(session);
  return { api, session };
}

const probesIn = (session: ApiSession): number => session.received.filter((t) => t === 68).length;

describe('subscription takeover and the watchdog', () => {
  it('fixture 2026.7 - the newest subscriber takes over; the previous one is told nothing and its link stays up', async () => {
    const node = await startNode();
    const first = await attach(node, { watchdog: false });
    const link = await first.proxy.connect(DEMO);
    let firstHeard = 0;
    for (const id of [69, 79, 81, 93, 126]) first.api.onRaw(id, () => firstHeard++);
    const second = await attach(node, { watchdog: false });
    expect(node.bluetooth.subscriber).toBe(second.session);
    expect(second.proxy.subscription.confirmed).toBe(true);
    const states: ConnectionStateChange[] = [];
    second.proxy.onConnectionState((state) => states.push(state));
    // The link the first client opened is still up, and its events now go to the new subscriber.
    expect(node.bluetooth.allocated).toEqual([DEMO]);
    node.bluetooth.dropLink(DEMO);
    await expect.poll(() => states.length).toBeGreaterThan(0);
    expect(states[0]).toMatchObject({ address: DEMO, connected: false });
    await sleep(150);
    expect(firstHeard).toBe(0);
    expect(link.isConnected).toBe(true); // without a watchdog the first client cannot know
    await second.proxy.detach({ timeout: 1000 });
  });

  it('fixture 2026.1 - first wins: a second subscribe is ignored, even a repeat by the subscriber itself', async () => {
    const node = await startNode({ firmware: '2026.1' });
    const first = await attach(node);
    const second = await openApi(node);
    await expect(BluetoothProxy.attach(second, { subscriberCheckTimeout: 150 })).rejects.toBeInstanceOf(NotSubscriberError);
    expect(node.bluetooth.subscriber).toBe(first.session);
    let states = 0;
    first.api.onRaw(126, () => states++);
    first.api.sendRaw(MSG_SUBSCRIBE, Uint8Array.of(0x08, 0x01));
    await sleep(50);
    expect(states).toBe(0);
  });

  it('fixture - esphome-ble serve --subscription newest-wins hands the subscription to the newest client', async () => {
    const server = await startCliServer(['--port', '0', '--firmware', '2026.1', '--subscription', 'newest-wins']);
    try {
      const { port } = server.lines[0] as { port: number };
      const opened: ApiConnection[] = [];
      const open = async (): Promise<ApiConnection> => {
        const api = await openApiOf(closers, port);
        opened.push(api);
        return api;
      };
      const first = await BluetoothProxy.attach(await open(), { watchdog: false });
      const second = await BluetoothProxy.attach(await open(), { watchdog: false, subscriberCheckTimeout: 500 });
      expect(second.subscription.confirmed).toBe(true);
      let firstStates = 0;
      first.api.onRaw(126, () => firstStates++);
      await second.setScannerMode('passive', { timeout: 2000 });
      await sleep(50);
      expect(firstStates).toBe(0);
      for (const api of opened) api.destroy();
    } finally {
      await server.stop();
    }
    const usage = await runCliProcess(['serve', '--firmware', '1999.1']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--firmware must be one of 2022.12');
  });

  it('watchdog - a silent but healthy subscription is probed and kept', async () => {
    const node = await startNode({ advertise: false });
    const { proxy, session } = await attach(node, { watchdog: WATCHDOG });
    const events = record(proxy);
    await expect.poll(() => probesIn(session), { timeout: 2000 }).toBeGreaterThanOrEqual(2);
    expect(proxy.subscription.state).toBe('subscribed');
    expect(events).toEqual([]);
    // The probe's answer never reaches connection-state listeners.
    const states: ConnectionStateChange[] = [];
    proxy.onConnectionState((state) => states.push(state));
    const before = probesIn(session);
    await expect.poll(() => probesIn(session), { timeout: 2000 }).toBeGreaterThan(before);
    expect(states.filter((s) => s.address === SUBSCRIPTION_PROBE_ADDRESS)).toEqual([]);
    const link = await proxy.connect(DEMO);
    await link.disconnect();
  });

  it('watchdog - a takeover is detected by the probe, reported with a code, links closed and their slots freed', async () => {
    const node = await startNode();
    const { proxy } = await attach(node, { watchdog: WATCHDOG, resubscribe: false });
    const events = record(proxy);
    const stream = proxy.status();
    const link = await proxy.connect(DEMO);
    node.bluetooth.setBehaviour(HANGING, { hang: true });
    const pendingConnect = proxy.connect(HANGING, { timeout: LONG_WAIT_MS }).catch((e: unknown) => e);
    await expect.poll(() => node.bluetooth.allocated).toEqual([DEMO, HANGING]);
    await rawSubscriber(node);
    await expect.poll(() => proxy.subscription.state, { timeout: 2000 }).toBe('lost');
    const lost = events[0];
    expect(lost).toMatchObject({ type: 'subscriptionLost', code: 'ESPAPI_ERR_SUBSCRIPTION_LOST', detectedBy: 'probe' });
    expect(lost?.type === 'subscriptionLost' && lost.error).toBeInstanceOf(SubscriptionLostError);
    const streamed = await stream.next();
    expect(streamed.value).toMatchObject({ type: 'subscriptionLost' });
    expect(link.isConnected).toBe(false);
    expect(await link.closed()).toMatchObject({ reasonName: 'Bluetooth subscription lost' });
    expect(await pendingConnect).toBeInstanceOf(SubscriptionLostError);
    // We asked the proxy to drop our link and attempt, so the new subscriber is not left holding our slots.
    await expect.poll(() => node.bluetooth.allocated).toEqual([]);
    // Requests now fail at once with the code, instead of timing out.
    const started = performance.now();
    const error = await proxy.connect(DEMO, { timeout: LONG_WAIT_MS }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SubscriptionLostError);
    expect((error as SubscriptionLostError).code).toBe('ESPAPI_ERR_SUBSCRIPTION_LOST');
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
    await sleep(100);
    expect(events.map((e) => e.type)).toEqual(['subscriptionLost']); // resubscribe: false
    await stream.return?.();
  });

  it('watchdog - resubscribes with backoff and gets the subscription back (newest wins)', async () => {
    const node = await startNode();
    const { proxy, session } = await attach(node, { watchdog: WATCHDOG, resubscribe: { delays: [80, 200] } });
    const events = record(proxy);
    await rawSubscriber(node);
    await expect.poll(() => events.some((e) => e.type === 'resubscribed'), { timeout: 3000 }).toBe(true);
    expect(events.map((e) => e.type)).toEqual(['subscriptionLost', 'resubscribing', 'resubscribed']);
    expect(events[1]).toEqual({ type: 'resubscribing', attempt: 1, delay: 80 });
    expect(events[2]).toMatchObject({ type: 'resubscribed', attempt: 1 });
    expect(node.bluetooth.subscriber).toBe(session);
    expect(proxy.subscription.state).toBe('subscribed');
    const link = await proxy.connect(DEMO);
    expect(link.isConnected).toBe(true);
    await link.disconnect();
  });

  it('watchdog - failed resubscribes follow the delays, the last one repeating, until the other client leaves', async () => {
    const node = await startNode();
    const { proxy } = await attach(node, { watchdog: WATCHDOG, resubscribe: { delays: [30, 60] }, subscriberCheckTimeout: 100 });
    const events = record(proxy);
    const other = await rawSubscriber(node);
    // From now on the other client keeps the slot (as on first-wins firmware with a stale Home Assistant session).
    node.bluetooth.subscriptionPolicy = 'first-wins';
    await expect.poll(() => events[0]?.type, { timeout: 2000 }).toBe('subscriptionLost');
    await expect.poll(() => events.filter((e) => e.type === 'resubscribeFailed').length, { timeout: 3000 }).toBeGreaterThanOrEqual(3);
    const delays = events.filter((e) => e.type === 'resubscribing').map((e) => (e.type === 'resubscribing' ? e.delay : 0));
    expect(delays.slice(0, 3)).toEqual([30, 60, 60]);
    const failed = events.find((e) => e.type === 'resubscribeFailed');
    expect(failed).toMatchObject({ code: 'ESPAPI_ERR_NOT_SUBSCRIBER' });
    other.api.destroy();
    await expect.poll(() => proxy.subscription.state, { timeout: 3000 }).toBe('subscribed');
    expect(events.at(-1)).toMatchObject({ type: 'resubscribed' });
  });

  it('watchdog - requireSubscriber: false keeps a rejected session and resubscribes until the holder leaves (first wins)', async () => {
    const node = await startNode({ firmware: '2026.1' });
    const holder = await attach(node, { watchdog: false });
    const sessionReady = node.server.nextSession();
    const api = await openApi(node);
    const session = await sessionReady;
    const proxy = await BluetoothProxy.attach(api, {
      requireSubscriber: false,
      subscriberCheckTimeout: 100,
      watchdog: WATCHDOG,
      resubscribe: { delays: [50] },
    });
    expect(proxy.subscription.state).toBe('lost');
    const events = record(proxy);
    const error = await proxy.connect(DEMO, { timeout: LONG_WAIT_MS }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SubscriptionLostError);
    expect((error as SubscriptionLostError).detectedBy).toBe('subscribe');
    await expect.poll(() => events.filter((e) => e.type === 'resubscribeFailed').length, { timeout: 2000 }).toBeGreaterThanOrEqual(1);
    await holder.proxy.detach();
    await expect.poll(() => proxy.subscription.state, { timeout: 2000 }).toBe('subscribed');
    expect(node.bluetooth.subscriber).toBe(session);
    expect(events.at(-1)).toMatchObject({ type: 'resubscribed' });
  });

  it('watchdog - on newest-wins firmware (2026.7) a takeover of an advertisement-only proxy is judged by silence while pings are answered', async () => {
    const node = await startNode({ featureFlags: AD_ONLY });
    const { proxy } = await attach(node, { watchdog: WATCHDOG, resubscribe: false });
    const events = record(proxy);
    await rawSubscriber(node);
    await expect.poll(() => proxy.subscription.state, { timeout: 2000 }).toBe('lost');
    expect(events[0]).toMatchObject({ type: 'subscriptionLost', detectedBy: 'silence' });
  });

  it('watchdog - a quiet advertisement-only proxy on first-wins firmware (2026.1) stays subscribed: silence is no sign there', async () => {
    const node = await startNode({ firmware: '2026.1', featureFlags: AD_ONLY, advertise: false });
    const { proxy, session } = await attach(node, { watchdog: WATCHDOG });
    const events = record(proxy);
    await sleep(QUIET_PERIODS * WATCHDOG.silenceTimeout);
    expect(proxy.subscription.state).toBe('subscribed');
    expect(events).toEqual([]);
    expect(session.received).not.toContain(MSG_PING);
    expect(node.bluetooth.subscriber).toBe(session);
    // The radio comes back to life: the advertisements still reach us.
    node.bluetooth.sendRawBatch(ONE_AD);
    await expect.poll(() => proxy.subscription.confirmed).toBe(true);
  });

  it('watchdog - advertisements while lost regain the subscription (a quiet radio on 2026.7 was no takeover) and it watches again', async () => {
    const node = await startNode({ featureFlags: AD_ONLY, advertise: false });
    const { proxy, session } = await attach(node, { watchdog: WATCHDOG, resubscribe: { delays: [60_000] } });
    const events = record(proxy);
    await expect.poll(() => proxy.subscription.state, { timeout: 2000 }).toBe('lost');
    expect(node.bluetooth.subscriber).toBe(session); // a false alarm: the proxy never gave the subscription away
    node.bluetooth.sendRawBatch(ONE_AD);
    await expect.poll(() => proxy.subscription.state).toBe('subscribed');
    expect(events.map((e) => e.type)).toEqual(['subscriptionLost', 'resubscribing', 'resubscribed']);
    expect(events[2]).toMatchObject({ type: 'resubscribed', attempt: 0 });
    // The 60 s resubscribe wait ended with the regain (the leak guard would see its timer), and the watchdog runs again.
    await expect.poll(() => events.length, { timeout: 2000 }).toBe(5);
    expect(events[3]).toMatchObject({ type: 'subscriptionLost', detectedBy: 'silence' });
  });

  it('watchdog - without scanner state or probe a resubscribe is not taken on trust; an advertisement proves it', async () => {
    const node = await startNode({ featureFlags: AD_ONLY_WITHOUT_STATE, advertise: false });
    const { proxy } = await attach(node, { watchdog: WATCHDOG, resubscribe: { delays: [30, 60_000] }, subscriberCheckTimeout: 100 });
    const events = record(proxy);
    await expect.poll(() => events.some((e) => e.type === 'resubscribeFailed'), { timeout: 2000 }).toBe(true);
    expect(proxy.subscription.state).toBe('lost');
    expect(events.find((e) => e.type === 'resubscribeFailed')).toMatchObject({ attempt: 1, code: 'ESPAPI_ERR_NOT_SUBSCRIBER' });
    node.bluetooth.sendRawBatch(ONE_AD);
    await expect.poll(() => proxy.subscription.state).toBe('subscribed');
    expect(events.at(-1)).toMatchObject({ type: 'resubscribed', attempt: 1 });
  });

  it('watchdog - unsubscribe() and detach() stop it; nothing is probed afterwards', async () => {
    const node = await startNode({ advertise: false });
    const { proxy, session } = await attach(node, { watchdog: WATCHDOG });
    await proxy.unsubscribe();
    const before = probesIn(session);
    await sleep(250);
    expect(probesIn(session)).toBe(before);
    await proxy.resubscribe();
    await expect.poll(() => probesIn(session), { timeout: 2000 }).toBeGreaterThan(before);
    await proxy.detach();
    const after = probesIn(session);
    await sleep(250);
    expect(probesIn(session)).toBe(after);
  });
});
