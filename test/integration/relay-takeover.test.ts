import { describe, expect, it } from 'vitest';
import { type AttachOptions, type BluetoothProxyStatus, SUBSCRIPTION_PROBE_ADDRESS } from '../../src/bluetooth/proxy-client.js';
import type { ApiConnection, MessageTap } from '../../src/connection/connection.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
  UnsubscribeBluetoothLEAdvertisementsRequest,
} from '../../src/gen/api_pb.js';
import { UPSTREAM_LOST_REASON } from '../../src/relay/relay-proxy.js';
import type { RelayServerOptions } from '../../src/relay/relay-server.js';
import { useClosers } from '../helpers/closers.js';
import { nextAdvertisement, openApi } from '../helpers/fleet.js';
import { connectRequest, DEMO, ourClient, STEP_MS, startRelay, startUpstream, until } from '../helpers/relay.js';

/** Short watchdog: silence is noticed after 60–120 ms, a probe waits at most 300 ms. */
const WATCHDOG = { silenceTimeout: 60, probeTimeout: 300 } as const;

const closers = useClosers();

/** The upstream proxy, on newest-wins firmware unless told otherwise. */
const upstream = (options: SimulatedNodeOptions = {}): Promise<SimulatedNode> =>
  startUpstream(closers, { subscriptionPolicy: 'newest-wins', ...options });

/** A relay in front of `node` with the short watchdog, its status events collected. */
const relayFor = (node: SimulatedNode, options: Partial<RelayServerOptions> = {}) =>
  startRelay(closers, node, { watchdog: WATCHDOG, ...options });

const client = (port: number, attach: AttachOptions = {}, tap?: MessageTap) =>
  ourClient(closers, port, undefined, { attach, ...(tap === undefined ? {} : { tap }) });

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
    const open = (): Promise<ApiConnection> => openApi(closers, port, { timeout: STEP_MS });

    const never = await open();
    const subscriber = await open();
    subscriber.send(SubscribeBluetoothLEAdvertisementsRequest, { flags: 1 });
    expect(await probeOrder(subscriber)).toBe(true);
    expect(await probeOrder(never)).toBe(false);
    // A connect from a client that never subscribed is not acted on: no answer, no slot taken.
    never.send(BluetoothDeviceRequest, connectRequest());
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
