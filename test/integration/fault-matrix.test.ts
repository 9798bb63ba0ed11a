import { connect } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LinkClosed } from '../../src/bluetooth/ble-connection.js';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { type ErrorCode, EspApiError } from '../../src/errors.js';
import { leakedSlots, type SimulatedNode, type SimulatedNodeOptions, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { encodeServerHello } from '../../src/frame/noise-frame.js';
import { ProxyPool, type ProxyPoolOptions } from '../../src/pool/proxy-pool.js';
import type { ApiSession, SessionPlugin } from '../../src/server/api-server.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';
import { DEMO_MAC, profileWithDevices, waitHeard } from '../helpers/fleet.js';

// One fault per test, each against a real simulated proxy over loopback TCP. Every case checks: a typed error with
// its specific code, no unhandled rejection, no leaked socket or timer (the leak guard in test/helpers/setup.ts),
// no slot held on any simulated proxy without a link of the pool (while the sessions are still open), and a pool
// that keeps serving through the healthy proxy while the fault happens and afterwards.

/** A second device, heard only through the healthy proxy's profile too: what the pool must keep serving. */
const OTHER_MAC = 'C0:FF:EE:00:01:00';
const DEVICE_NAME_UUID = '2a00';
/** The demo peripheral's counter characteristic: notifies every 500 ms while subscribed. */
const COUNTER_HANDLE = 18;
const MSG_GATT_READ_REQUEST = 73;
const MSG_GATT_NOTIFY_DATA = 79;
/** Short deadlines keep each case well under a second or two. */
const FAST: ProxyPoolOptions = { backoff: { initialDelay: 50, maxDelay: 200, expectedDisconnectDelay: 50 }, connectTimeout: 1000 };
/** Plaintext frame `00 varint(2^31) 07`: a header that declares a 2 GiB PingRequest (a 5-byte varint: malformed). */
const HUGE_FRAME_HEADER = Uint8Array.from([0x00, 0x80, 0x80, 0x80, 0x80, 0x08, 0x07]);
/** Bytes of the plaintext HelloResponse that get out before the drop: its frame header and part of the body. */
const PARTIAL_HELLO_BYTES = 5;
/** How long the slots may take to settle after a test (a DISCONNECT's two replies, a reconnect's reap). */
const SLOT_SETTLE_MS = 2000;
/** Not a frame in either framing (0xff is no indicator byte). */
const GARBAGE = Uint8Array.from([0xff, 0xfe, 0x00, 0x13, 0x37, 0xde, 0xad]);

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});

let nodes: SimulatedNode[] = [];
let pool: ProxyPool | undefined;
const clients: ApiConnection[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  // Slots are judged while the pool's sessions are still open: once a subscriber leaves, a simulated proxy drops
  // every slot itself, so a check after close() could never fail.
  const open = pool;
  if (open !== undefined) await expect.poll(() => leakedSlots(nodes, open.proxies()), { timeout: SLOT_SETTLE_MS }).toEqual([]);
  await pool?.close();
  pool = undefined;
  for (const node of nodes) await node.server.close();
  nodes = [];
  // Settle rejections of this test before judging it.
  await new Promise((resolve) => setImmediate(resolve));
  expect(unhandled, 'unhandled rejections').toEqual([]);
});

interface Setup {
  healthy: SimulatedNode;
  faulty: SimulatedNode;
  pool: ProxyPool;
}

/** A healthy proxy and the one that will misbehave, both in one pool; the pool knows the faulty one by `poolKey` ('none': no key). */
async function setup(
  faulty: SimulatedNodeOptions = {},
  poolKey: string = faulty.psk ?? 'none',
  poolOptions: ProxyPoolOptions = {},
): Promise<Setup> {
  const faultyPsk = poolKey === 'none' ? undefined : poolKey;
  const profile = await profileWithDevices(1);
  const healthy = await startSimulatedProxy({ profile, name: 'healthy' });
  const bad = await startSimulatedProxy({ profile, name: 'faulty', ...faulty });
  nodes = [healthy, bad];
  pool = new ProxyPool(
    [
      { host: '127.0.0.1', port: healthy.server.address.port, name: 'healthy' },
      { host: '127.0.0.1', port: bad.server.address.port, name: 'faulty', ...(faultyPsk === undefined ? {} : { psk: faultyPsk }) },
    ],
    { ...FAST, ...poolOptions },
  );
  await pool.ready({ timeout: 500 });
  await waitHeard(pool, OTHER_MAC, 1);
  return { healthy, faulty: bad, pool };
}

