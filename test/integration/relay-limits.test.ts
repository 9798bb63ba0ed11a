import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { InsecureListenerError } from '../../src/errors.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { encodePlaintextFrame } from '../../src/frame/plaintext.js';
import { HelloRequest } from '../../src/gen/api_pb.js';
import { ZERO_PSK_BASE64 } from '../../src/noise/psk.js';
import { DEFAULT_RELAY_MAX_CLIENTS, RelayServer, type RelayServerOptions } from '../../src/relay/relay-server.js';
import type { RelayStatus } from '../../src/relay/relay-status.js';
import type { ApiSession } from '../../src/server/api-server.js';
import { DEFAULT_BACKLOG_LIMITS } from '../../src/server/session-backlog.js';
import { profileWithDevices } from '../helpers/fleet.js';
import { SKIP_WITHOUT_IPV6_LOOPBACK } from '../helpers/ipv6-loopback.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

const DEMO = 0xc0ffee000001;
/** Status characteristic of the demo peripheral (fixtures/profiles/README.md): reads 'ready'. */
const STATUS_HANDLE = 12;
const STEP_MS = 3000;
const HELLO = encodePlaintextFrame(
  1,
  HelloRequest.toBinary(HelloRequest.create({ clientInfo: 'flooder', apiVersionMajor: 1, apiVersionMinor: 15 })),
);

/**
 * How long a flood may take to fill the loopback buffers (several MB of answers) before the session pauses: 2-5 s
 * on an idle machine, much more with the suite's other workers on the same two cores. A deadline, not a measurement.
 */
const FLOOD_WAIT_MS = 25_000;
/** Test deadline of the flood tests (the suite's default is 15 s). */
const FLOOD_TEST_MS = 40_000;

const closers: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function upstream(): Promise<SimulatedNode> {
  const node = await startSimulatedProxy({ name: 'limits-upstream', slots: 2, profile: await profileWithDevices(1) });
  closers.push(() => node.server.close());
  return node;
}

async function relayFor(
  node: SimulatedNode,
  options: Partial<RelayServerOptions> = {},
): Promise<{ relay: RelayServer; port: number; events: RelayStatus[] }> {
  const relay = new RelayServer({ proxies: [{ host: '127.0.0.1', port: node.server.address.port }], statsInterval: 100, ...options });
  const events: RelayStatus[] = [];
  const watching = (async () => {
    for await (const event of relay.status()) events.push(event);
  })();
  // Closed in reverse: the relay first, which ends the event stream.
  closers.push(() => watching);
  closers.push(() => relay.close());
  const [listening] = await relay.start({ timeout: STEP_MS });
  return { relay, port: listening!.port, events };
}

async function socketTo(port: number): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  closers.push(() => {
    socket.destroy();
  });
  await once(socket, 'connect');
  return socket;
}

