import { describe, expect, it } from 'vitest';
import { RAW_ADVERTISEMENTS_MESSAGE_ID } from '../../src/bluetooth/raw-advertisements.js';
import type { ApiConnection } from '../../src/connection/connection.js';
import { FeatureMissingError } from '../../src/errors.js';
import type { SubscriptionPolicy } from '../../src/fixture-server/firmware.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import { BluetoothDeviceConnectionResponse, BluetoothDeviceRequest } from '../../src/gen/api_pb.js';
import { slotHoldings } from '../../src/inspect/orphan-slots.js';
import { inspectProxies, ProxyInspector } from '../../src/inspect/proxy-inspector.js';
import { SlotInspector } from '../../src/inspect/slot-inspector.js';
import { HOLD_EVIDENCE_MS } from '../../src/inspect/subscriber-verdict.js';
import type { ApiSession } from '../../src/server/api-server.js';
import { useClosers } from '../helpers/closers.js';
import { connectRequest, openApi, profileWithDevices, startProxy, subscribeAsOther, target } from '../helpers/fleet.js';

const DEMO = 0xc0ffee000001;
const DEMO_MAC = 'C0:FF:EE:00:00:01';
/** The subscriber probe's address: its answer would reach the other client as a stray connected=false. */
const PROBE = 0xffff_ffff_ffff;

const closers = useClosers();

const startNode = (name: string, options: SimulatedNodeOptions = {}): Promise<SimulatedNode> => startProxy(closers, { name, ...options });

/** Home Assistant's part: holds the subscription, counts its advertisements and any stray probe answer. */
async function homeAssistant(node: SimulatedNode): Promise<{ api: ApiConnection; ads: () => number; probes: () => number }> {
  const api = await subscribeAsOther(node, closers);
  let ads = 0;
  let probes = 0;
  api.onRaw(RAW_ADVERTISEMENTS_MESSAGE_ID, () => ads++);
  api.on(BluetoothDeviceConnectionResponse, (m) => {
    if (m.address === PROBE) probes++;
  });
  return { api, ads: () => ads, probes: () => probes };
}

/** The other client opens a link to the demo device, as Home Assistant would. */
async function connectAs(api: ApiConnection, address = DEMO): Promise<void> {
  await api.request(
    BluetoothDeviceRequest,
    connectRequest(address),
    BluetoothDeviceConnectionResponse,
    (m) => m.address === address && m.connected,
    { timeout: 3000 },
  );
}

/** Every session the node accepts from now on, for checking what our inspector sent. */
function sessionsOf(node: SimulatedNode): ApiSession[] {
  const sessions: ApiSession[] = [];
  closers.push(node.server.onSession((s) => sessions.push(s)));
  return sessions;
}

