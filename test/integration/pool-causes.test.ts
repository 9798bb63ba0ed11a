import { describe, expect, it } from 'vitest';
import { exitCodeFor } from '../../src/cli/output.js';
import type { ProxyConfig } from '../../src/connection/proxy-session.js';
import { ReconnectingConnection, type ReconnectStatus } from '../../src/connection/reconnect.js';
import {
  DeviceNotFoundError,
  EncryptionRequiredError,
  InvalidEncryptionKeyError,
  InvalidPasswordError,
  NoProxyAvailableError,
  TimeoutError,
} from '../../src/errors.js';
import { SimulatedFleet, type SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import { ADVICE } from '../../src/pool/retry-policy.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import { useClosers } from '../helpers/closers.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';
import { DEMO_MAC, FAST_POOL, poolOf, profileWithDevices, waitHeard } from '../helpers/fleet.js';
import { AT_ONCE_MS, LONG_WAIT_MS } from '../helpers/wait.js';

// True causes: a pool whose proxies refuse us for a reason retrying cannot fix says so at once, per proxy, instead of
// waiting out "not found" (8 s with the defaults); the same one table stops the relay's upstream reconnects.

const NOBODY = '11:22:33:44:55:66';
/** Each prompt call below is given this not-found wait: a call that sat it out instead of failing at once fails AT_ONCE_MS. */
const NOT_FOUND_WAIT = { notFoundWait: LONG_WAIT_MS };

const closers = useClosers();

/** The fleet of the running test (entry() reads it). */
let fleet: SimulatedFleet | undefined;

/** Starts the test's fleet, closed after it. */
async function startFleet(specs: SimulatedNodeOptions[]): Promise<SimulatedFleet> {
  const started = await SimulatedFleet.start(specs);
  closers.push(() => started.close());
  fleet = started;
  return started;
}

/** Proxy 1 expects TEST_PSK; proxy 2 is plaintext (both hear the demo peripheral). */
async function fleetOfTwo(): Promise<SimulatedFleet> {
  const profile = await profileWithDevices(0);
  return startFleet([
    { profile, psk: TEST_PSK },
    { profile, rssiOffset: -10 },
  ]);
}

function entry(i: number, extra: Partial<ProxyConfig> = {}): ProxyConfig {
  return { host: '127.0.0.1', port: fleet!.nodes[i]!.server.address.port, name: `proxy-${i + 1}`, ...extra };
}

describe('pool - true causes', () => {
  it('pool-causes - a wrong key on the only proxy: establishConnection rejects at once with NO_PROXY carrying the key error', async () => {
    await fleetOfTwo();
    const pool = poolOf(closers, [entry(0, { psk: OTHER_PSK })], FAST_POOL);
    const started = performance.now();
    // Called before the proxy has even answered: the connect waits for the handshake's verdict, not for the device.
    const error = await pool.establishConnection(DEMO_MAC, NOT_FOUND_WAIT).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
    expect(error).toBeInstanceOf(NoProxyAvailableError);
    const noProxy = error as NoProxyAvailableError;
    expect(noProxy.proxies).toEqual([
      expect.objectContaining({ proxy: 'proxy-1', code: 'ESPAPI_ERR_INVALID_KEY', failureClass: 'credentials', permanent: true }),
    ]);
    expect(noProxy.cause).toBeInstanceOf(InvalidEncryptionKeyError);
    expect(noProxy.message).toContain('proxy-1: ESPAPI_ERR_INVALID_KEY');
    expect(noProxy.message).not.toContain('powered and advertising');
    // ready() reports it too: it rejects, since nothing will ever connect.
    const ready = await pool.ready({ timeout: 1000 }).catch((e: unknown) => e);
    expect(ready).toMatchObject({ code: 'ESPAPI_ERR_NO_PROXY', proxies: [expect.objectContaining({ code: 'ESPAPI_ERR_INVALID_KEY' })] });
  });

  it('pool-causes - every proxy unusable for its own reason: each cause is named (key, encryption, identity, password)', async () => {
    const profile = await profileWithDevices(0);
    await startFleet([
      { profile, psk: TEST_PSK },
      { profile, psk: TEST_PSK },
      { profile },
      { profile, firmware: '2024.10', password: 'hunter2' },
    ]);
    const pool = poolOf(
      closers,
      [
        entry(0, { psk: OTHER_PSK }),
        entry(1), // plaintext client, Noise proxy
        { ...entry(2), name: 'kitchen' }, // the node at that address is proxy-3
        entry(3, { password: 'nope' }),
      ],
      FAST_POOL,
    );
    const error = (await pool.ready({ timeout: 3000 }).catch((e: unknown) => e)) as NoProxyAvailableError;
    expect(error).toBeInstanceOf(NoProxyAvailableError);
    expect(error.proxies.map((p) => [p.proxy, p.code])).toEqual([
      ['proxy-1', 'ESPAPI_ERR_INVALID_KEY'],
      ['proxy-2', 'ESPAPI_ERR_ENCRYPTION_REQUIRED'],
      ['kitchen', 'ESPAPI_ERR_NAME_MISMATCH'],
      ['proxy-4', 'ESPAPI_ERR_INVALID_PASSWORD'],
    ]);
    expect(error.proxies[1]?.error).toBeInstanceOf(EncryptionRequiredError);
    expect(error.proxies[3]?.error).toBeInstanceOf(InvalidPasswordError);
    const started = performance.now();
    await expect(pool.establishConnection(DEMO_MAC, NOT_FOUND_WAIT)).rejects.toMatchObject({ code: 'ESPAPI_ERR_NO_PROXY' });
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
  });

  it('pool-causes - one proxy refuses our key, the other works: connects there, and ready() names the bad one', async () => {
    await fleetOfTwo();
    const pool = poolOf(closers, [entry(0, { psk: OTHER_PSK }), entry(1)], FAST_POOL);
    const snapshots = await pool.ready({ timeout: 3000 });
    expect(snapshots.map((s) => [s.id, s.online, s.problem?.code])).toEqual([
      ['proxy-1', false, 'ESPAPI_ERR_INVALID_KEY'],
      ['proxy-2', true, undefined],
    ]);
    await waitHeard(pool, DEMO_MAC, 1);
    const connection = await pool.establishConnection(DEMO_MAC);
    expect(connection.proxy).toBe('proxy-2');
    await connection.disconnect();
    // A device the working proxy does not hear: not found, and the error names the proxy we could not use.
    const missing = (await pool
      .establishConnection(NOBODY, { maxAttempts: 1, notFoundWait: 50 })
      .catch((e: unknown) => e)) as DeviceNotFoundError;
    expect(missing).toBeInstanceOf(DeviceNotFoundError);
    expect(missing.unusable.map((c) => [c.proxy, c.code])).toEqual([['proxy-1', 'ESPAPI_ERR_INVALID_KEY']]);
    expect(missing.advice).toContain(ADVICE.notFound);
    expect(missing.advice).toContain('Not usable: proxy-1: ESPAPI_ERR_INVALID_KEY');
  });

  it('pool-causes - require names only the proxy with the wrong key: NO_PROXY at once, though the other one works', async () => {
    await fleetOfTwo();
    const pool = poolOf(closers, [entry(0, { psk: OTHER_PSK }), entry(1)], FAST_POOL);
    await pool.ready({ timeout: 3000 });
    const started = performance.now();
    const error = await pool.establishConnection(DEMO_MAC, { require: ['proxy-1'], ...NOT_FOUND_WAIT }).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
    expect(error).toMatchObject({ code: 'ESPAPI_ERR_NO_PROXY', proxies: [expect.objectContaining({ proxy: 'proxy-1' })] });
  });

  it('pool-causes - a connect already waiting to hear the device gives up when the last usable proxy fails for good', async () => {
    await fleetOfTwo();
    // The proxy answers only after 400 ms, and then turns out to be another node than the one configured: the
    // connect is in its not-found wait by then.
    fleet!.nodes[1]!.server.faults.replyDelayMs = 400;
    const pool = poolOf(closers, [{ ...entry(1), name: 'kitchen' }], FAST_POOL);
    const started = performance.now();
    const error = await pool.establishConnection(NOBODY, NOT_FOUND_WAIT).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(400 + AT_ONCE_MS);
    expect(error).toMatchObject({ code: 'ESPAPI_ERR_NO_PROXY', proxies: [expect.objectContaining({ code: 'ESPAPI_ERR_NAME_MISMATCH' })] });
  });
});

describe('pool - proxies that cannot connect now, or ever', () => {
  it('pool-causes - an advertisement-only proxy (no ACTIVE_CONNECTIONS): NO_PROXY at once, class unsupported; ready() still resolves', async () => {
    const profile = await profileWithDevices(0);
    const fleet = await startFleet([{ profile, featureFlags: 0x01 | 0x20 | 0x40 }]);
    const pool = poolOf(closers, [entry(0)], FAST_POOL);
    // A scan-only pool is a fine pool: ready() does not reject for it.
    expect((await pool.ready({ timeout: 3000 })).map((s) => s.online)).toEqual([true]);
    await waitHeard(pool, DEMO_MAC, 1);
    const started = performance.now();
    const error = await pool.establishConnection(DEMO_MAC, NOT_FOUND_WAIT).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
    expect(error).toBeInstanceOf(NoProxyAvailableError);
    expect(error).toMatchObject({
      proxies: [
        expect.objectContaining({ proxy: 'proxy-1', code: 'ESPAPI_ERR_FEATURE_MISSING', failureClass: 'unsupported', permanent: true }),
      ],
    });
    expect((error as Error).message).toContain('only forwards advertisements');
    expect(fleet.nodes[0]!.bluetooth.connectRequests).toBe(0);
  });

  it("pool-causes - the only proxy's session drops mid-connect and comes back: the next attempt waits for it and connects", async () => {
    const profile = await profileWithDevices(0);
    const fleet = await startFleet([{ profile }]);
    const node = fleet.nodes[0]!;
    const pool = poolOf(closers, [entry(0)], FAST_POOL);
    await pool.ready({ timeout: 3000 });
    await waitHeard(pool, DEMO_MAC, 1);
    node.bluetooth.setBehaviour(0xc0ffee000001, { hang: true });
    const pending = pool.establishConnection(DEMO_MAC);
    await expect.poll(() => node.bluetooth.connectRequests).toBe(1);
    node.bluetooth.setBehaviour(0xc0ffee000001, undefined);
    for (const session of node.server.sessions) session.close();
    const connection = await pending;
    expect(connection.timeline.map((r) => [r.proxy, r.failure])).toEqual([
      ['proxy-1', 'proxyLost'],
      ['proxy-1', undefined],
    ]);
    await connection.disconnect();
  });

  it('pool-causes - the only proxy refuses TCP (ECONNREFUSED): NO_PROXY naming it unreachable, not "device not found"', async () => {
    const pool = poolOf(closers, [{ host: '127.0.0.1', port: 1, name: 'attic' }], FAST_POOL);
    const error = await pool.establishConnection(DEMO_MAC, { notFoundWait: 200, maxAttempts: 2 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoProxyAvailableError);
    expect(error).not.toBeInstanceOf(DeviceNotFoundError);
    expect(error).toMatchObject({
      proxies: [expect.objectContaining({ proxy: 'attic', code: 'ESPAPI_ERR_CONNECT', failureClass: 'proxyLost', permanent: false })],
    });
    expect((error as Error).message).toMatch(/attic: ESPAPI_ERR_CONNECT \(.*ECONNREFUSED/);
    expect((error as Error).message).toContain(ADVICE.unreachable);
    expect((error as NoProxyAvailableError).timeline.map((r) => r.failure)).toEqual(['proxyUnusable', 'proxyUnusable']);
    expect(exitCodeFor(error)).toBe(1);
  });
});

describe('reconnecting sessions - the same table', () => {
  it('pool-causes - permanentErrors: retry keeps a session with a wrong key trying (stop is the default)', async () => {
    await fleetOfTwo();
    const port = fleet!.nodes[0]!.server.address.port;
    const session = new ReconnectingConnection({
      host: '127.0.0.1',
      port,
      psk: OTHER_PSK,
      backoff: { initialDelay: 20, maxDelay: 40 },
      permanentErrors: 'retry',
    });
    const events: ReconnectStatus['type'][] = [];
    const watching = (async () => {
      for await (const status of session.status()) events.push(status.type);
    })();
    try {
      session.start();
      await expect.poll(() => events.filter((t) => t === 'disconnected').length, { timeout: 3000 }).toBeGreaterThanOrEqual(3);
      expect(session.stopped).toBe(false);
      expect(session.lastError).toBeInstanceOf(InvalidEncryptionKeyError);
    } finally {
      await session.close();
      await watching;
    }
  });

  it("pool-causes - the relay's upstream stops on a wrong key (start rejects with it), or keeps trying when asked", async () => {
    await fleetOfTwo();
    const port = fleet!.nodes[0]!.server.address.port;
    const stopping = new RelayServer({
      proxies: [{ host: '127.0.0.1', port, psk: OTHER_PSK }],
      backoff: { initialDelay: 20, maxDelay: 40 },
    });
    try {
      await expect(stopping.start({ timeout: 3000 })).rejects.toBeInstanceOf(InvalidEncryptionKeyError);
      expect(stopping.proxies[0]!.session.stopped).toBe(true);
    } finally {
      await stopping.close();
    }
    const retrying = new RelayServer({
      proxies: [{ host: '127.0.0.1', port, psk: OTHER_PSK }],
      backoff: { initialDelay: 20, maxDelay: 40 },
      permanentErrors: 'retry',
    });
    try {
      await expect(retrying.start({ timeout: 300 })).rejects.toBeInstanceOf(TimeoutError);
      expect(retrying.proxies[0]!.session.stopped).toBe(false);
    } finally {
      await retrying.close();
    }
  });
});