describe('relay/limits', () => {
  it(
    'relay - a non-reading flooder is held at the backlog bound while another client keeps its advertisements, answers and GATT',
    async () => {
      const node = await upstream();
      const { relay, port } = await relayFor(node);
      const api = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: STEP_MS });
      closers.push(() => api.destroy());
      const proxy = await BluetoothProxy.attach(api, { timeout: STEP_MS });
      let ads = 0;
      proxy.onAdvertisement(() => ads++);
      const server = relay.proxies[0]!.server!;
      const before = new Set<ApiSession>(server.sessions);
      const flooder = await socketTo(port);
      flooder.pause();
      flooder.write(HELLO);
      await until(() => server.sessions.size > before.size, 'the flooder session');
      const session = [...server.sessions].find((s) => !before.has(s))!;
      const flood = Buffer.alloc(3 * 3_000_000);
      for (let i = 0; i < flood.length; i += 3) flood[i + 2] = 9;
      flooder.write(flood);
      let peak = 0;
      const sample = setInterval(() => (peak = Math.max(peak, session.backlogBytes)), 2);
      closers.push(() => clearInterval(sample));
      await until(() => session.inputPaused, 'the flooder to be paused', FLOOD_WAIT_MS);
      const adsAtPause = ads;
      const link = await proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
      expect(new TextDecoder().decode(await link.read(STATUS_HANDLE, { timeout: STEP_MS }))).toBe('ready');
      await link.disconnect({ timeout: STEP_MS });
      await until(() => ads > adsAtPause, 'advertisements while the flooder is held', FLOOD_WAIT_MS);
      clearInterval(sample);
      expect(peak).toBeLessThanOrEqual(DEFAULT_BACKLOG_LIMITS.pauseAt + 1024);
      expect(session.isClosed).toBe(false);
    },
    FLOOD_TEST_MS,
  );

  it(`relay - at most ${DEFAULT_RELAY_MAX_CLIENTS} clients per listener by default; one more is closed at once and reported`, async () => {
    const node = await upstream();
    const { relay, port, events } = await relayFor(node);
    await Promise.all(
      Array.from({ length: DEFAULT_RELAY_MAX_CLIENTS }, () =>
        RawClient.connect(port, { subscribe: null, track: (c) => closers.push(() => c.close()) }),
      ),
    );
    const extra = await socketTo(port);
    await once(extra, 'close');
    await until(() => events.some((e) => e.type === 'clientRefused'), 'a clientRefused event');
    expect(events.find((e) => e.type === 'clientRefused')).toMatchObject({ limit: DEFAULT_RELAY_MAX_CLIENTS });
    expect(relay.snapshot().proxies[0]!.clients).toHaveLength(DEFAULT_RELAY_MAX_CLIENTS);
  });

  it('relay - maxClients is per listener; a silent client is dropped with a clientDropped event naming it and the reason', async () => {
    const node = await upstream();
    const { port, events } = await relayFor(node, { maxClients: 2, clientKeepaliveInterval: 60 });
    const quiet = await RawClient.connect(port, { track: (c) => closers.push(() => c.close()) });
    quiet.answerPings = false;
    await once(quiet.socket, 'close');
    await until(() => events.some((e) => e.type === 'clientDropped'), 'a clientDropped event');
    expect(events.find((e) => e.type === 'clientDropped')).toMatchObject({ client: 1, reason: 'keepalive' });
    await RawClient.connect(port, { track: (c) => closers.push(() => c.close()) });
    await RawClient.connect(port, { track: (c) => closers.push(() => c.close()) });
    const third = await socketTo(port);
    await once(third, 'close');
    await until(() => events.some((e) => e.type === 'clientRefused'), 'a clientRefused event');
  });

  it('relay - a client is reported connected once its Hello was accepted, before a bad frame in the same read drops it; a Hello that does not decode reports no client', async () => {
    const node = await upstream();
    const { port, events } = await relayFor(node);
    const clientEvents = (): string[] =>
      events.filter((e) => e.type.startsWith('client')).map((e) => `${e.type}:${'client' in e ? String(e.client) : ''}`);
    // A Hello and a BluetoothDeviceRequest with a truncated varint, written as one chunk.
    const bad = encodePlaintextFrame(68, Uint8Array.from([0x08, 0xff]));
    const first = await socketTo(port);
    first.write(Buffer.concat([HELLO, bad]));
    await once(first, 'close');
    await until(() => events.some((e) => e.type === 'clientDisconnected'), 'the first client gone');
    expect(clientEvents()).toEqual(['clientConnected:1', 'clientDropped:1', 'clientDisconnected:1']);
    events.length = 0;
    // A HelloRequest whose string field runs past the payload: no client to report, one drop without a number.
    const second = await socketTo(port);
    second.write(encodePlaintextFrame(1, Uint8Array.from([0x0a, 0x05, 0x41])));
    await once(second, 'close');
    await until(() => events.some((e) => e.type === 'clientDropped'), 'the second drop');
    expect(events.find((e) => e.type === 'clientDropped')).toMatchObject({ client: undefined, reason: 'protocol' });
    expect(clientEvents()).toEqual(['clientDropped:undefined']);
  });

  it.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)(
    'relay - a client on IPv6 is named in one form everywhere: [address]:port in the snapshot, clientConnected and clientDropped (waits for IPv6 loopback ::1)',
    async () => {
      const node = await upstream();
      const { relay, port, events } = await relayFor(node, { listen: { host: '::1', port: 0 }, clientKeepaliveInterval: 60 });
      const socket = netConnect({ host: '::1', port });
      socket.on('error', () => {});
      closers.push(() => {
        socket.destroy();
      });
      await once(socket, 'connect');
      const named = `[::1]:${socket.localPort}`;
      // Hello, then silence: no ping is answered, so the relay drops the client.
      socket.write(HELLO);
      await until(() => relay.snapshot().proxies[0]!.clients.length === 1, 'the client');
      expect(relay.snapshot().proxies[0]!.clients[0]!.remote).toBe(named);
      await until(() => events.some((e) => e.type === 'clientDropped'), 'the drop');
      expect(events.find((e) => e.type === 'clientConnected')).toMatchObject({ remote: named });
      expect(events.find((e) => e.type === 'clientDropped')).toMatchObject({ remote: named, reason: 'keepalive' });
    },
  );

  it('relay - a plaintext relay beyond loopback is refused in the constructor, before any upstream connect; a key or loopback pass', () => {
    const proxies = [{ host: '127.0.0.1', port: 9 }];
    for (const host of ['0.0.0.0', '::', '192.168.1.40']) {
      expect(() => new RelayServer({ proxies, listen: { host, port: 0 } })).toThrow(InsecureListenerError);
    }
    expect(() => new RelayServer({ proxies, listen: { host: '0.0.0.0', port: 0 } })).toThrow(/--allow-plaintext/);
    // The all-zero key is public (spec §4.7): it keeps nobody out, so it is no key for this rule.
    expect(() => new RelayServer({ proxies, listen: { host: '0.0.0.0', port: 0 }, downstreamPsk: ZERO_PSK_BASE64 })).toThrow(
      /all-zero key/,
    );
  });
});