describe('slot inspector', () => {
  for (const policy of ['first-wins', 'newest-wins'] as SubscriptionPolicy[]) {
    it(`slot inspector - reads the slots of a proxy Home Assistant holds (${policy}) and takes nothing`, async () => {
      const node = await startNode(`inspect-${policy}`, { subscriptionPolicy: policy });
      const ha = await homeAssistant(node);
      const holder = node.bluetooth.subscriber;
      await connectAs(ha.api);
      const sessions = sessionsOf(node);
      const adsBefore = ha.ads();
      const [proxy] = await inspectProxies([target(node)], { timeout: 3000 });
      expect(proxy).toMatchObject({ online: true, name: `inspect-${policy}`, error: undefined });
      const inspection = proxy!.inspection!;
      expect(inspection.slots).toMatchObject({ free: 2, limit: 3, allocated: [DEMO] });
      expect(inspection.allocations).toMatchObject([{ mac: DEMO_MAC, owned: false, unclaimed: undefined }]);
      expect(inspection.allocations[0]!.heldMs).toBeGreaterThanOrEqual(HOLD_EVIDENCE_MS);
      // Held over a second: likely another client, not sure (a link being torn down can outlive its subscriber).
      expect(inspection.subscriber).toMatchObject({ holder: 'otherClient', sure: false });
      expect(inspection.subscriber.evidence).toContain(DEMO_MAC);
      // Home Assistant keeps the subscription, its advertisements and its link; it never saw a probe answer.
      expect(node.bluetooth.subscriber).toBe(holder);
      // With the demo connected the others advertise every 1–2 s: give the next batch time to come.
      await expect.poll(ha.ads, { timeout: 3000 }).toBeGreaterThan(adsBefore);
      expect(ha.probes()).toBe(0);
      expect(node.bluetooth.linkAddresses).toEqual([DEMO]);
      // Our session sent Hello, device info (+ capabilities), slot queries and its goodbye: no subscribe (66), no probe (68).
      expect(sessions).toHaveLength(1);
      expect(sessions[0]!.received).not.toContain(66);
      expect(sessions[0]!.received).not.toContain(68);
      expect(sessions[0]!.received.filter((t) => t === 80)).toHaveLength(2);
    });
  }

  it('slot inspector - nobody subscribed and no slot held: nobody seen, not sure; one query only', async () => {
    const node = await startNode('inspect-idle');
    const sessions = sessionsOf(node);
    const [proxy] = await inspectProxies([target(node)], { timeout: 3000 });
    expect(proxy!.inspection!.slots).toMatchObject({ free: 3, limit: 3, allocated: [] });
    expect(proxy!.inspection!.subscriber).toMatchObject({ holder: 'nobodySeen', sure: false });
    expect(node.bluetooth.subscriber).toBeUndefined();
    expect(sessions[0]!.received.filter((t) => t === 80)).toHaveLength(1);
  });

  it('slot inspector - an idle Home Assistant (subscribed, no link) looks like nobody: the verdict says it cannot tell', async () => {
    const node = await startNode('inspect-idle-ha');
    await homeAssistant(node);
    const [proxy] = await inspectProxies([target(node)], { timeout: 3000 });
    expect(proxy!.inspection!.subscriber.holder).toBe('nobodySeen');
    expect(proxy!.inspection!.subscriber.sure).toBe(false);
    expect(proxy!.inspection!.subscriber.evidence).toContain('Home Assistant');
  });

  it('slot inspector - subscribe: true on newest-wins takes the subscription (Home Assistant stops getting advertisements)', async () => {
    const node = await startNode('inspect-take', { subscriptionPolicy: 'newest-wins' });
    const ha = await homeAssistant(node);
    const holder = node.bluetooth.subscriber;
    await connectAs(ha.api);
    const inspector = new ProxyInspector([target(node)], { subscribe: true }).start();
    closers.push(() => inspector.close());
    await inspector.ready({ timeout: 3000 });
    const [proxy] = await inspector.poll();
    expect(proxy!.inspection!.subscriber).toMatchObject({ holder: 'thisProcess', sure: true });
    expect(proxy!.inspection!.scannerMode).toBe('active');
    // Its link was there before we subscribed: not unclaimed, however long it is held.
    await new Promise((resolve) => setTimeout(resolve, HOLD_EVIDENCE_MS + 50));
    const [later] = await inspector.poll();
    expect(later!.inspection!.allocations).toMatchObject([{ mac: DEMO_MAC, owned: false, unclaimed: undefined }]);
    // The others advertise every 1–2 s (the demo is connected): 2.2 s without a batch means HA gets none.
    const adsAfterTakeover = ha.ads();
    await new Promise((resolve) => setTimeout(resolve, 2_200));
    expect(ha.ads()).toBe(adsAfterTakeover);
    expect(node.bluetooth.subscriber).not.toBe(holder);
  });

  it('slot inspector - subscribe: true on first-wins is refused where Home Assistant holds it, and says so', async () => {
    const node = await startNode('inspect-refused', { subscriptionPolicy: 'first-wins' });
    const ha = await homeAssistant(node);
    const holder = node.bluetooth.subscriber;
    const [proxy] = await inspectProxies([target(node)], { subscribe: true, timeout: 4000 });
    expect(proxy!.inspection!.subscriber).toMatchObject({ holder: 'otherClient', sure: true });
    expect(proxy!.inspection!.subscriber.evidence).toContain('first subscriber keeps');
    expect(node.bluetooth.subscriber).toBe(holder);
    const before = ha.ads();
    await expect.poll(ha.ads, { timeout: 3000 }).toBeGreaterThan(before);
  });

  it('slot inspector - subscribe: true never sends the subscriber probe, even on firmware without scanner state (2024.10)', async () => {
    const node = await startNode('inspect-2024', { firmware: '2024.10' });
    const ha = await homeAssistant(node);
    const holder = node.bluetooth.subscriber;
    const sessions = sessionsOf(node);
    const inspector = new ProxyInspector([target(node)], { subscribe: true }).start();
    closers.push(() => inspector.close());
    const [proxy] = await inspector.look({ timeout: 3000 });
    // Its answer would have reached Home Assistant, the subscriber, as a stray connected=false.
    expect(ha.probes()).toBe(0);
    expect(sessions[0]!.received).not.toContain(68);
    expect(node.bluetooth.subscriber).toBe(holder);
    // Without the probe nothing can confirm our (ignored) subscribe: the verdict is a guess and says why.
    expect(proxy!.inspection!.subscriber).toMatchObject({ holder: 'thisProcess', sure: false });
    expect(proxy!.inspection!.subscriber.evidence).toContain('ours was ignored');
  });

  it('slot inspector - with the subscription ours on first-wins, a link nobody of ours opened is unclaimed', async () => {
    const node = await startNode('inspect-unclaimed', { subscriptionPolicy: 'first-wins' });
    const inspector = new ProxyInspector([target(node)], { subscribe: true }).start();
    closers.push(() => inspector.close());
    await inspector.ready({ timeout: 3000 });
    // Subscribed, we hear the demo advertise its name (every 250 ms, the name in every other advertisement).
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // A client that never subscribed connects: the firmware carries it out and reports it to the subscriber, us.
    const stranger = await openApi(closers, node);
    stranger.send(BluetoothDeviceRequest, connectRequest());
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([DEMO]);
    await inspector.poll();
    await new Promise((resolve) => setTimeout(resolve, HOLD_EVIDENCE_MS + 50));
    const [proxy] = await inspector.poll();
    const [holding] = slotHoldings([proxy!]);
    expect(holding).toMatchObject({ mac: DEMO_MAC, holder: 'thisProcess', signs: [{ sign: 'unclaimed' }] });
    expect(proxy!.inspection!.allocations[0]!.name).toBe('esphome-ble-demo');
    expect(await inspector.release(proxy!.id, DEMO, { timeout: 2000 })).toBe(true);
    expect(node.bluetooth.linkAddresses).toEqual([]);
  });

  it('slot inspector - on newest-wins a link is unclaimed only when its connect event came to us, not when a resubscribed client opened it', async () => {
    const node = await startNode('inspect-moved-on', { subscriptionPolicy: 'newest-wins', profile: await profileWithDevices(1) });
    const inspector = new ProxyInspector([target(node)], { subscribe: true }).start();
    closers.push(() => inspector.close());
    await inspector.ready({ timeout: 3000 });
    const [ours] = await inspector.poll();
    expect(ours!.inspection!.subscriber.holder).toBe('thisProcess');
    // A client that is not the subscriber connects: its connect event reaches us.
    const stranger = await openApi(closers, node);
    stranger.send(BluetoothDeviceRequest, connectRequest());
    await expect.poll(() => node.bluetooth.linkAddresses).toEqual([DEMO]);
    // Then Home Assistant subscribes again (newest wins; our watchdog has not noticed yet) and opens a link itself.
    const ha = await homeAssistant(node);
    const OTHER = 0xc0ffee000100;
    await connectAs(ha.api, OTHER);
    await inspector.poll();
    await new Promise((resolve) => setTimeout(resolve, HOLD_EVIDENCE_MS + 50));
    const [proxy] = await inspector.poll();
    const signs = new Map(slotHoldings([proxy!]).map((h) => [h.address, h.signs.map((s) => s.sign)]));
    expect(signs.get(DEMO)).toEqual(['unclaimed']);
    // Home Assistant's own link is live for it: no sign, whatever our stale view of the subscription says.
    expect(signs.get(OTHER)).toEqual([]);
  });

  it('slot inspector - release works without the subscription (the firmware obeys anyone) and reports a slot it kept', async () => {
    const node = await startNode('inspect-release', { slotsBusy: 1 });
    const ha = await homeAssistant(node);
    await connectAs(ha.api);
    const dropped = ha.api.waitFor(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && !m.connected, { timeout: 3000 });
    const api = await openApi(closers, node);
    const inspector = new SlotInspector(api);
    closers.push(() => inspector.close());
    expect((await inspector.poll()).slots?.allocated).toHaveLength(2);
    expect(await inspector.release(DEMO)).toBe(true);
    // That was Home Assistant's live link: it learns of its end like of any other (callers must ask first).
    await dropped;
    // The phantom belongs to a client that keeps it: still allocated after the timeout.
    expect(await inspector.release(0xf0_00_00_00_00_10, { timeout: 400 })).toBe(false);
    const aborted = new AbortController();
    aborted.abort(new Error('stop'));
    await expect(inspector.release(DEMO, { signal: aborted.signal })).rejects.toThrow('stop');
  });

  it('slot inspector - an advertisement-only board answers no slot query: shown as such, nothing asked, nothing released', async () => {
    const node = await startNode('inspect-adv', { board: 'esp32-adv-only' });
    const sessions = sessionsOf(node);
    const [proxy] = await inspectProxies([target(node)], { timeout: 3000 });
    const inspection = proxy!.inspection!;
    expect(inspection).toMatchObject({ advertisementOnly: true, slots: undefined, allocations: [] });
    expect(inspection.featureNames).toEqual(['PASSIVE_SCAN', 'RAW_ADVERTISEMENTS', 'FEATURE_STATE_AND_MODE']);
    expect(inspection.subscriber).toMatchObject({ holder: 'unknown', sure: false });
    expect(sessions[0]!.received).not.toContain(80);
    const api = await openApi(closers, node);
    const inspector = new SlotInspector(api);
    closers.push(() => inspector.close());
    await expect(inspector.release(DEMO)).rejects.toBeInstanceOf(FeatureMissingError);
  });

  it('slot inspector - a node with feature flags 0 is not a proxy (not an advertisement-only one); subscribe leaves it alone', async () => {
    const node = await startNode('inspect-plug', { featureFlags: 0 });
    const sessions = sessionsOf(node);
    for (const subscribe of [false, true]) {
      const [proxy] = await inspectProxies([target(node)], { timeout: 3000, subscribe });
      expect(proxy).toMatchObject({ online: true, error: undefined });
      expect(proxy!.inspection).toMatchObject({ features: 0, advertisementOnly: false, slots: undefined });
      expect(proxy!.inspection!.subscriber).toMatchObject({ holder: 'notAProxy', sure: true });
      expect(proxy!.inspection!.subscriber.evidence).not.toContain('advertisement-only');
    }
    for (const session of sessions) expect(session.received.filter((t) => t === 66 || t === 68 || t === 80)).toEqual([]);
  });

  it('slot inspector - firmware before 2023.6 answers every client: no single subscriber to hold', async () => {
    const node = await startNode('inspect-old', { firmware: '2023.5' });
    const [proxy] = await inspectProxies([target(node)], { timeout: 3000 });
    expect(proxy!.inspection!.subscriber).toMatchObject({ holder: 'everyClient', sure: true });
  });

  it('slot inspector - a device holding slots on two proxies is listed on both as a hint, not an orphan sign', async () => {
    const [a, b] = await Promise.all([startNode('dup-a'), startNode('dup-b')]);
    for (const node of [a!, b!]) await connectAs((await homeAssistant(node)).api);
    const holdings = slotHoldings(await inspectProxies([target(a!), target(b!)], { timeout: 3000 }));
    expect(holdings.map((h) => [h.proxyName, h.mac, h.holder, h.signs, h.alsoOn])).toEqual([
      ['dup-a', DEMO_MAC, 'otherClient', [], ['dup-b']],
      ['dup-b', DEMO_MAC, 'otherClient', [], ['dup-a']],
    ]);
  });

  it('slot inspector - one deadline: a proxy that connects but never answers the slot query costs the timeout, not more', async () => {
    // Its feature flags claim connections, but the board has no handler: the slot query goes unanswered.
    const node = await startNode('inspect-mute', { board: 'esp32-adv-only', featureFlags: 0xff });
    const started = Date.now();
    const [proxy] = await inspectProxies([target(node)], { timeout: 800 });
    // The old code waited its fixed 5 s slot-query deadline on top of the connect ("timed out after 5000 ms").
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(proxy).toMatchObject({ online: true, error: { code: 'ESPAPI_ERR_TIMEOUT' } });
    expect(Number(/timed out after (\d+) ms/.exec(proxy!.error!.message)?.[1])).toBeLessThanOrEqual(800);
    const aborted = new AbortController();
    setTimeout(() => aborted.abort(new Error('stop')), 200);
    await expect(inspectProxies([target(node)], { signal: aborted.signal })).rejects.toThrow('stop');
  });

  it('slot inspector - the second look is skipped when the deadline leaves no time for it', async () => {
    const node = await startNode('inspect-short');
    await connectAs((await homeAssistant(node)).api);
    const sessions = sessionsOf(node);
    const [proxy] = await inspectProxies([target(node)], { timeout: HOLD_EVIDENCE_MS });
    expect(proxy!.inspection!.allocations).toMatchObject([{ mac: DEMO_MAC }]);
    expect(proxy!.inspection!.subscriber.holder).toBe('unknown');
    expect(sessions[0]!.received.filter((t) => t === 80)).toHaveLength(1);
  });

  it('slot inspector - an unreachable proxy is offline with its error; watch() polls and ends on abort', async () => {
    const node = await startNode('inspect-watch');
    const inspector = new ProxyInspector([target(node), { host: '127.0.0.1', port: 1 }], { backoff: { initialDelay: 50, maxDelay: 100 } });
    closers.push(() => inspector.close());
    await inspector.ready({ timeout: 500 });
    const stop = new AbortController();
    const seen: number[] = [];
    for await (const snapshot of inspector.watch({ interval: 100, signal: stop.signal })) {
      seen.push(snapshot[0]!.inspection!.slots!.free);
      expect(snapshot[1]).toMatchObject({ online: false, id: '127.0.0.1:1', error: { code: 'ESPAPI_ERR_CONNECT' } });
      if (seen.length === 3) stop.abort();
    }
    expect(seen).toEqual([3, 3, 3]);
  });
});
