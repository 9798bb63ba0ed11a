import { describe, expect, it } from 'vitest';
import { MdnsDiscovery } from '../../src/discovery/mdns.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { MdnsAdvertiser, simulatedProxyTxt } from '../../src/fixture-server/mdns-advertiser.js';
import type { PoolStatus, ProxyPool as ProxyPoolType } from '../../src/pool/proxy-pool.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { useClosers } from '../helpers/closers.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { DEMO_MAC, profileWithDevices, waitHeard } from '../helpers/fleet.js';

// Every mDNS socket here multicasts on loopback only, on a private port, so nothing reaches the LAN.
function loopback(): { interface: string; bind: string; port: number } {
  return { interface: '127.0.0.1', bind: '0.0.0.0', port: 20_000 + Math.floor(Math.random() * 40_000) };
}

/** The pool's session backoff in the re-announce test: far longer than an mDNS-triggered reconnect may take. */
const BACKOFF_MS = 5_000;

const closers = useClosers();

async function node(name: string, options: { psk?: string; port?: number; rssiOffset?: number } = {}): Promise<SimulatedNode> {
  const started = await startSimulatedProxy({ name, profile: await profileWithDevices(0), ...options });
  closers.push(() => started.server.close());
  return started;
}

function advertiser(socket: ReturnType<typeof loopback>): MdnsAdvertiser {
  const ad = new MdnsAdvertiser(socket);
  closers.push(() => ad.close());
  return ad;
}

function publish(ad: MdnsAdvertiser, n: SimulatedNode): () => Promise<void> {
  return ad.publish({
    name: n.server.name,
    port: n.server.address.port,
    host: '127.0.0.1',
    txt: simulatedProxyTxt({ mac: n.server.mac, encrypted: n.server.psk !== undefined }),
  });
}

function discoveredPool(socket: ReturnType<typeof loopback>, options: ConstructorParameters<typeof ProxyPool>[1] = {}): ProxyPoolType {
  const discovery = new MdnsDiscovery(socket);
  const pool = new ProxyPool([], { ...options, discovery });
  closers.push(async () => {
    await pool.close();
    await discovery.close();
  });
  return pool.start();
}

async function until(check: () => boolean, withinMs: number, what: string): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('pool discovery', () => {
  it('pool-discovery - a pool fed by mDNS finds advertised proxies, keys them by name or MAC and connects through them', async () => {
    const socket = loopback();
    const plain = await node('hall', { rssiOffset: -20 });
    const noise = await node('attic', { psk: TEST_PSK });
    const ad = advertiser(socket);
    publish(ad, plain);
    publish(ad, noise);
    const mac = noise.server.mac.replaceAll(':', '').toLowerCase();
    const pool = discoveredPool(socket, { keys: { [mac]: TEST_PSK } });
    await until(() => pool.proxies().filter((p) => p.online).length === 2, 5_000, 'both proxies online');
    expect(
      pool
        .proxies()
        .map((p) => [p.id, p.host, p.name])
        .sort(),
    ).toEqual([
      ['attic', '127.0.0.1', 'attic'],
      ['hall', '127.0.0.1', 'hall'],
    ]);
    await waitHeard(pool, DEMO_MAC, 2);
    const connection = await pool.establishConnection(DEMO_MAC);
    expect(connection.proxy).toBe('attic');
    expect(new TextDecoder().decode(await connection.read('2a00'))).toBe('esphome-ble-demo');
    await connection.disconnect();
  });

  it('pool-discovery - an encrypted proxy without a key stays offline with the key error; the others work', async () => {
    const socket = loopback();
    const plain = await node('porch');
    const noise = await node('cellar', { psk: TEST_PSK });
    const ad = advertiser(socket);
    publish(ad, plain);
    publish(ad, noise);
    const pool = discoveredPool(socket);
    await until(() => pool.proxies().length === 2 && pool.proxies().some((p) => p.online), 5_000, 'both proxies found');
    await until(() => pool.proxies().find((p) => p.id === 'cellar')?.lastError !== undefined, 5_000, 'cellar failed');
    const cellar = pool.proxies().find((p) => p.id === 'cellar')!;
    expect(cellar.online).toBe(false);
    expect(cellar.lastError).toMatch(/encrypt/i);
    expect(pool.proxies().find((p) => p.id === 'porch')?.online).toBe(true);
  });

  it('pool-discovery - a proxy re-announced over mDNS after going down is reconnected at once, not after the backoff', async () => {
    const socket = loopback();
    const first = await node('shed');
    const port = first.server.address.port;
    const ad = advertiser(socket);
    const unpublish = publish(ad, first);
    const pool = discoveredPool(socket, { backoff: { initialDelay: BACKOFF_MS, expectedDisconnectDelay: BACKOFF_MS, jitter: 0 } });
    const events: Array<{ at: number; event: PoolStatus }> = [];
    const watcher = (async () => {
      for await (const event of pool.status()) events.push({ at: performance.now(), event });
    })();
    await until(() => pool.proxies()[0]?.online === true, 5_000, 'shed online');

    // Power cut: the node goes away (goodbye on mDNS, then the socket closes) and the pool starts its backoff.
    await unpublish();
    await first.server.close();
    await until(() => pool.proxies()[0]?.online === false, 2_000, 'shed seen down');

    // Back on the same address; the announcement must wake the pool's session instead of the backoff timer.
    const again = await node('shed', { port });
    const announced = performance.now();
    publish(ad, again);
    await until(() => pool.proxies()[0]?.online === true, BACKOFF_MS - 1_000, 'shed back online before the backoff');
    const up = events.filter((e) => e.event.type === 'proxyUp').at(-1);
    expect(up).toBeDefined();
    const reconnectMs = up!.at - announced;
    expect(reconnectMs).toBeLessThan(BACKOFF_MS / 4);
    expect(events.map((e) => e.event.type)).toEqual(expect.arrayContaining(['proxyUp', 'proxyDown']));
    expect(again.server.sessions.size).toBe(1);
    await pool.close();
    await watcher;
  });
});
