import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Advertisement } from '../../src/bluetooth/advertisement.js';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { BleConnectError, BleDisconnectedError } from '../../src/errors.js';
import { startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { REDACTED, SessionRecorder } from '../../src/fixture-server/recorder.js';
import { type ReplayOptions, ReplayPlugin } from '../../src/fixture-server/replay.js';
import { formatTranscript, loadTranscript, parseTranscript, type Transcript } from '../../src/fixture-server/transcript.js';
import { ApiServer } from '../../src/server/api-server.js';
import { TEST_PSK } from '../helpers/fixture.js';

// Every file in fixtures/recordings is replayed with the client flow scripts/record-fixtures.mjs recorded it with.
const RECORDINGS = join(import.meta.dirname, '..', '..', 'fixtures', 'recordings');
/** The default profile's demo peripheral and the other advertisers (fixtures/profiles/default.json). */
const DEMO = 0xc0ffee000001;
const DEFAULT_PROFILE_ADDRESSES = [DEMO, 0xc4f92675df22, 0xb43522f53da4, 0x04a3169b095a];
const utf8 = new TextEncoder();
const text = new TextDecoder();

interface Replay {
  server: ApiServer;
  plugin: ReplayPlugin;
  api: ApiConnection;
}

const servers: ApiServer[] = [];
const apis: ApiConnection[] = [];

afterEach(async () => {
  for (const api of apis.splice(0)) api.destroy();
  for (const server of servers.splice(0)) await server.close();
});

/** Serves `transcript` (Noise with TEST_PSK when it was recorded encrypted) and connects the real client to it. */
async function replay(transcript: Transcript, options: ReplayOptions = {}): Promise<Replay> {
  const plugin = new ReplayPlugin(transcript, options);
  const noise = transcript.header.encryption === 'noise';
  const server = new ApiServer({
    host: '127.0.0.1',
    port: 0,
    name: transcript.header.name,
    ...(transcript.header.mac === undefined ? {} : { mac: transcript.header.mac }),
    ...(noise ? { psk: TEST_PSK } : {}),
    plugins: [plugin],
  });
  servers.push(server);
  const { port } = await server.listen();
  const api = await ApiConnection.connect({ host: '127.0.0.1', port, psk: noise ? TEST_PSK : undefined, timeout: 3000 });
  apis.push(api);
  return { server, plugin, api };
}

async function replayFile(name: string): Promise<Replay> {
  return replay(await loadTranscript(join(RECORDINGS, `${name}.jsonl`)));
}

/** Closes the client gracefully, then the server, and checks the client did exactly what was recorded. */
async function finish({ server, plugin, api }: Replay): Promise<void> {
  await api.close();
  await server.close();
  expect(plugin.mismatches, 'client messages the recording did not expect').toEqual([]);
  expect(plugin.unplayed, 'recorded requests the client never sent').toEqual([]);
}

describe('replay', () => {
  it('replay - handshake-plaintext gives back the recorded hello and device info', async () => {
    const r = await replayFile('handshake-plaintext');
    expect(r.api.encrypted).toBe(false);
    expect(r.api.hello).toMatchObject({ name: 'recorded-proxy', apiVersionMajor: 1, apiVersionMinor: 15, serverInfo: '2026.8.0' });
    expect(r.api.deviceInfo).toMatchObject({
      name: 'recorded-proxy',
      macAddress: '02:00:00:00:00:01',
      bluetoothMacAddress: 'AA:BB:CC:00:00:01',
      bluetoothProxyFeatureFlags: 0xff,
      model: 'esp32dev',
    });
    await finish(r);
  });

  it('replay - handshake-noise replays decrypted messages over a fresh Noise handshake', async () => {
    const transcript = await loadTranscript(join(RECORDINGS, 'handshake-noise.jsonl'));
    expect(transcript.header.encryption).toBe('noise');
    const r = await replay(transcript);
    expect(r.api.encrypted).toBe(true);
    expect(r.api.hello.name).toBe('recorded-proxy');
    expect(r.api.deviceInfo.macAddress).toBe('02:00:00:00:00:01');
    await finish(r);
  });

  it('replay - scan delivers the recorded advertisement batches', async () => {
    const r = await replayFile('scan');
    const proxy = await BluetoothProxy.attach(r.api);
    const heard: Advertisement[] = [];
    const off = proxy.onAdvertisement((ad) => heard.push(ad));
    await new Promise<void>((resolve) => {
      let batches = 0;
      const offRaw = r.api.onRaw(93, () => {
        if (++batches < 3) return;
        offRaw();
        resolve();
      });
    });
    off();
    expect(new Set(heard.map((ad) => ad.address))).toEqual(new Set(DEFAULT_PROFILE_ADDRESSES));
    expect(proxy.addressTypeOf(DEMO)).toBe(1);
    // The demo rotates two payloads: flags + service UUID, then its complete local name.
    expect(heard.filter((ad) => ad.address === DEMO).map((ad) => ad.localName)).toContain('esphome-ble-demo');
    expect(heard.find((ad) => ad.address === 0x04a3169b095a)?.rssi).toBe(-60);
    expect(proxy.scannerState).toMatchObject({ state: 'running', mode: 'active' });
    await proxy.detach();
    await finish(r);
  });

  it('replay - gatt returns the recorded services, values and notification', async () => {
    const r = await replayFile('gatt');
    const proxy = await BluetoothProxy.attach(r.api);
    const link = await proxy.connect(DEMO, { addressType: 1 });
    expect(link.mtu).toBe(247);
    const services = await link.getServices();
    expect(services.get('2a00', link.mac).handle).toBe(3);
    expect(text.decode(await link.read(0x03))).toBe('esphome-ble-demo');
    await link.write(0x0e, utf8.encode('hello'));
    expect(text.decode(await link.read(0x0c))).toBe('hello');
    let notify!: (data: Uint8Array) => void;
    const notified = new Promise<Uint8Array>((resolve) => {
      notify = resolve;
    });
    const stop = await link.startNotify(0x12, (data) => notify(data));
    expect([...(await notified)]).toEqual([0x01]);
    await stop();
    await link.disconnect();
    expect(proxy.slots).toMatchObject({ free: 3, limit: 3 });
    await proxy.detach();
    await finish(r);
  });

  it('replay - out-of-slots refuses the connect with the out-of-slots error class', async () => {
    const r = await replayFile('out-of-slots');
    const proxy = await BluetoothProxy.attach(r.api);
    expect(proxy.slots).toMatchObject({ free: 0, limit: 3 });
    const error = await proxy.connect(DEMO, { addressType: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BleConnectError);
    expect(error).toMatchObject({ reason: 0, reasonName: 'NO_FREE_SLOT', failureClass: 'outOfSlots' });
    await proxy.detach();
    await finish(r);
  });

  it('replay - link-loss drops the link with reason 0x08 after the recorded delay', async () => {
    const r = await replayFile('link-loss');
    const proxy = await BluetoothProxy.attach(r.api);
    const link = await proxy.connect(DEMO, { addressType: 1 });
    const connectedAt = performance.now();
    const closed = await link.closed();
    // Recorded 300 ms after the connect reply; the replay keeps the pace.
    expect(performance.now() - connectedAt).toBeGreaterThan(200);
    expect(closed).toMatchObject({ reason: 0x08, requested: false });
    const error = await link.read(0x03).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BleDisconnectedError);
    expect(error).toMatchObject({ reason: 0x08 });
    await link.disconnect();
    await proxy.detach();
    await finish(r);
  });

  // KNOWN BUG (src/bluetooth/proxy-client.ts, BluetoothProxy.connect): the link is registered only after the
  // connect promise settles, so a connected=false that arrives in the same TCP read as connected=true (the
  // firmware batches its send buffer; here the whole recording at speed Infinity) finds no link and is lost:
  // the link stays "connected" forever. Turn this into it() once connect registers the link synchronously.
  it('replay - link-loss in the same TCP read as the connect reply still ends the link', async () => {
    const r = await replay(await loadTranscript(join(RECORDINGS, 'link-loss.jsonl')), { speed: Number.POSITIVE_INFINITY });
    const proxy = await BluetoothProxy.attach(r.api);
    const link = await proxy.connect(DEMO, { addressType: 1 });
    let timer: NodeJS.Timeout | undefined;
    try {
      const outcome = await Promise.race([
        link.closed(),
        new Promise<'still connected'>((resolve) => {
          timer = setTimeout(() => resolve('still connected'), 300);
        }),
      ]);
      expect(outcome).toMatchObject({ reason: 0x08 });
    } finally {
      clearTimeout(timer);
    }
  });

  it('replay - a client that strays from the recording is reported', async () => {
    const r = await replay(await loadTranscript(join(RECORDINGS, 'handshake-plaintext.jsonl')));
    await BluetoothProxy.attach(r.api, { timeout: 200, subscriberCheckTimeout: 100 }).catch(() => {});
    await r.api.close();
    await r.server.close();
    expect(r.plugin.mismatches.map((m) => m.type)).toContain('SubscribeBluetoothLEAdvertisementsRequest');
    expect(r.plugin.unplayed).toEqual([]);
  });
});

describe('recorder', () => {
  it('recorder - a live session recorded with the tap replays to the same client results', async () => {
    const node = await startSimulatedProxy({ name: 'live-proxy', psk: TEST_PSK, advertise: false });
    servers.push(node.server);
    const recorder = new SessionRecorder({ name: '', encryption: 'noise' });
    const api = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, psk: TEST_PSK, tap: recorder.tap });
    apis.push(api);
    const flow = async (client: ApiConnection): Promise<string> => {
      const proxy = await BluetoothProxy.attach(client);
      const link = await proxy.connect(DEMO, { addressType: 1 });
      const value = text.decode(await link.read(0x03));
      await link.disconnect();
      await proxy.detach();
      return value;
    };
    expect(await flow(api)).toBe('esphome-ble-demo');
    await api.close();
    const transcript = parseTranscript(formatTranscript(recorder.transcript()));
    expect(transcript.header).toMatchObject({ name: 'live-proxy', mac: node.server.mac, encryption: 'noise' });
    expect(transcript.entries[0]).toMatchObject({ dir: 'c2d', t: 0, type: 'HelloRequest' });
    const r = await replay(transcript, { speed: 4 });
    expect(await flow(r.api)).toBe('esphome-ble-demo');
    await finish(r);
  });

  it('recorder - times are relative to the first message; pings, unknown ids dropped; passwords redacted', () => {
    let now = 1000;
    const recorder = new SessionRecorder({ name: 'n', encryption: 'plaintext' }, { now: () => now });
    const auth = Uint8Array.of(0x0a, 0x02, 0x70, 0x77); // AuthenticationRequest { password: 'pw' }
    recorder.tap('c2d', 7, new Uint8Array(0));
    recorder.tap('c2d', 3, auth);
    now = 1012.4;
    recorder.tap('d2c', 8, new Uint8Array(0));
    recorder.tap('d2c', 4000, Uint8Array.of(1, 2));
    recorder.tap('c2d', 9, new Uint8Array(0));
    expect(recorder.skipped).toBe(1);
    expect(recorder.transcript().entries).toEqual([
      { dir: 'c2d', t: 0, type: 'AuthenticationRequest', msg: { password: REDACTED } },
      { dir: 'c2d', t: 12, type: 'DeviceInfoRequest', msg: {} },
    ]);

    const withPings = new SessionRecorder({ name: 'n', encryption: 'plaintext' }, { includePings: true, resolution: 10, now: () => now });
    withPings.tap('c2d', 7, new Uint8Array(0));
    now = 1030;
    withPings.tap('d2c', 8, new Uint8Array(0));
    expect(withPings.transcript().entries.map((e) => [e.type, e.t])).toEqual([
      ['PingRequest', 0],
      ['PingResponse', 20],
    ]);
  });
});
