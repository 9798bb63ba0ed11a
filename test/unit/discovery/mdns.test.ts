import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import {
  type BonjourLike,
  type BrowserLike,
  type DiscoveryEvent,
  MdnsDiscovery,
  type ServiceLike,
  STALE_AFTER_MISSED_QUERIES,
  toDiscoveredProxy,
} from '../../../src/discovery/mdns.js';
import type { ProxyDiscoverySource } from '../../../src/pool/proxy-pool.js';
import { nextWithin } from '../../helpers/wait.js';

// A double of bonjour-service at the edge we do not own: each browser reports a service once ('up'),
// then only TXT changes and goodbyes, exactly like the real Browser.
class FakeBrowser extends EventEmitter implements BrowserLike {
  readonly #network: FakeNetwork;
  readonly #known = new Map<string, ServiceLike>();

  constructor(network: FakeNetwork) {
    super();
    this.#network = network;
  }

  receive(service: ServiceLike): void {
    const known = this.#known.get(service.name);
    this.#known.set(service.name, service);
    if (known === undefined) this.emit('up', service);
    else if (JSON.stringify(known.rawTxt) !== JSON.stringify(service.rawTxt)) this.emit('txt-update', service, known);
  }

  bye(name: string): void {
    const known = this.#known.get(name);
    if (known === undefined) return;
    this.#known.delete(name);
    this.emit('down', known);
  }

  stop(): void {
    this.#network.browsers.delete(this);
  }
}

class FakeNetwork implements BonjourLike {
  readonly browsers = new Set<FakeBrowser>();
  readonly live = new Map<string, ServiceLike>();
  queries = 0;
  destroyed = false;

  find(): BrowserLike {
    const browser = new FakeBrowser(this);
    this.browsers.add(browser);
    this.queries++;
    // Answers arrive after the query goes out, never synchronously.
    setImmediate(() => {
      for (const service of this.live.values()) browser.receive(service);
    });
    return browser;
  }

  destroy(callback?: () => void): void {
    this.destroyed = true;
    callback?.();
  }

  announce(service: ServiceLike): void {
    this.live.set(service.name, service);
    for (const browser of this.browsers) browser.receive(service);
  }

  goodbye(name: string): void {
    this.live.delete(name);
    for (const browser of this.browsers) browser.bye(name);
  }

  /** Power loss: no goodbye, the device simply stops answering. */
  vanish(name: string): void {
    this.live.delete(name);
  }
}

function service(name: string, txt: string[] = ['version=2026.8.0'], extra: Partial<ServiceLike> = {}): ServiceLike {
  return { name, host: `${name}.local`, port: 6053, addresses: ['192.168.1.20'], rawTxt: txt.map((t) => Buffer.from(t)), ...extra };
}

const next = (iterator: AsyncIterator<DiscoveryEvent>, ms = 2000): Promise<DiscoveryEvent> => nextWithin(iterator, 'discovery event', ms);

