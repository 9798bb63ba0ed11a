import { describe, expect, it } from 'vitest';
import { parseMac } from '../../src/bluetooth/address.js';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { classifyConnectError } from '../../src/failure-table.js';
import type { SimulatedFleet, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { useClosers } from '../helpers/closers.js';
import {
  DEMO_MAC,
  FAST_POOL,
  poolOf,
  profileWithDevices,
  startPooledFleet,
  startTestFleet,
  waitHeard,
  watchSlots,
} from '../helpers/fleet.js';
import { AT_ONCE_MS, LONG_WAIT_MS } from '../helpers/wait.js';

// One test per wait of a connect: each aborts while the call sits in that wait and checks that the call rejects with
// the abort reason within a few ms, and that no lease, slot, listener or timer is left (the leak guard checks the
// last two after each test; leakedSlots the first two while the sessions are still open).

const DEMO = parseMac(DEMO_MAC);
const NOBODY = '11:22:33:44:55:66';
/**
 * How late a proxy's replies come while a test aborts the wait for one: far longer than PROMPT_MS, so only an abort
 * that cut the wait short passes.
 */
const SLOW_REPLY_MS = 5000;
/** An abort is acknowledged "at once" (see AT_ONCE_MS); every wait it cuts short here is SLOW_REPLY_MS or longer. */
const PROMPT_MS = AT_ONCE_MS;

const closers = useClosers();

/** One proxy per `perNode` entry hearing the demo device, a ready pool of them, and the slot check after the test. */
const setup = (perNode: SimulatedNodeOptions[] = [{}]): Promise<{ fleet: SimulatedFleet; pool: ProxyPool }> =>
  startPooledFleet(closers, { perNode, checkSlots: true });

/** Aborts `controller` once `when` holds (polled), and measures how long the call takes to reject after that. */
async function abortWhen(
  call: (signal: AbortSignal) => Promise<unknown>,
  when: () => boolean,
): Promise<{ error: unknown; afterAbortMs: number }> {
  const controller = new AbortController();
  const reason = new Error('caller gave up');
  const pending = call(controller.signal).then(
    () => undefined,
    (e: unknown) => e,
  );
  await expect.poll(when, { interval: 5, timeout: 5000 }).toBe(true);
  const abortedAt = performance.now();
  controller.abort(reason);
  const error = await pending;
  expect(error).toBe(reason);
  return { error, afterAbortMs: performance.now() - abortedAt };
}

describe('pool - cancellation at every wait', () => {
  it('pool-cancel - while waiting to hear a device nobody hears (the issue: 6.5 s and DeviceNotFoundError before)', async () => {
    const { pool } = await setup();
    const started = performance.now();
    const controller = new AbortController();
    const reason = new Error('caller gave up');
    setTimeout(() => controller.abort(reason), 500);
    const error = await pool.establishConnection(NOBODY, { signal: controller.signal }).catch((e: unknown) => e);
    expect(error).toBe(reason);
    expect(performance.now() - started).toBeLessThan(500 + PROMPT_MS);
    expect(pool.proxies()[0]?.inFlight).toBe(0);
  });

  it('pool-cancel - while waiting for a proxy that cannot connect now (offline, reconnecting) to come up', async () => {
    const open = new ProxyPool([{ host: '127.0.0.1', port: 1, name: 'attic' }], FAST_POOL);
    closers.push(() => open.close());
    const { afterAbortMs } = await abortWhen(
      (signal) => open.establishConnection(DEMO_MAC, { signal, notFoundWait: LONG_WAIT_MS }),
      // The session has failed at least once: the connect is in its wait for the proxy, not in a handshake.
      () => open.proxies()[0]?.lastError !== undefined,
    );
    expect(afterAbortMs).toBeLessThan(PROMPT_MS);
  });

  it('pool-cancel - an already aborted signal rejects at once, before anything is sent', async () => {
    const { fleet, pool } = await setup();
    const controller = new AbortController();
    controller.abort(new Error('never mind'));
    await expect(pool.establishConnection(DEMO_MAC, { signal: controller.signal })).rejects.toThrow('never mind');
    await expect(pool.ready({ signal: controller.signal })).rejects.toThrow('never mind');
    expect(fleet.nodes[0]!.bluetooth.connectRequests).toBe(0);
  });

  it('pool-cancel - in the fair slot queue while every proxy that hears the device is full', async () => {
    const { fleet, pool } = await setup([{ slotsBusy: 3 }]);
    const { afterAbortMs } = await abortWhen(
      (signal) => pool.establishConnection(DEMO_MAC, { signal, slotWait: 10_000 }),
      // In the queue: no lease booked, one caller waiting.
      () => pool.slotQueueLength === 1 && pool.diagnostics()[0]?.slots?.leases === 0,
    );
    expect(afterAbortMs).toBeLessThan(PROMPT_MS);
    expect(pool.slotQueueLength).toBe(0);
    // The queue forgot the waiter: a freed slot goes to the next caller at once.
    fleet.nodes[0]!.bluetooth.setBusySlots(0);
    const connection = await pool.establishConnection(DEMO_MAC, { slotWait: 0, maxAttempts: 1 });
    expect(connection.timeline).toHaveLength(1);
    await connection.disconnect();
  });

  it('pool-cancel - in the backoff sleep after a failed attempt', async () => {
    const { fleet, pool } = await setup();
    // ESP_GATT_ERROR: a 1 s backoff before the same (only) proxy is tried again.
    fleet.nodes[0]!.bluetooth.setBehaviour(DEMO, { connectError: 0x85, connectDelayMs: 5 });
    const { afterAbortMs } = await abortWhen(
      (signal) => pool.establishConnection(DEMO_MAC, { signal }),
      () => fleet.nodes[0]!.bluetooth.connectRequests === 1 && fleet.nodes[0]!.bluetooth.linkAddresses.length === 0,
    );
    // Bounded by the backoff itself (AT_ONCE_MS is longer than this 1 s sleep): a sleep deaf to the signal would
    // end near its full length, an honoured abort at once.
    expect(afterAbortMs).toBeLessThan(classifyConnectError(0x85).backoffMs / 2);
    expect(fleet.nodes[0]!.bluetooth.connectRequests).toBe(1);
  });

  it('pool-cancel - in the same-proxy backoff after CONN_CANCEL (waiting for the proxy to be tried again)', async () => {
    const { fleet, pool } = await setup();
    fleet.nodes[0]!.bluetooth.setBehaviour(DEMO, { connectError: 0x100, connectDelayMs: 5 });
    const { afterAbortMs } = await abortWhen(
      (signal) => pool.establishConnection(DEMO_MAC, { signal, slotWait: 10_000 }),
      () => pool.explain(DEMO_MAC)[0]?.reason?.startsWith('backing off') === true,
    );
    expect(afterAbortMs).toBeLessThan(PROMPT_MS);
  });

  it('pool-cancel - while the connect is in flight: DISCONNECT goes out, the call does not wait for its answer', async () => {
    const { fleet, pool } = await setup();
    const node = fleet.nodes[0]!;
    node.bluetooth.setBehaviour(DEMO, { hang: true });
    const { afterAbortMs } = await abortWhen(
      (signal) => pool.establishConnection(DEMO_MAC, { signal }),
      () => {
        if (node.bluetooth.linkAddresses.length !== 1) return false;
        // From here on the proxy answers (the DISCONNECT too) only after SLOW_REPLY_MS.
        node.server.faults.replyDelayMs = SLOW_REPLY_MS;
        return true;
      },
    );
    expect(afterAbortMs).toBeLessThan(PROMPT_MS);
    // The DISCONNECT was sent: the proxy frees the slot (checked by leakedSlots after the test), and the next
    // connect to the device waits until it has.
    await expect.poll(() => node.bluetooth.linkAddresses, { timeout: 3000 }).toEqual([]);
    delete node.server.faults.replyDelayMs;
  });

  it('pool-cancel - while the services of a fresh link are being read: the link is released, not kept', async () => {
    const fleet = await startTestFleet(1, await profileWithDevices(0), [], closers);
    const node = fleet.nodes[0]!;
    let asked = false;
    // The proxy answers the service request (70) only after SLOW_REPLY_MS: slow it down the moment the client sends it.
    const tapFor = () => (direction: 'c2d' | 'd2c', id: number) => {
      if (direction !== 'c2d' || id !== 70) return;
      asked = true;
      node.server.faults.replyDelayMs = SLOW_REPLY_MS;
    };
    const pool = poolOf(closers, fleet.nodes, { ...FAST_POOL, tapFor });
    watchSlots(closers, fleet.nodes, pool);
    await pool.ready({ timeout: 3000 });
    await waitHeard(pool, DEMO_MAC, 1);
    const { afterAbortMs } = await abortWhen(
      (signal) => pool.establishConnection(DEMO_MAC, { signal, useServicesCache: false }),
      () => asked,
    );
    expect(afterAbortMs).toBeLessThan(PROMPT_MS);
    expect(pool.connections()).toEqual([]);
    delete node.server.faults.replyDelayMs;
    await expect.poll(() => node.bluetooth.linkAddresses, { timeout: 3000 }).toEqual([]);
  });

  it('pool-cancel - a disconnect waiting for the proxy to settle', async () => {
    const { fleet, pool } = await setup();
    const node = fleet.nodes[0]!;
    const connection = await pool.establishConnection(DEMO_MAC);
    node.server.faults.replyDelayMs = SLOW_REPLY_MS;
    const { afterAbortMs } = await abortWhen(
      (signal) => connection.disconnect({ signal }),
      () => true,
    );
    expect(afterAbortMs).toBeLessThan(PROMPT_MS);
    expect(connection.isConnected).toBe(false);
    delete node.server.faults.replyDelayMs;
    await expect.poll(() => node.bluetooth.linkAddresses, { timeout: 3000 }).toEqual([]);
  });

  it('pool-cancel - a GATT read of a pooled connection', async () => {
    const { fleet, pool } = await setup();
    const node = fleet.nodes[0]!;
    const connection = await pool.establishConnection(DEMO_MAC);
    node.server.faults.replyDelayMs = SLOW_REPLY_MS;
    const { afterAbortMs } = await abortWhen(
      (signal) => connection.read('2a00', { signal }),
      () => true,
    );
    expect(afterAbortMs).toBeLessThan(PROMPT_MS);
    delete node.server.faults.replyDelayMs;
    await connection.disconnect();
  });

  it('pool-cancel - ready() waiting for a proxy that does not answer', async () => {
    const fleet = await startTestFleet(1, await profileWithDevices(0), [], closers);
    const node = fleet.nodes[0]!;
    node.server.faults.replyDelayMs = SLOW_REPLY_MS;
    const pool = poolOf(closers, fleet.nodes);
    const { afterAbortMs } = await abortWhen(
      (signal) => pool.ready({ signal }),
      () => true,
    );
    expect(afterAbortMs).toBeLessThan(PROMPT_MS);
    await pool.close();
  });

  it('pool-cancel - BluetoothProxy.connect and releaseSlot on their own', async () => {
    const fleet = await startTestFleet(1, await profileWithDevices(0), [], closers);
    const node = fleet.nodes[0]!;
    const api = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port });
    try {
      const proxy = await BluetoothProxy.attach(api, { watchdog: false });
      node.bluetooth.setBehaviour(DEMO, { hang: true });
      const connecting = await abortWhen(
        (signal) => proxy.connect(DEMO, { signal, addressType: 1 }),
        () => node.bluetooth.linkAddresses.length === 1,
      );
      expect(connecting.afterAbortMs).toBeLessThan(PROMPT_MS);
      await expect.poll(() => node.bluetooth.linkAddresses).toEqual([]);
      node.server.faults.replyDelayMs = SLOW_REPLY_MS;
      const releasing = await abortWhen(
        (signal) => proxy.releaseSlot(DEMO, { signal }),
        () => true,
      );
      expect(releasing.afterAbortMs).toBeLessThan(PROMPT_MS);
    } finally {
      api.destroy();
    }
  });
});

