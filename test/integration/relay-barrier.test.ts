import { describe, expect, it } from 'vitest';
import { formatMac } from '../../src/bluetooth/address.js';
import { PONG_TIMEOUT_FACTOR } from '../../src/connection/connection.js';
import { ReconnectingConnection } from '../../src/connection/reconnect.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { SimulatedNode } from '../../src/fixture-server/fleet.js';
import { BluetoothDeviceConnectionResponse, BluetoothDeviceRequest } from '../../src/gen/api_pb.js';
import { UPSTREAM_LOST_REASON } from '../../src/relay/relay-proxy.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import type { ApiSession } from '../../src/server/api-server.js';
import { useClosers } from '../helpers/closers.js';
import { profileWithDevices } from '../helpers/fleet.js';
import type { RawClient } from '../helpers/raw-client.js';
import {
  booked,
  CLONE,
  connectRequest,
  DEMO,
  HOME_ASSISTANT,
  rawClient,
  STEP_MS,
  settle,
  startRelay,
  startUpstream,
  until,
} from '../helpers/relay.js';

const closers = useClosers();

const PING_ID = 7;
/** The upstream keep-alive of these relays: the barrier pings again after it. */
const KEEPALIVE_MS = 200;
/** The barrier deadline of the relays that test it (`connectPingTimeout`). */
const DEADLINE_MS = KEEPALIVE_MS * PONG_TIMEOUT_FACTOR;
/**
 * How much later than a timer of the test's own, due at the same moment, the relay's deadline may end the session:
 * both run in this process and fire in the same pass of the event loop, so only the work between them counts (a
 * deadline checked on the re-ping ticks was half an interval, 100 ms, late).
 */
const ON_TIME_MS = 50;

/**
 * Advertisements from `node` every 40 ms until the test ends: a proxy in a busy neighbourhood, whose traffic never
 * leaves the relay's keep-alive a silent interval to ping in.
 */
function busyNeighbourhood(node: SimulatedNode): void {
  const data = Buffer.from('0201061aff4c000215a495bb10c5b14b44b5121370f02d74de004403f8c5', 'hex');
  const batch = { advertisements: [{ address: 0x0a0000000001, rssi: -60, addressType: 0, data }] };
  const timer = setInterval(() => node.bluetooth.sendRawBatch(batch), 40);
  closers.push(() => clearInterval(timer));
}

/** The connection states `client` heard for `address`. */
const statesOf = (client: RawClient, address: number): BluetoothDeviceConnectionResponse[] =>
  client.all(BluetoothDeviceConnectionResponse).filter((m) => m.address === address);

