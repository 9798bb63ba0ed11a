import { describe, expect, it } from 'vitest';
import { type DiscoveredProxy, type DiscoveryEvent, discoverProxies, MdnsDiscovery, type MdnsOptions } from '../../src/discovery/mdns.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { MdnsAdvertiser, simulatedProxyTxt } from '../../src/fixture-server/mdns-advertiser.js';
import { useClosers } from '../helpers/closers.js';
import { AT_ONCE_MS, nextWithin } from '../helpers/wait.js';

// Every socket here multicasts on loopback only, on a private port, so nothing reaches the LAN.
function loopback(): { interface: string; bind: string; port: number } {
  return { interface: '127.0.0.1', bind: '0.0.0.0', port: 20_000 + Math.floor(Math.random() * 40_000) };
}

const closers = useClosers();

function advertiser(socket: ReturnType<typeof loopback>): MdnsAdvertiser {
  const ad = new MdnsAdvertiser(socket);
  closers.push(() => ad.close());
  return ad;
}

function discovery(options: MdnsOptions): MdnsDiscovery {
  const d = new MdnsDiscovery(options);
  closers.push(() => d.close());
  return d;
}

const next = (iterator: AsyncIterator<DiscoveryEvent>, ms = 2000): Promise<DiscoveryEvent> => nextWithin(iterator, 'discovery event', ms);

async function nextUp(iterator: AsyncIterator<DiscoveryEvent>): Promise<DiscoveredProxy> {
  const event = await next(iterator);
  if (event.type !== 'up') throw new Error(`expected up, got ${JSON.stringify(event)}`);
  return event.proxy;
}

