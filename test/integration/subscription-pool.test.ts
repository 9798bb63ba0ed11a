import { describe, expect, it } from 'vitest';
import type { ApiConnection } from '../../src/connection/connection.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import { type PoolStatus, ProxyPool, type ProxyPoolOptions } from '../../src/pool/proxy-pool.js';
import { useClosers } from '../helpers/closers.js';
import { startProxy, subscribeAsOther } from '../helpers/fleet.js';
import { freePort } from '../helpers/mosquitto.js';

const DEMO = 0xc0ffee000001;
/** Short watchdog and backoff for tests (the defaults are 30 s silence, then 10 s / 30 s / 60 s). */
const FAST_ATTACH: NonNullable<ProxyPoolOptions['attach']> = {
  watchdog: { silenceTimeout: 60, probeTimeout: 300 },
  resubscribe: { delays: [400] },
  subscriberCheckTimeout: 200,
};

const closers = useClosers();

const startNode = (name: string, options: SimulatedNodeOptions = {}): Promise<SimulatedNode> => startProxy(closers, { name, ...options });

function startPool(specs: string[], options: ProxyPoolOptions = {}): ProxyPool {
  const pool = new ProxyPool(specs, { attach: FAST_ATTACH, backoff: { initialDelay: 100, maxDelay: 200 }, ...options });
  closers.push(() => pool.close());
  return pool;
}

const addr = (node: SimulatedNode): string => `127.0.0.1:${node.server.address.port}`;

/** A client that holds the subscription (as Home Assistant does). */
async function otherSubscriber(node: SimulatedNode): Promise<ApiConnection> {
  return subscribeAsOther(node, closers);
}