/** The pool connects to the other device, reads it and lets it go: proof that it still serves. */
async function serves(p: ProxyPool, mac = OTHER_MAC, require?: string): Promise<string> {
  const device = await p.establishConnection(mac, { timeout: 3000, maxAttempts: 3, ...(require ? { require: [require] } : {}) });
  try {
    expect(new TextDecoder().decode(await device.read(DEVICE_NAME_UUID, { timeout: 1000 }))).toBe('esphome-ble-demo');
    return device.proxy;
  } finally {
    await device.disconnect();
  }
}

/** Once the faulty proxy is back in the pool (reconnected, hearing the demo device), the pool connects through it. */
async function servesAgain(p: ProxyPool): Promise<string> {
  await expect.poll(() => p.proxies().find((x) => x.id === 'faulty')?.online, { timeout: 3000 }).toBe(true);
  await waitHeard(p, DEMO_MAC, 2);
  return serves(p, DEMO_MAC, 'faulty');
}

/** The error `operation` rejects with; fails unless it is one of ours with `code`. */
async function typedFailure(operation: Promise<unknown>, code: ErrorCode): Promise<EspApiError> {
  const error = await operation.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a rejection with ${code}`).toBeInstanceOf(EspApiError);
  expect((error as EspApiError).code).toBe(code);
  return error as EspApiError;
}

/** A direct client of one simulated proxy (destroyed after the test). */
async function client(node: SimulatedNode, psk?: string): Promise<ApiConnection> {
  const api = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, timeout: 1000, ...(psk ? { psk } : {}) });
  clients.push(api);
  return api;
}

function connecting(node: SimulatedNode, options: { psk?: string; timeout?: number } = {}): Promise<ApiConnection> {
  const attempt = ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, timeout: 1000, ...options });
  attempt.then(
    (api) => clients.push(api),
    () => {},
  );
  return attempt;
}

/** Writes raw bytes to the node as a broken client would, and resolves when the node hangs up. */
async function sendAndWaitForClose(node: SimulatedNode, bytes: Uint8Array): Promise<void> {
  const socket = connect({ host: '127.0.0.1', port: node.server.address.port });
  socket.on('error', () => {});
  const closed = new Promise((resolve) => socket.once('close', resolve));
  socket.write(bytes);
  await closed;
}

/** Makes the node write `bytes` right after it answered a Hello (the frames before them were valid). */
function afterHello(node: SimulatedNode, bytes: Uint8Array): void {
  const plugin: SessionPlugin = {
    intercept(session: ApiSession, type: number): boolean {
      if (type === 1) queueMicrotask(() => session.writeRaw(bytes));
      return false;
    },
  };
  node.server.plugins.unshift(plugin);
}

describe('fault matrix', () => {
  it('fault - the proxy drops the connection mid-handshake (after its Noise server hello)', async () => {
    const { faulty, pool } = await setup({ psk: TEST_PSK });
    const hello = encodeServerHello({ name: faulty.server.name, mac: faulty.server.mac.replaceAll(':', '').toLowerCase() });
    faulty.server.faults.dropAfterBytes = 3 + hello.length;
    const [error] = await Promise.all([typedFailure(connecting(faulty, { psk: TEST_PSK }), 'ESPAPI_ERR_HANDSHAKE'), serves(pool)]);
    expect(error.message).toMatch(/during the Noise handshake/);
    faulty.server.faults = {};
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - the proxy drops the connection mid-Hello (plaintext, inside its HelloResponse)', async () => {
    const { faulty, pool } = await setup();
    faulty.server.faults.dropAfterBytes = PARTIAL_HELLO_BYTES;
    const [error] = await Promise.all([typedFailure(connecting(faulty), 'ESPAPI_ERR_CONNECTION_CLOSED'), serves(pool)]);
    expect(error.message).toMatch(/Hello/);
    faulty.server.faults = {};
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - the proxy drops the connection mid-GATT (instead of answering a read)', async () => {
    const { faulty, pool } = await setup();
    const device = await pool.establishConnection(DEMO_MAC, { require: ['faulty'], timeout: 3000 });
    faulty.server.faults.dropOnReceive = { type: MSG_GATT_READ_REQUEST };
    await Promise.all([
      // The API session ended under the read: it fails with that, not with a BLE reason.
      typedFailure(device.read(DEVICE_NAME_UUID, { timeout: 1000 }), 'ESPAPI_ERR_CONNECTION_CLOSED'),
      serves(pool),
    ]);
    await device.disconnect();
    faulty.server.faults = {};
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - the proxy drops the connection mid-notify (right after a notification)', async () => {
    const { faulty, pool } = await setup();
    const lost: LinkClosed[] = [];
    const device = await pool.establishConnection(DEMO_MAC, {
      require: ['faulty'],
      timeout: 3000,
      disconnectedCallback: (_connection, info) => lost.push(info),
    });
    const stream = await device.notifications(COUNTER_HANDLE, { timeout: 1000 });
    faulty.server.faults.dropOnSend = { type: MSG_GATT_NOTIFY_DATA };
    const received: Uint8Array[] = [];
    const drained = (async () => {
      for await (const value of stream) received.push(value);
    })();
    // The stream ends with the link (by design, as after an unsubscribe); the link-loss callback and the next
    // operation say why.
    await Promise.all([drained, serves(pool)]);
    expect(received).toHaveLength(1);
    expect(lost).toEqual([{ reason: 0, reasonName: expect.any(String), requested: false }]);
    await typedFailure(device.read(DEVICE_NAME_UUID, { timeout: 500 }), 'ESPAPI_ERR_BLE_DISCONNECTED');
    await device.disconnect();
    faulty.server.faults = {};
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - the proxy reboots (announces it, goes away, comes back on its port)', async () => {
    const { faulty, pool } = await setup();
    const api = await client(faulty);
    const port = faulty.server.address.port;
    for (const session of faulty.server.sessions) session.disconnectFromDevice();
    const closed = await api.closed();
    expect(closed).toBeInstanceOf(EspApiError);
    expect((closed as EspApiError).code).toBe('ESPAPI_ERR_CONNECTION_CLOSED');
    expect((closed as { byDevice?: boolean }).byDevice).toBe(true);
    await faulty.server.close();
    expect(await serves(pool)).toBe('healthy');
    const rebooted = await startSimulatedProxy({ profile: await profileWithDevices(1), name: 'faulty', port });
    nodes[1] = rebooted;
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - a slow proxy (every reply held past the deadline) times out', async () => {
    const { faulty, pool } = await setup();
    faulty.server.faults.replyDelayMs = 400;
    // Meanwhile the pool serves through the healthy proxy; the slow one's lagging session must not hold it up.
    await Promise.all([typedFailure(connecting(faulty, { timeout: 150 }), 'ESPAPI_ERR_TIMEOUT'), serves(pool, OTHER_MAC, 'healthy')]);
    // An established session whose replies start lagging: the request deadline fires.
    faulty.server.faults = {};
    const api = await client(faulty);
    faulty.server.faults.replyDelayMs = 400;
    await Promise.all([typedFailure(api.ping({ timeout: 100 }), 'ESPAPI_ERR_TIMEOUT'), serves(pool, OTHER_MAC, 'healthy')]);
    faulty.server.faults = {};
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - a proxy out of slots is refused with OutOfSlotsError', async () => {
    const { faulty, pool } = await setup({ slotsBusy: 3 });
    const [, proxy] = await Promise.all([
      typedFailure(
        pool.establishConnection(DEMO_MAC, { require: ['faulty'], maxAttempts: 1, slotWait: 100, timeout: 2000 }),
        'ESPAPI_ERR_OUT_OF_SLOTS',
      ),
      serves(pool),
    ]);
    expect(proxy).toBe('healthy');
    faulty.bluetooth.setBusySlots(0);
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - a wrong encryption key is InvalidEncryptionKeyError', async () => {
    const { faulty, pool } = await setup({ psk: TEST_PSK }, OTHER_PSK);
    const [, proxy] = await Promise.all([typedFailure(connecting(faulty, { psk: OTHER_PSK }), 'ESPAPI_ERR_INVALID_KEY'), serves(pool)]);
    expect(proxy).toBe('healthy');
    expect(pool.proxies().find((p) => p.id === 'faulty')?.online).toBe(false);
    expect(await serves(pool)).toBe('healthy');
  });

  it('fault - a plaintext client of a Noise proxy is EncryptionRequiredError', async () => {
    const { faulty, pool } = await setup({ psk: TEST_PSK }, 'none');
    const [, proxy] = await Promise.all([typedFailure(connecting(faulty), 'ESPAPI_ERR_ENCRYPTION_REQUIRED'), serves(pool)]);
    expect(proxy).toBe('healthy');
    expect(await serves(pool)).toBe('healthy');
  });

  it('fault - a Noise client of a plaintext proxy is DevicePlaintextError', async () => {
    const { faulty, pool } = await setup({}, TEST_PSK);
    const [, proxy] = await Promise.all([typedFailure(connecting(faulty, { psk: TEST_PSK }), 'ESPAPI_ERR_DEVICE_PLAINTEXT'), serves(pool)]);
    expect(proxy).toBe('healthy');
    expect(await serves(pool)).toBe('healthy');
  });

  it('fault - a client that is not the Bluetooth subscriber (another session subscribed first) is NotSubscriberError', async () => {
    const { faulty, pool } = await setup();
    // The pool's session holds the subscription (first wins); a second client asks for it too.
    expect(faulty.bluetooth.subscriber).toBeDefined();
    const api = await client(faulty);
    await Promise.all([
      typedFailure(BluetoothProxy.attach(api, { timeout: 1000, subscriberCheckTimeout: 200 }), 'ESPAPI_ERR_NOT_SUBSCRIBER'),
      serves(pool),
    ]);
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - a client that is no longer the Bluetooth subscriber (newest wins took it) reports SubscriptionLost and resubscribes', async () => {
    const { faulty, pool } = await setup({ firmware: '2026.7' }, 'none', {
      attach: { watchdog: { silenceTimeout: 60, probeTimeout: 300 }, resubscribe: { delays: [300] } },
    });
    const events = pool.status();
    const owner = faulty.bluetooth.subscriber;
    expect(owner).toBeDefined();
    // Another client (Home Assistant, say) subscribes: on 2026.7+ firmware it takes the subscription silently.
    const api = await client(faulty);
    api.sendRaw(66, Uint8Array.of(0x08, 0x01));
    await expect.poll(() => faulty.bluetooth.subscriber !== owner).toBe(true);
    let lost: unknown;
    for await (const event of events) {
      if (event.type === 'subscription' && event.proxy === 'faulty' && event.status.type === 'subscriptionLost') {
        lost = event.status;
        break;
      }
    }
    expect(lost).toMatchObject({ code: 'ESPAPI_ERR_SUBSCRIPTION_LOST', detectedBy: 'probe' });
    expect(pool.diagnostics().find((d) => d.id === 'faulty')?.subscription.state).toBe('lost');
    expect(await serves(pool)).toBe('healthy');
    // The backoff runs out, the pool subscribes again (newest wins) and connects through the proxy once more.
    await expect.poll(() => pool.diagnostics().find((d) => d.id === 'faulty')?.subscription.state, { timeout: 3000 }).toBe('subscribed');
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - garbage after a valid hello is FrameError', async () => {
    const { faulty, pool } = await setup();
    afterHello(faulty, GARBAGE);
    const [error] = await Promise.all([typedFailure(connecting(faulty), 'ESPAPI_ERR_FRAME'), serves(pool)]);
    expect(error.message).toMatch(/indicator byte 0xff/);
    faulty.server.plugins.shift();
    expect(await servesAgain(pool)).toBe('faulty');
  });

  it('fault - a declared frame length of 2^31 is a FrameError at once, both ways', async () => {
    const errors: unknown[] = [];
    const { faulty, pool } = await setup({ onSessionError: (_session, error) => errors.push(error) });
    afterHello(faulty, HUGE_FRAME_HEADER);
    // The length varint alone is longer than any header varint may be (aioesphomeapi's DoS guard, 4 bytes): no 2 GiB wait.
    const [error] = await Promise.all([typedFailure(connecting(faulty), 'ESPAPI_ERR_FRAME'), serves(pool)]);
    expect(error.message).toMatch(/Varint longer than 4 bytes/);
    faulty.server.plugins.shift();
    // The largest length a header may declare (2^28 - 1) is refused at once too, as too large.
    afterHello(faulty, Uint8Array.from([0x00, 0xff, 0xff, 0xff, 0x7f, 0x07]));
    await typedFailure(connecting(faulty), 'ESPAPI_ERR_FRAME_TOO_LARGE');
    faulty.server.plugins.shift();
    // The other way round: the device drops a client that declares such a frame, and serves the next one.
    await sendAndWaitForClose(faulty, HUGE_FRAME_HEADER);
    expect(errors.map((e) => (e as EspApiError).code)).toEqual(['ESPAPI_ERR_FRAME']);
    expect(await servesAgain(pool)).toBe('faulty');
  });
});