describe('discovery', () => {
  it('discovery - finds a published proxy with its TXT, empty values included', async () => {
    const socket = loopback();
    advertiser(socket).publish({
      name: 'proxy-kitchen',
      port: 46053,
      txt: { ...simulatedProxyTxt({ mac: 'A4:CF:12:AB:34:CD', friendlyName: 'Kitchen', encrypted: true }), empty_value: '' },
    });
    const events = discovery(socket).events();
    const proxy = await nextUp(events);
    expect(proxy).toMatchObject({ name: 'proxy-kitchen', host: 'proxy-kitchen.local', addresses: ['127.0.0.1'], port: 46053 });
    expect(proxy.txt).toMatchObject({
      mac: 'a4cf12ab34cd',
      platform: 'ESP32',
      board: 'esp32dev',
      network: 'wifi',
      friendlyName: 'Kitchen',
      projectName: 'esphome.bluetooth-proxy',
      encryption: 'required',
    });
    expect(proxy.txt.raw.empty_value).toBe('');
  });

  it('discovery - tells Noise, unprovisioned and plaintext proxies apart', async () => {
    const socket = loopback();
    const ad = advertiser(socket);
    ad.publish({ name: 'proxy-noise', port: 46001, txt: simulatedProxyTxt({ mac: '000000000001', encrypted: true }) });
    ad.publish({ name: 'proxy-plain', port: 46002, txt: simulatedProxyTxt({ mac: '000000000002' }) });
    ad.publish({
      name: 'proxy-fresh',
      port: 46003,
      txt: { ...simulatedProxyTxt({ mac: '000000000003' }), api_encryption_supported: 'Noise_NNpsk0_25519_ChaChaPoly_SHA256' },
    });
    const found = await discoverProxies({ ...socket, timeout: 400 });
    const byName = Object.fromEntries(found.map((p) => [p.name, p.txt.encryption]));
    expect(byName).toEqual({ 'proxy-noise': 'required', 'proxy-plain': 'none', 'proxy-fresh': 'supported' });
  });

  it('discovery - reports a proxy published later, then its goodbye as down', async () => {
    const socket = loopback();
    const ad = advertiser(socket);
    ad.publish({ name: 'proxy-1', port: 46001, txt: simulatedProxyTxt({ mac: '000000000001' }) });
    const events = discovery({ ...socket, requeryIntervalMs: 60_000 }).events();
    expect((await nextUp(events)).name).toBe('proxy-1');

    const unpublish = ad.publish({ name: 'proxy-2', port: 46002, txt: simulatedProxyTxt({ mac: '000000000002' }) });
    expect((await nextUp(events)).name).toBe('proxy-2');

    const started = Date.now();
    await unpublish();
    // The goodbye itself, not a missed re-query (every 60 s here), says it is gone.
    expect(await next(events, AT_ONCE_MS)).toEqual({ type: 'down', name: 'proxy-2' });
    expect(Date.now() - started).toBeLessThan(AT_ONCE_MS);
  });

  it('discovery - a proxy still published after another is withdrawn keeps answering queries', async () => {
    const socket = loopback();
    const ad = advertiser(socket);
    const unpublishA = ad.publish({ name: 'proxy-a', port: 46001, txt: simulatedProxyTxt({ mac: '00000000000a' }) });
    ad.publish({ name: 'proxy-b', port: 46002, txt: simulatedProxyTxt({ mac: '00000000000b' }) });
    await unpublishA();
    const found = await discoverProxies({ ...socket, timeout: 300 });
    expect(found.map((p) => p.name)).toEqual(['proxy-b']);
  });

  it('discovery - discoverProxies returns after its timeout', async () => {
    const socket = loopback();
    advertiser(socket).publish({ name: 'proxy-1', port: 46001, txt: simulatedProxyTxt({ mac: '000000000001' }) });
    const started = Date.now();
    const found = await discoverProxies({ ...socket, timeout: 300 });
    const elapsed = Date.now() - started;
    expect(found.map((p) => p.name)).toEqual(['proxy-1']);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(300 + AT_ONCE_MS);
  });

  it('discovery - discoverProxies rejects with the abort reason', async () => {
    const controller = new AbortController();
    const found = discoverProxies({ ...loopback(), timeout: 5000, signal: controller.signal });
    setTimeout(() => controller.abort(new Error('stop')), 50);
    await expect(found).rejects.toThrow('stop');
  });

  it('discovery - an abort signal ends the iterator', async () => {
    const socket = loopback();
    advertiser(socket).publish({ name: 'proxy-1', port: 46001, txt: simulatedProxyTxt({ mac: '000000000001' }) });
    const controller = new AbortController();
    const seen: string[] = [];
    const d = discovery(socket);
    for await (const event of d.events({ signal: controller.signal })) {
      seen.push(event.type);
      controller.abort();
    }
    expect(seen).toEqual(['up']);
  });

  it('discovery - close() ends the streams and leaves no socket or timer open', async () => {
    const socket = loopback();
    const ad = new MdnsAdvertiser(socket);
    ad.publish({ name: 'proxy-1', port: 46001, txt: simulatedProxyTxt({ mac: '000000000001' }) });
    const d = new MdnsDiscovery({ ...socket, requeryIntervalMs: 100 });
    const events = d.events();
    await nextUp(events);
    await Promise.all([d.close(), d.close()]);
    expect(await events.next()).toEqual({ value: undefined, done: true });
    await ad.close();
    await ad.close();
    expect(() => ad.publish({ name: 'late', port: 1, txt: {} })).toThrow(InvalidArgumentError);
    // The global leak guard fails this test if a UDP socket or timer survived.
  });

  it('discovery - a socket that cannot bind fails the stream instead of crashing', async () => {
    // 203.0.113.0/24 (TEST-NET-3) is never a local address, so bind() fails with EADDRNOTAVAIL; nothing is sent.
    const d = discovery({ ...loopback(), bind: '203.0.113.77' });
    await expect(d.events().next()).rejects.toMatchObject({ code: 'EADDRNOTAVAIL' });
    expect(d.error).toBeInstanceOf(Error);
  });

  it('discovery - the advertiser refuses anything but loopback', () => {
    expect(() => new MdnsAdvertiser({ interface: '0.0.0.0', port: 5353 })).toThrow(InvalidArgumentError);
    expect(() => new MdnsAdvertiser({ interface: '192.168.1.10', port: 40_000 })).toThrow(InvalidArgumentError);
  });
});