describe('pool diagnostics and subscription status', () => {
  it('pool - diagnostics of healthy proxies: online, subscribed, slots with leases, ads/s, no errors', async () => {
    const a = await startNode('diag-a', { slotsBusy: 1 });
    const b = await startNode('diag-b', { firmware: '2024.10' });
    const pool = startPool([addr(a), addr(b)]);
    await pool.ready({ timeout: 3000 });
    const device = await pool.establishConnection(DEMO, { prefer: [addr(a)], timeout: 5000 });
    await expect.poll(() => pool.diagnostics().every((d) => d.adsPerSecond > 0), { timeout: 3000 }).toBe(true);
    const [da, db] = pool.diagnostics();
    expect(da).toMatchObject({
      id: addr(a),
      name: 'diag-a',
      apiVersion: '1.15',
      state: 'online',
      subscription: { state: 'subscribed', confirmed: true },
      lastErrors: [],
    });
    expect(da?.slots).toMatchObject({ free: 1, limit: 3, leases: 0, owned: [DEMO] });
    expect(da?.slots?.allocated).toContain(DEMO);
    expect(da?.features).toContain('FEATURE_STATE_AND_MODE');
    expect(da?.devicesHeard).toBeGreaterThan(0);
    expect(db).toMatchObject({ apiVersion: '1.10', esphomeVersion: '2024.10.3', state: 'online', subscription: { state: 'subscribed' } });
    expect(db?.features).not.toContain('FEATURE_STATE_AND_MODE');
    await device.disconnect();
  });

  it('pool - another client holding the subscription shows as notSubscriber with the code in lastErrors', async () => {
    const node = await startNode('diag-held', { firmware: '2026.1' });
    await otherSubscriber(node);
    const pool = startPool([addr(node)]);
    pool.start();
    await expect.poll(() => pool.diagnostics()[0]?.state, { timeout: 3000 }).toBe('notSubscriber');
    const [d] = pool.diagnostics();
    expect(d?.subscription.state).toBe('notSubscriber');
    expect(d?.lastErrors.map((e) => e.code)).toContain('ESPAPI_ERR_NOT_SUBSCRIBER');
    expect(d?.lastErrors[0]).toMatchObject({ message: expect.stringContaining('single Bluetooth subscription') });
    expect(typeof d?.lastErrors[0]?.at).toBe('number');
  });

  it('pool - with requireSubscriber: false a held proxy stays connected as subscriptionLost and comes online when freed', async () => {
    const node = await startNode('diag-wait', { firmware: '2026.1' });
    const holder = await otherSubscriber(node);
    const pool = startPool([addr(node)], { attach: { ...FAST_ATTACH, requireSubscriber: false, resubscribe: { delays: [50] } } });
    pool.start();
    await expect.poll(() => pool.diagnostics()[0]?.state, { timeout: 3000 }).toBe('subscriptionLost');
    expect(node.server.sessions.size).toBe(2); // no reconnect churn: the session stays open
    holder.destroy();
    await expect.poll(() => pool.diagnostics()[0]?.state, { timeout: 3000 }).toBe('online');
    const device = await pool.establishConnection(DEMO, { timeout: 5000 });
    await device.disconnect();
  });

  it('pool - an unreachable proxy is offline with a bounded error history', async () => {
    const port = await freePort();
    const pool = startPool([`127.0.0.1:${port}`], { backoff: { initialDelay: 10, maxDelay: 10, jitter: 0 } });
    pool.start();
    await expect.poll(() => pool.diagnostics()[0]?.lastErrors.length, { timeout: 3000 }).toBe(10);
    const [d] = pool.diagnostics();
    expect(d?.state).toBe('offline');
    expect(d?.subscription.state).toBe('none');
    expect(new Set(d?.lastErrors.map((e) => e.code))).toEqual(new Set(['ESPAPI_ERR_CONNECT']));
  });

  it('pool - a takeover is reported on pool.status() and in diagnostics; the pool keeps serving through the other proxy', async () => {
    const taken = await startNode('diag-taken', { firmware: '2026.7', slotsBusy: 1 });
    const spare = await startNode('diag-spare', { firmware: '2026.7' });
    const pool = startPool([addr(taken), addr(spare)]);
    await pool.ready({ timeout: 3000 });
    const events: PoolStatus[] = [];
    const watching = (async () => {
      for await (const event of pool.status()) {
        if (event.type === 'subscription') events.push(event);
      }
    })();
    await otherSubscriber(taken);
    await expect.poll(() => pool.diagnostics()[0]?.state, { timeout: 2000 }).toBe('subscriptionLost');
    const [lost] = pool.diagnostics();
    expect(lost?.subscription.state).toBe('lost');
    expect(lost?.lastErrors.map((e) => e.code)).toContain('ESPAPI_ERR_SUBSCRIPTION_LOST');
    // Reaping leaves the lost proxy alone (its answers would go to the other client) instead of failing.
    expect(await pool.reapOrphans({ timeout: 500 })).toEqual([]);
    // While one proxy is lost the other carries the connect.
    const device = await pool.establishConnection(DEMO, { timeout: 5000 });
    expect(device.proxy).toBe(addr(spare));
    await device.disconnect();
    // The resubscribe (400 ms) takes the subscription back: newest wins.
    await expect.poll(() => pool.diagnostics()[0]?.state, { timeout: 3000 }).toBe('online');
    const seen = events.map((e) => (e.type === 'subscription' ? `${e.proxy}:${e.status.type}` : ''));
    // On a loaded machine an attempt's confirmation may time out: then it fails and the next attempt goes out, in pairs.
    const retries = (seen.length - 3) / 2;
    expect(Number.isInteger(retries) && retries >= 0, seen.join(', ')).toBe(true);
    expect(seen).toEqual([
      `${addr(taken)}:subscriptionLost`,
      `${addr(taken)}:resubscribing`,
      ...Array.from({ length: retries }, () => [`${addr(taken)}:resubscribeFailed`, `${addr(taken)}:resubscribing`]).flat(),
      `${addr(taken)}:resubscribed`,
    ]);
    const first = events[0];
    expect(first?.type === 'subscription' && first.status.type === 'subscriptionLost' && first.status.code).toBe(
      'ESPAPI_ERR_SUBSCRIPTION_LOST',
    );
    await pool.close();
    await watching;
  });
});