describe('pool - cancellation by the pool and the noble bindings', () => {
  it('pool-cancel - close() ends a connect still waiting to hear its device (no timer outlives the pool)', async () => {
    const { pool: open } = await setup();
    const pending = open.establishConnection(NOBODY, { notFoundWait: LONG_WAIT_MS }).catch((e: unknown) => e);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closedAt = performance.now();
    await open.close();
    expect(await pending).toMatchObject({ code: 'ESPAPI_ERR_NO_PROXY' });
    expect(performance.now() - closedAt).toBeLessThan(PROMPT_MS);
  });

  it('pool-cancel - noble cancelConnect of a device nobody hears ends the pool call at once, with no connect event', async () => {
    const { pool: open } = await setup();
    const { createNobleBindings } = await import('../../src/noble/index.js');
    let settledAt: number | undefined;
    const original = open.establishConnection.bind(open);
    open.establishConnection = (target, options) =>
      original(target, options).finally(() => {
        settledAt = performance.now();
      });
    const bindings = createNobleBindings(open, { connect: { notFoundWait: LONG_WAIT_MS } });
    try {
      const powered = new Promise<void>((resolve) => bindings.on('stateChange', (state: string) => state === 'poweredOn' && resolve()));
      bindings.start();
      await powered;
      const connects: unknown[] = [];
      bindings.on('connect', (...args: unknown[]) => connects.push(args));
      bindings.connect('112233445566');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const cancelledAt = performance.now();
      bindings.cancelConnect('112233445566');
      await expect.poll(() => settledAt, { interval: 5 }).toBeDefined();
      expect(settledAt! - cancelledAt).toBeLessThan(PROMPT_MS);
      expect(connects).toEqual([]);
    } finally {
      await bindings.close();
    }
  });
});
