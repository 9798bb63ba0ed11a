import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { InsecureListenerError, InvalidArgumentError } from '../../src/errors.js';
import { type SimulatedNode, type SimulatedNodeOptions, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { encodePlaintextFrame } from '../../src/frame/plaintext.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothLERawAdvertisementsResponse,
  DeviceInfoResponse,
  HelloRequest,
  PingRequest,
} from '../../src/gen/api_pb.js';
import { ZERO_PSK_BASE64 } from '../../src/noise/psk.js';
import { ApiServer, type ApiSession, DEFAULT_MAX_CONNECTIONS } from '../../src/server/api-server.js';
import type { ApiServerEvent } from '../../src/server/server-events.js';
import { DEFAULT_BACKLOG_LIMITS } from '../../src/server/session-backlog.js';
import { useClosers } from '../helpers/closers.js';
import { SKIP_WITHOUT_IPV6_LOOPBACK } from '../helpers/ipv6-loopback.js';
import { openSocket, type RawClient, rawClient as rawClientOf } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

/**
 * How long a flood may take to fill the loopback buffers (several MB of answers) before the session pauses: 2-5 s
 * on an idle machine, much more with the suite's other workers on the same two cores. A deadline, not a measurement.
 */
const FLOOD_WAIT_MS = 25_000;
/** Test deadline of the flood tests (the suite's default is 15 s). */
const FLOOD_TEST_MS = 40_000;

const closers = useClosers();

const HELLO = encodePlaintextFrame(
  1,
  HelloRequest.toBinary(HelloRequest.create({ clientInfo: 'hostile', apiVersionMajor: 1, apiVersionMinor: 15 })),
);
/** DeviceInfoRequest: the smallest request with the largest answer (about 150 bytes for 3). */
const DEVICE_INFO_REQUEST = Uint8Array.of(0x00, 0x00, 0x09);

async function node(options: SimulatedNodeOptions = {}): Promise<{ node: SimulatedNode; events: ApiServerEvent[] }> {
  const events: ApiServerEvent[] = [];
  const started = await startSimulatedProxy({ name: 'limits', onEvent: (event) => events.push(event), ...options });
  closers.push(() => started.server.close());
  return { node: started, events };
}

/** A socket that is closed after the test; it never reads unless told to. */
const socketTo = (port: number): Promise<Socket> => openSocket(closers, port);

const rawClient = (port: number): Promise<RawClient> => rawClientOf(closers, port);

/** `count` DeviceInfoRequests in one buffer. */
function deviceInfoFlood(count: number): Buffer {
  const out = Buffer.alloc(count * DEVICE_INFO_REQUEST.length);
  for (let i = 0; i < count; i++) out.set(DEVICE_INFO_REQUEST, i * DEVICE_INFO_REQUEST.length);
  return out;
}

/** The session of the latest connection (the server registers it on accept). */
async function newestSession(server: ApiServer, before: ReadonlySet<ApiSession>): Promise<ApiSession> {
  await until(() => [...server.sessions].some((s) => !before.has(s)), 'the new session');
  return [...server.sessions].find((s) => !before.has(s))!;
}

