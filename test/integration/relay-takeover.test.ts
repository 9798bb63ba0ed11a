import { afterEach, describe, expect, it } from 'vitest';
import { BluetoothProxy, type BluetoothProxyStatus, SUBSCRIPTION_PROBE_ADDRESS } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection, type MessageTap } from '../../src/connection/connection.js';
import { type SimulatedNode, type SimulatedNodeOptions, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
  UnsubscribeBluetoothLEAdvertisementsRequest,
} from '../../src/gen/api_pb.js';
import { UPSTREAM_LOST_REASON } from '../../src/relay/relay-proxy.js';
import { RelayServer, type RelayServerOptions } from '../../src/relay/relay-server.js';
import type { RelayStatus } from '../../src/relay/relay-status.js';

/** The default profile's connectable demo peripheral. */
const DEMO = 0xc0ffee000001;
/** Fast upstream reconnects so restart tests take milliseconds. */
const FAST_BACKOFF = { initialDelay: 20, maxDelay: 100, jitter: 0, expectedDisconnectDelay: 20 } as const;
/** Short watchdog: silence is noticed after 60–120 ms, a probe waits at most 300 ms. */
const WATCHDOG = { silenceTimeout: 60, probeTimeout: 300 } as const;
const STEP_MS = 3000;

const closers: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function upstream(options: SimulatedNodeOptions = {}): Promise<SimulatedNode> {
  const node = await startSimulatedProxy({ name: 'relay-upstream', slots: 2, subscriptionPolicy: 'newest-wins', ...options });
  closers.push(() => node.server.close());
  return node;
}

/** A relay in front of `node`, with its status events collected. */
async function relayFor(
  node: SimulatedNode,
  options: Partial<RelayServerOptions> = {},
): Promise<{ relay: RelayServer; port: number; events: RelayStatus[] }> {
  const relay = new RelayServer({
    proxies: [{ host: '127.0.0.1', port: node.server.address.port }],
    backoff: FAST_BACKOFF,
    statsInterval: 100,
    watchdog: WATCHDOG,
    ...options,
  });
  const events: RelayStatus[] = [];
  const watching = (async () => {
    for await (const event of relay.status()) events.push(event);
  })();
  closers.push(async () => {
    await relay.close();
    await watching;
  });
  const [listening] = await relay.start({ timeout: STEP_MS });
  return { relay, port: listening!.port, events };
}

async function client(port: number, attach: Parameters<typeof BluetoothProxy.attach>[1] = {}, tap?: MessageTap) {
  const api = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: STEP_MS, ...(tap ? { tap } : {}) });
  closers.push(() => api.destroy());
  const proxy = await BluetoothProxy.attach(api, { timeout: STEP_MS, ...attach });
  return { api, proxy };
}

const until = async (check: () => boolean, what: string, ms = STEP_MS): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

const nextAdvertisement = (proxy: BluetoothProxy): Promise<void> =>
  new Promise((resolve) => {
    const off = proxy.onAdvertisement(() => {
      off();
      resolve();
    });
  });