describe('relay barrier: a reservation always ends', () => {
  it('relay barrier - an upstream that keeps advertising but stops answering pings: the keep-alive keeps it, the reservation ends at the barrier deadline', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3 });
    // When the relay sends the ping behind the second connect, a timer of the test's own starts with the deadline:
    // the relay's runs in this process too, so the two fire together unless the relay's is late.
    let connectSent = false;
    let pingAt: number | undefined;
    let referenceAt: number | undefined;
    const { relay, port, events } = await startRelay(closers, node, {
      keepaliveInterval: KEEPALIVE_MS,
      connectPingTimeout: DEADLINE_MS,
      tapFor: () => (direction, id, payload) => {
        if (direction !== 'c2d') return;
        if (id === 68 && BluetoothDeviceRequest.fromBinary(payload).address === CLONE) connectSent = true;
        else if (id === PING_ID && connectSent && pingAt === undefined) {
          pingAt = performance.now();
          const reference = setTimeout(() => {
            referenceAt = performance.now();
          }, DEADLINE_MS);
          closers.push(() => clearTimeout(reference));
        }
      },
    });
    busyNeighbourhood(node);
    const client = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);

    // From here the proxy answers no ping (a dropped answer, a proxy busy elsewhere) but advertises as before.
    let mute = true;
    node.server.plugins.unshift({ intercept: (_session, type) => mute && type === PING_ID });
    // The keep-alive alone never ends such a session: advertisements count as traffic.
    await settle(DEADLINE_MS * 2);
    expect(relay.snapshot().proxies[0]!.upstream.state).toBe('connected');

    let closedAt: number | undefined;
    void relay.proxies[0]!.bluetooth!.api.closed().then(() => {
      closedAt = performance.now();
    });
    const since = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(CLONE));
    // The connect reaches the proxy, which answers it (the link comes up), but never the ping behind it: the
    // barrier pings again, then takes the upstream for dead, and every link with it.
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && !m.connected, since, DEADLINE_MS + STEP_MS);
    // The deadline counts from the ping (timers may fire up to a millisecond early), and the session ends when a
    // timer of the same length does: not one re-ping interval later, however loaded the machine.
    expect(closedAt! - pingAt!).toBeGreaterThanOrEqual(DEADLINE_MS - 2);
    await until(() => referenceAt !== undefined, 'the reference timer');
    expect(closedAt! - referenceAt!).toBeLessThan(ON_TIME_MS);
    const ended = client.all(BluetoothDeviceConnectionResponse).filter((m) => !m.connected && m.error === UPSTREAM_LOST_REASON);
    expect(ended.map((m) => m.address).sort()).toEqual([CLONE, DEMO].sort());
    expect(booked(relay)).toEqual([]);
    expect(events.some((e) => e.type === 'upstreamDown' && /Ping response/.test(e.error ?? ''))).toBe(true);

    // Once the proxy answers again, the relay is back and the client connects as before.
    mute = false;
    await until(() => relay.snapshot().proxies[0]!.upstream.state === 'connected', 'the upstream to come back');
    const again = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(CLONE));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected, again);
    expect(booked(relay)).toEqual([formatMac(CLONE)]);
  });

  it('relay barrier - a pong the proxy drops is made up by the next ping: the reservation ends and the session stays', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3 });
    const { relay, port, events } = await startRelay(closers, node, { keepaliveInterval: KEEPALIVE_MS });
    busyNeighbourhood(node);
    const client = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    // The proxy drops its answer to the first ping after the connect, as firmware may when its send buffer is full;
    // its advertisements leave the keep-alive no silence to ping in, so only the barrier can ask again.
    let connectSeen = false;
    let dropped = 0;
    node.server.plugins.unshift({
      intercept: (_session, type) => {
        if (type === 68) connectSeen = true;
        if (type !== PING_ID || !connectSeen || dropped > 0) return false;
        dropped++;
        return true;
      },
    });
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
    // The connect is handled once the barrier's second ping is answered: the client's slot is then what the proxy
    // reports, and it may release and take it again at once.
    client.send(BluetoothDeviceRequest, { address: DEMO, requestType: 1 });
    await until(() => booked(relay).length === 0, 'the link to be released', DEADLINE_MS + STEP_MS);
    expect(dropped).toBe(1);
    expect(relay.snapshot().proxies[0]!.upstream.state).toBe('connected');
    expect(events.some((e) => e.type === 'upstreamDown')).toBe(false);
  });

  it('relay barrier - a short keep-alive does not shorten the deadline: a ping that reaches a slow proxy late ends no link', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3 });
    // A 200 ms keep-alive used to set the deadline to 900 ms.
    const { relay, port, events } = await startRelay(closers, node, { keepaliveInterval: KEEPALIVE_MS });
    busyNeighbourhood(node);
    const client = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    // The proxy reads the connect, then nothing of the relay for a while: the ping behind the connect waits, as it
    // does behind a client's writes queued for an ESP32 that reads them slowly. It advertises all the while.
    const SLOW_MS = DEADLINE_MS * 2 + 500;
    let held: ApiSession | undefined;
    let pongAt: number | undefined;
    node.server.plugins.unshift({
      intercept: (_session, type) => {
        if (type === PING_ID && held !== undefined) pongAt ??= performance.now();
        return false;
      },
      holdInput: (session) => {
        if (held !== undefined || !session.received.includes(68)) return false;
        held = session;
        const timer = setTimeout(() => session.releaseInput(), SLOW_MS);
        closers.push(() => clearTimeout(timer));
        return true;
      },
    });
    const sent = performance.now();
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
    await until(() => pongAt !== undefined, 'the proxy to read the ping', SLOW_MS + STEP_MS);
    expect(pongAt! - sent).toBeGreaterThanOrEqual(SLOW_MS - 50);
    await settle(100);
    expect(relay.snapshot().proxies[0]!.upstream.state).toBe('connected');
    expect(events.some((e) => e.type === 'upstreamDown')).toBe(false);
    expect(statesOf(client, DEMO).map((m) => m.connected)).toEqual([true]);
    expect(booked(relay)).toEqual([formatMac(DEMO)]);
  });

  it('relay barrier - connectPingTimeout must be a delay a timer can take: 0, negative, NaN, Infinity and beyond 2^31-1 ms are refused', () => {
    for (const connectPingTimeout of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31]) {
      expect(() => new RelayServer({ proxies: [{ host: '127.0.0.1' }], connectPingTimeout })).toThrow(InvalidArgumentError);
    }
    expect(() => new RelayServer({ proxies: [{ host: '127.0.0.1' }], connectPingTimeout: 2 ** 31 - 1 })).not.toThrow();
  });

  it('relay - an upstream keepaliveInterval timers cannot hold is refused at construction, not retried at every connect', () => {
    for (const keepaliveInterval of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 500_000_000]) {
      expect(() => new RelayServer({ proxies: [{ host: '127.0.0.1' }], keepaliveInterval, permanentErrors: 'retry' })).toThrow(
        InvalidArgumentError,
      );
      expect(() => new ReconnectingConnection({ host: '127.0.0.1', keepaliveInterval })).toThrow(InvalidArgumentError);
    }
  });

  // A regression guard: this held before the barrier existed (the session's end resets the ledger), and must stay so.
  it('relay barrier - regression guard: the upstream session ends with a connect in flight: the client hears connected=false and nothing stays booked', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3 });
    const { relay, port } = await startRelay(closers, node);
    const client = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    // The proxy reads the connect and nothing after it (not the ping behind it), then its session with the relay ends.
    let held: ApiSession | undefined;
    node.server.plugins.unshift({
      holdInput: (session) => {
        if (held !== undefined || !session.received.includes(68)) return false;
        held = session;
        return true;
      },
    });
    const since = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await until(() => held !== undefined, 'the proxy to read the connect');
    expect(booked(relay)).toEqual([formatMac(DEMO)]);
    held!.close();
    const lost = await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && !m.connected, since);
    expect(lost.error).toBe(UPSTREAM_LOST_REASON);
    expect(booked(relay)).toEqual([]);
    await until(() => relay.snapshot().proxies[0]!.upstream.state === 'connected', 'the upstream to come back');
    const again = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, again);
    expect(booked(relay)).toEqual([formatMac(DEMO)]);
  });
});