describe('server/limits', () => {
  it(
    'api-server - a client flooding requests that never reads is paused at the bound; another client keeps its ads and answers',
    async () => {
      const { node: sim } = await node();
      const port = sim.server.address.port;
      const good = await rawClient(port);
      const before = new Set(sim.server.sessions);
      const flooder = await socketTo(port);
      flooder.pause();
      flooder.write(HELLO);
      const session = await newestSession(sim.server, before);
      // 10 MiB of requests: about 500 MB of answers if each were queued.
      const flood = deviceInfoFlood(3_500_000);
      flooder.write(flood);
      let peakBacklog = 0;
      let peakInput = 0;
      const sample = setInterval(() => {
        peakBacklog = Math.max(peakBacklog, session.backlogBytes);
        peakInput = Math.max(peakInput, session.inputBytes);
      }, 2);
      closers.push(() => clearInterval(sample));
      await until(() => session.inputPaused, 'the flooder to be paused', FLOOD_WAIT_MS);
      const adsAtPause = good.all(BluetoothLERawAdvertisementsResponse).length;
      // The well-behaved client is served while the flooder waits: answers and advertisements keep coming.
      for (let i = 0; i < 5; i++) {
        const mark = good.received.length;
        good.sendRaw(9, new Uint8Array(0));
        await good.next(DeviceInfoResponse, () => true, mark);
      }
      await until(
        () => good.all(BluetoothLERawAdvertisementsResponse).length > adsAtPause + 2,
        'more advertisements for the good client',
        FLOOD_WAIT_MS,
      );
      // Several resume checks later the flooder is still held at the bound and still open.
      await new Promise((resolve) => setTimeout(resolve, 200));
      clearInterval(sample);
      const { pauseAt } = DEFAULT_BACKLOG_LIMITS;
      // One DeviceInfoResponse past the pause level at most (the check runs after each request).
      expect(peakBacklog).toBeGreaterThan(pauseAt);
      expect(peakBacklog).toBeLessThanOrEqual(pauseAt + 1024);
      // Input held: the rest of one read (64 KiB) at most, plus a partial frame.
      expect(peakInput).toBeLessThanOrEqual(64 * 1024 + 256);
      expect(session.isClosed).toBe(false);
      expect(session.inputPaused).toBe(true);
      // Once the flooder reads again, its requests are answered again.
      const answered = session.messagesReceived;
      flooder.resume();
      flooder.on('data', () => {});
      await until(() => session.messagesReceived > answered + 10_000, 'the flooder to be read again', FLOOD_WAIT_MS);
    },
    FLOOD_TEST_MS,
  );

  it('api-server - a read of thousands of frames is decoded in turns (others get theirs between) and every one is answered', async () => {
    const { node: sim } = await node({ advertise: false });
    const client = await rawClient(sim.server.address.port);
    const pings = Buffer.concat(Array.from({ length: 5000 }, () => Uint8Array.of(0, 0, 7)));
    const mark = client.received.length;
    client.socket.write(pings);
    await until(() => client.received.slice(mark).filter((m) => m.type === 8).length === 5000, 'every PingResponse');
  });

  it('api-server - unsolicited traffic a client never reads closes its session at the hard bound, with a backlog event', async () => {
    const limits = { dropAt: 8 * 1024, resumeAt: 16 * 1024, pauseAt: 32 * 1024, closeAt: 256 * 1024 };
    const { node: sim, events } = await node({ backlog: limits });
    const port = sim.server.address.port;
    const before = new Set(sim.server.sessions);
    const sleeper = await socketTo(port);
    sleeper.pause();
    sleeper.write(HELLO);
    const session = await newestSession(sim.server, before);
    await until(() => session.helloDone, 'Hello');
    let peak = 0;
    // Slot reports are never dropped: 30 KiB of them at a time until the session is closed.
    const report = BluetoothConnectionsFreeResponse.toBinary(
      BluetoothConnectionsFreeResponse.create({ free: 1, limit: 3, allocated: Array.from({ length: 3000 }, (_, i) => i + 1) }),
    );
    for (let i = 0; i < 10_000 && !session.isClosed; i++) {
      session.sendRaw(81, report);
      peak = Math.max(peak, session.backlogBytes);
      if (i % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(session.isClosed).toBe(true);
    expect(peak).toBeLessThanOrEqual(limits.closeAt + report.length + 8);
    const dropped = events.find((e) => e.type === 'sessionDropped');
    expect(dropped).toMatchObject({ type: 'sessionDropped', reason: 'backlog', clientInfo: 'hostile' });
    expect(dropped?.type === 'sessionDropped' && dropped.message).toMatch(/does not read/);
  });

  it('api-server - advertisements are dropped first and counted for a subscriber that stopped reading; slot reports still arrive', async () => {
    const { node: sim } = await node({ advertise: false });
    const port = sim.server.address.port;
    const slow = await rawClient(port);
    slow.socket.pause();
    const session = [...sim.server.sessions][0]!;
    const full = {
      advertisements: Array.from({ length: 16 }, (_, i) => ({ address: 0x900000 + i, rssi: -60, data: new Uint8Array(62).fill(i) })),
    };
    let sent = 0;
    while (session.droppedAdvertisements === 0) {
      if (sent > 40_000) throw new Error('no advertisement was ever dropped');
      for (let i = 0; i < 200; i++) sim.bluetooth.sendRawBatch(full);
      sent += 200;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    for (let i = 0; i < 200; i++) sim.bluetooth.sendRawBatch(full);
    expect(session.backlogBytes).toBeLessThanOrEqual(DEFAULT_BACKLOG_LIMITS.dropAt + 2_000);
    expect(session.droppedAdvertisements % 16).toBe(0);
    const mark = slow.received.length;
    sim.bluetooth.setBusySlots(1);
    slow.socket.resume();
    await slow.next(BluetoothConnectionsFreeResponse, (m) => m.free === 2, mark, 10_000);
  });

  it(
    'api-server - with replies held back by the delay fault, a flood is paused by what waits in the timers (bounded too)',
    async () => {
      const { node: sim } = await node({ faults: { replyDelayMs: 300 } });
      const port = sim.server.address.port;
      const before = new Set(sim.server.sessions);
      const flooder = await socketTo(port);
      flooder.on('data', () => {});
      flooder.write(HELLO);
      const session = await newestSession(sim.server, before);
      flooder.write(deviceInfoFlood(200_000));
      let peak = 0;
      const sample = setInterval(() => (peak = Math.max(peak, session.backlogBytes)), 2);
      closers.push(() => clearInterval(sample));
      await until(() => session.inputPaused, 'the flooder to be paused', FLOOD_WAIT_MS);
      await until(() => session.messagesReceived > 20_000, 'the delayed answers to drain and reading to resume', FLOOD_WAIT_MS);
      clearInterval(sample);
      expect(peak).toBeLessThanOrEqual(DEFAULT_BACKLOG_LIMITS.pauseAt + 1024);
      expect(session.isClosed).toBe(false);
    },
    FLOOD_TEST_MS,
  );

  it('api-server - Noise headers above 128 bytes are refused at the header; stalled allowed ones hold a small fixed amount each', async () => {
    const { node: sim, events } = await node({ psk: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', maxConnections: 400 });
    const port = sim.server.address.port;
    // 01 FF FF as the client hello, and after an empty client hello: both answered "Bad handshake packet len" and closed.
    for (const opening of [Uint8Array.of(1, 0xff, 0xff), Uint8Array.of(1, 0, 0, 1, 0xff, 0xff)]) {
      const socket = await socketTo(port);
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      const closed = once(socket, 'close');
      socket.write(opening);
      await closed;
      const reply = Buffer.concat(received).toString('latin1');
      expect(reply).toContain('Bad handshake packet len');
    }
    // 150 sockets each declare the largest allowed handshake frame, send 10 bytes of it and stop.
    const sockets = await Promise.all(Array.from({ length: 150 }, () => socketTo(port)));
    for (const socket of sockets) socket.write(Uint8Array.of(1, 0, 0x80, ...new Uint8Array(10)));
    await until(() => [...sim.server.sessions].filter((s) => s.inputBytes > 0).length === 150, 'every stalled header to arrive');
    const held = [...sim.server.sessions].map((s) => s.inputBytes);
    expect(Math.max(...held)).toBeLessThanOrEqual(128);
    // And on a plaintext node, a declared 32 KiB payload holds what arrived, not what it declares; 32769 is refused.
    const plain = await node({ maxConnections: 10 });
    const plainPort = plain.node.server.address.port;
    const stalled = await socketTo(plainPort);
    stalled.write(Uint8Array.of(0, 0xff, 0xff, 0x01, 0x4b, 1, 2, 3));
    await until(() => [...plain.node.server.sessions].some((s) => s.inputBytes > 0), 'the stalled frame');
    expect([...plain.node.server.sessions][0]!.inputBytes).toBeLessThanOrEqual(256);
    const tooBig = await socketTo(plainPort);
    const gone = once(tooBig, 'close');
    tooBig.write(Uint8Array.of(0, 0x81, 0x80, 0x02, 0x4b));
    await gone;
    expect(plain.events).toContainEqual(expect.objectContaining({ type: 'sessionDropped', reason: 'protocol' }));
    // Each refusal is reported, with the firmware's reason.
    const refusals = events.filter((e) => e.type === 'sessionDropped');
    expect(refusals).toHaveLength(2);
    for (const refusal of refusals) expect(refusal).toMatchObject({ reason: 'protocol', message: expect.stringMatching(/over 128 bytes/) });
  });

  it('api-server - the session cap: the firmware default of 5, one more is accepted and closed at once, a freed place is taken again', async () => {
    expect(DEFAULT_MAX_CONNECTIONS).toBe(5);
    const { node: sim, events } = await node();
    const port = sim.server.address.port;
    const clients = await Promise.all(Array.from({ length: 5 }, () => rawClient(port)));
    // Pre-Hello sockets count as sessions too, as on the firmware: a sixth of any kind is refused.
    const sixth = await socketTo(port);
    const received: Buffer[] = [];
    sixth.on('data', (chunk: Buffer) => received.push(chunk));
    sixth.write(HELLO);
    await once(sixth, 'close');
    expect(received).toEqual([]);
    expect(events).toContainEqual(expect.objectContaining({ type: 'sessionRefused', reason: 'maxConnections', limit: 5 }));
    expect(sim.server.sessions.size).toBe(5);
    clients[0]!.close();
    await until(() => sim.server.sessions.size === 4, 'the place to be freed');
    const again = await rawClient(port);
    expect(again.all(BluetoothConnectionsFreeResponse).length).toBeGreaterThan(0);
    const capped = await node({ maxConnections: 1 });
    await rawClient(capped.node.server.address.port);
    const refused = await socketTo(capped.node.server.address.port);
    await once(refused, 'close');
    expect(capped.events).toEqual([expect.objectContaining({ type: 'sessionRefused', limit: 1 })]);
  });

  it('api-server - serve pings a client silent after Hello and drops it when it stays silent; a pre-Hello socket is never pinged', async () => {
    const { node: sim, events } = await node({ keepaliveInterval: 60, handshakeTimeout: 2_000 });
    const port = sim.server.address.port;
    const alive = await rawClient(port);
    const dead = await rawClient(port);
    dead.answerPings = false;
    const preHello = await socketTo(port);
    const preHelloBytes: Buffer[] = [];
    preHello.on('data', (chunk: Buffer) => preHelloBytes.push(chunk));
    const closed = once(dead.socket, 'close');
    await dead.next(PingRequest, () => true, 0, 1000);
    await closed;
    expect(events).toContainEqual(expect.objectContaining({ type: 'sessionDropped', reason: 'keepalive', clientInfo: 'raw-test-client' }));
    // The answering client stays however long it is idle.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(alive.all(PingRequest).length).toBeGreaterThan(1);
    expect(alive.socket.destroyed).toBe(false);
    expect(preHelloBytes).toEqual([]);
    expect(preHello.destroyed).toBe(false);
  });

  it('api-server - limits timers cannot hold are refused at construction: keep-alive Infinity, NaN or past 2^31 ms; sessions 0', () => {
    for (const keepaliveInterval of [Number.POSITIVE_INFINITY, Number.NaN, -1, 2 ** 31]) {
      expect(() => new ApiServer({ host: '127.0.0.1', port: 0, keepaliveInterval }), String(keepaliveInterval)).toThrow(
        InvalidArgumentError,
      );
    }
    expect(() => new ApiServer({ host: '127.0.0.1', port: 0, maxConnections: 0 })).toThrow(InvalidArgumentError);
  });

  it('api-server - beyond loopback without a key the listener refuses before binding and says why; 127.0.0.1 listens', async () => {
    for (const host of ['0.0.0.0', '::', '192.0.2.10']) {
      const server = new ApiServer({ host, port: 0, label: 'simulated proxy' });
      const refused = await server.listen().catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(InsecureListenerError);
      expect((refused as Error).message).toMatch(/simulated proxy/);
      expect((refused as Error).message).toMatch(/--allow-plaintext/);
      // Nothing was bound: the address is not known, and close() has no listener to stop.
      expect(() => server.address).toThrow();
      await server.close();
    }
    // The all-zero key is public (spec §4.7, §4.12): it hides the traffic from a sniffer but keeps nobody out.
    const zero = new ApiServer({ host: '0.0.0.0', port: 0, psk: ZERO_PSK_BASE64 });
    const refused = await zero.listen().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(InsecureListenerError);
    expect((refused as Error).message).toMatch(/all-zero key/);
    await zero.close();
    const loopback = new ApiServer({ host: '127.0.0.1', port: 0 });
    closers.push(() => loopback.close());
    expect((await loopback.listen()).port).toBeGreaterThan(0);
  });

  it.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)(
    'api-server - ::1 is loopback too: it listens without a key (waits for IPv6 loopback ::1)',
    async () => {
      const server = new ApiServer({ host: '::1', port: 0 });
      closers.push(() => server.close());
      expect((await server.listen()).port).toBeGreaterThan(0);
    },
  );
});