describe('relay upstream subscription watchdog', () => {
  it('relay - a foreign subscriber takes the upstream over: downstream links end, clients stay, the relay resubscribes and ads resume', async () => {
    const node = await upstream();
    const { relay, port, events } = await relayFor(node, { resubscribe: { delays: [400] } });
    const ours = await client(port);
    await nextAdvertisement(ours.proxy);
    const link = await ours.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
    const lost = link.closed();

    // Another client (Home Assistant, say) subscribes directly on newest-wins firmware and takes the proxy over.
    const foreign = await client(node.server.address.port, { resubscribe: false, watchdog: false });
    expect(foreign.proxy.subscription.state).toBe('subscribed');

    await until(() => events.some((e) => e.type === 'upstreamSubscriptionLost'), 'the relay to notice the takeover');
    expect(events.find((e) => e.type === 'upstreamSubscriptionLost')).toMatchObject({
      detectedBy: 'probe',
      endedLinks: ['C0:FF:EE:00:00:01'],
    });
    expect(relay.snapshot().proxies[0]?.upstream.state).toBe('subscriptionLost');
    // The same per-proxy record a pool keeps: the subscription state and the loss with its code.
    expect(relay.snapshot().proxies[0]?.upstream.diagnostics).toMatchObject({
      state: 'subscriptionLost',
      subscription: { state: 'lost' },
      lastErrors: [{ code: 'ESPAPI_ERR_SUBSCRIPTION_LOST' }],
    });
    // What the firmware would have told the relay's client: its link is gone; its session stays.
    expect(await lost).toMatchObject({ reason: UPSTREAM_LOST_REASON });
    await until(() => ours.proxy.slots?.free === 0, 'the downstream slot view to empty');
    expect(ours.api.isClosed).toBe(false);
    expect(ours.proxy.subscription.state).toBe('subscribed');
    // The relay freed the link upstream rather than leave it to the new subscriber.
    await until(() => !node.bluetooth.allocated.includes(DEMO), 'the upstream slot to free', STEP_MS);

    await foreign.api.close();
    await until(() => events.some((e) => e.type === 'upstreamResubscribed'), 'the relay to resubscribe');
    expect(events.findIndex((e) => e.type === 'upstreamResubscribing')).toBeLessThan(
      events.findIndex((e) => e.type === 'upstreamResubscribed'),
    );
    expect(relay.snapshot().proxies[0]?.upstream.state).toBe('connected');
    expect(relay.snapshot().proxies[0]?.upstream.diagnostics).toMatchObject({ state: 'online', subscription: { state: 'subscribed' } });
    // Both slots back; the default quota shows each client all but one of them.
    await until(() => ours.proxy.slots?.free === 1 && relay.snapshot().proxies[0]?.slots.free === 2, 'slots to come back');
    await nextAdvertisement(ours.proxy);
    const again = await ours.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
    await again.disconnect({ timeout: STEP_MS });
    expect(ours.api.isClosed).toBe(false);
  });

  it('relay - a downstream BluetoothProxy probing the relay stays subscribed while the upstream is quiet', async () => {
    const node = await upstream({ advertise: false, subscriptionPolicy: 'first-wins' });
    const { relay, port, events } = await relayFor(node);
    let probes = 0;
    const tap: MessageTap = (direction, id, payload) => {
      if (direction !== 'c2d' || id !== 68) return;
      if (BluetoothDeviceRequest.fromBinary(payload).address === SUBSCRIPTION_PROBE_ADDRESS) probes++;
    };
    const ours = await client(port, { watchdog: WATCHDOG }, tap);
    const seen: BluetoothProxyStatus[] = [];
    ours.proxy.onStatus((status) => seen.push(status));
    // No advertisements anywhere: both watchdogs fall back on probes, and the relay answers its client's as the firmware would.
    await until(() => probes >= 4, 'the downstream watchdog to probe the relay a few times');
    expect(seen).toEqual([]);
    expect(ours.proxy.subscription.state).toBe('subscribed');
    expect(events.some((e) => e.type === 'upstreamSubscriptionLost')).toBe(false);
    expect(relay.snapshot().proxies[0]?.upstream.state).toBe('connected');
  });

  it('relay - answers Bluetooth requests only to a subscribed client: unsubscribed and never-subscribed ones hear nothing but the slot answer', async () => {
    const node = await upstream({ subscriptionPolicy: 'first-wins' });
    const { port } = await relayFor(node);
    const probe = { address: SUBSCRIPTION_PROBE_ADDRESS, requestType: BluetoothDeviceRequestType.DISCONNECT };
    /** Sends the probe then the slot query; true when the probe's answer came first (the subscriber's view). */
    const probeOrder = async (api: ApiConnection): Promise<boolean> => {
      let answered = false;
      const off = api.onRaw(69, () => {
        answered = true;
      });
      api.send(BluetoothDeviceRequest, probe);
      await api.request(SubscribeBluetoothConnectionsFreeRequest, {}, BluetoothConnectionsFreeResponse, () => true, { timeout: STEP_MS });
      off();
      return answered;
    };
    const open = async (): Promise<ApiConnection> => {
      const api = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: STEP_MS });
      closers.push(() => api.destroy());
      return api;
    };

    const never = await open();
    const subscriber = await open();
    subscriber.send(SubscribeBluetoothLEAdvertisementsRequest, { flags: 1 });
    expect(await probeOrder(subscriber)).toBe(true);
    expect(await probeOrder(never)).toBe(false);
    // A connect from a client that never subscribed is not acted on: no answer, no slot taken.
    never.send(BluetoothDeviceRequest, {
      address: DEMO,
      requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
      hasAddressType: true,
      addressType: 1,
    });
    expect(await probeOrder(never)).toBe(false);
    expect(node.bluetooth.allocated).toEqual([]);

    subscriber.send(UnsubscribeBluetoothLEAdvertisementsRequest, {});
    expect(await probeOrder(subscriber)).toBe(false);
    // Our own client, unsubscribed, fails at once instead of waiting; resubscribed, it is the subscriber again.
    const ours = await client(port, { watchdog: false });
    await ours.proxy.unsubscribe({ timeout: STEP_MS });
    expect(await probeOrder(ours.api)).toBe(false);
    await ours.proxy.resubscribe({ timeout: STEP_MS });
    expect(await probeOrder(ours.api)).toBe(true);
  });
});