describe('mdns', () => {
  it('mdns - normalises host, drops unspecified addresses and lists IPv4 first', () => {
    const proxy = toDiscoveredProxy(
      service('proxy-a', [], { host: 'proxy-a.local.', addresses: ['fe80::1', '0.0.0.0', '::', '10.0.0.5', '10.0.0.5'] }),
    );
    expect(proxy).toMatchObject({ name: 'proxy-a', host: 'proxy-a.local', addresses: ['10.0.0.5', 'fe80::1'], port: 6053 });
    expect(toDiscoveredProxy(service('proxy-b', [], { host: 'vm' }))?.host).toBe('vm.local');
  });

  it('mdns - falls back to the sender address when the answer had no A/AAAA records', () => {
    const proxy = toDiscoveredProxy(service('proxy-a', [], { addresses: [], referer: { address: '192.168.1.30' } }));
    expect(proxy?.addresses).toEqual(['192.168.1.30']);
    expect(toDiscoveredProxy(service('proxy-a', [], { addresses: [], referer: { address: '0.0.0.0' } }))?.addresses).toEqual([]);
  });

  it('mdns - prefers rawTxt and falls back to the decoded txt', () => {
    expect(toDiscoveredProxy(service('p', ['friendly_name=', 'api_encryption=x']))?.txt).toMatchObject({
      friendlyName: '',
      encryption: 'required',
    });
    const decoded = toDiscoveredProxy({ name: 'p', host: 'p.local', port: 6053, txt: { api_encryption_supported: 'x', bogus: 1 } });
    expect(decoded?.txt).toEqual({ encryption: 'supported', raw: { api_encryption_supported: 'x' } });
    expect(toDiscoveredProxy({ name: '', host: 'x', port: 6053 })).toBeUndefined();
  });

  it('mdns - reports up, update and down (goodbye) to every consumer', async () => {
    const network = new FakeNetwork();
    network.announce(service('proxy-a'));
    const discovery = new MdnsDiscovery({ bonjour: network, requeryIntervalMs: 0 });
    const first = discovery.events();
    expect(await next(first)).toMatchObject({ type: 'up', proxy: { name: 'proxy-a' } });

    // A late consumer is told about what is already known.
    const second = discovery.events();
    expect(await next(second)).toMatchObject({ type: 'up', proxy: { name: 'proxy-a' } });

    network.announce(service('proxy-a', ['version=2026.9.0']));
    expect(await next(first)).toMatchObject({ type: 'update', proxy: { txt: { version: '2026.9.0' } } });
    network.goodbye('proxy-a');
    expect(await next(first)).toEqual({ type: 'down', name: 'proxy-a' });
    expect(await next(second)).toMatchObject({ type: 'update' });
    expect(await next(second)).toEqual({ type: 'down', name: 'proxy-a' });
    expect(discovery.snapshot()).toEqual([]);

    await discovery.close();
    expect(network.destroyed).toBe(false);
  });

  it('mdns - re-queries and reports a silent proxy down after missed answers', async () => {
    const network = new FakeNetwork();
    network.announce(service('proxy-a'));
    network.announce(service('proxy-b'));
    const requeryIntervalMs = 20;
    await using discovery = new MdnsDiscovery({ bonjour: network, requeryIntervalMs });
    const events = discovery.events();
    expect((await next(events)).type).toBe('up');
    expect((await next(events)).type).toBe('up');

    network.vanish('proxy-b');
    const queriesBefore = network.queries;
    expect(await next(events)).toEqual({ type: 'down', name: 'proxy-b' });
    // Down after STALE_AFTER_MISSED_QUERIES unanswered re-queries (one more if the last round before it vanished had
    // heard it), not later: counted in re-queries, which a loaded machine does not stretch as it stretches the clock.
    const missed = network.queries - queriesBefore;
    expect(missed).toBeGreaterThanOrEqual(STALE_AFTER_MISSED_QUERIES);
    expect(missed).toBeLessThanOrEqual(STALE_AFTER_MISSED_QUERIES + 2);
    expect(discovery.snapshot().map((p) => p.name)).toEqual(['proxy-a']);

    // It comes back: a fresh browser of the next re-query reports it again.
    network.live.set('proxy-b', service('proxy-b'));
    expect(await next(events)).toMatchObject({ type: 'up', proxy: { name: 'proxy-b' } });
  });

  it('mdns - keeps known addresses when an answer carries none', async () => {
    const network = new FakeNetwork();
    network.announce(service('proxy-a'));
    await using discovery = new MdnsDiscovery({ bonjour: network, requeryIntervalMs: 0 });
    const events = discovery.events();
    await next(events);
    network.announce(service('proxy-a', ['version=2026.9.0'], { addresses: [], referer: { address: '192.168.1.99' } }));
    expect(await next(events)).toMatchObject({ type: 'update', proxy: { addresses: ['192.168.1.20'] } });
  });

  it('mdns - an abort signal ends one iterator and close() ends the rest', async () => {
    const network = new FakeNetwork();
    const discovery = new MdnsDiscovery({ bonjour: network, requeryIntervalMs: 0 });
    const controller = new AbortController();
    const aborted = discovery.events({ signal: controller.signal });
    const other = discovery.events();
    const pending = aborted.next();
    controller.abort();
    expect(await pending).toEqual({ value: undefined, done: true });

    const otherPending = other.next();
    await discovery.close();
    await discovery.close();
    expect(await otherPending).toEqual({ value: undefined, done: true });
    expect(await discovery.events().next()).toEqual({ value: undefined, done: true });
    expect(network.browsers.size).toBe(0);
  });

  it('mdns - satisfies the pool discovery source', async () => {
    await using discovery = new MdnsDiscovery({ bonjour: new FakeNetwork(), requeryIntervalMs: 0 });
    const source: ProxyDiscoverySource = discovery;
    expect(source).toBe(discovery);
  });
});
