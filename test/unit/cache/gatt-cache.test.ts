import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { GattService } from '../../../src/bluetooth/gatt.js';
import { CACHE_FILE_WARNING, GattCache } from '../../../src/cache/gatt-cache.js';

const SERVICES: GattService[] = [
  {
    uuid: '00001800-0000-1000-8000-00805f9b34fb',
    handle: 1,
    characteristics: [{ uuid: '00002a00-0000-1000-8000-00805f9b34fb', handle: 3, properties: 2, descriptors: [] }],
  },
];

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempFile(): Promise<{ dir: string; file: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'gatt-cache-'));
  dirs.push(dir);
  return { dir, file: join(dir, 'cache.json') };
}

/** The next process warning with the cache's code. */
function nextCacheWarning(): Promise<Error> {
  return new Promise((resolve) => {
    const listener = (warning: Error & { code?: string }): void => {
      if (warning.code !== CACHE_FILE_WARNING) return;
      process.off('warning', listener);
      resolve(warning);
    };
    process.on('warning', listener);
  });
}

describe('cache/gatt-cache', () => {
  it('gatt-cache - keys entries by device and proxy, case-insensitively for the MAC', () => {
    const cache = new GattCache();
    cache.set('aa:bb:cc:dd:ee:ff', 'proxy-1', SERVICES, 247);
    expect(cache.get('AA:BB:CC:DD:EE:FF', 'proxy-1')?.mtu).toBe(247);
    expect(cache.get('AA:BB:CC:DD:EE:FF', 'proxy-2')).toBeUndefined();
  });

  it('gatt-cache - evicts the least recently used entry', () => {
    const cache = new GattCache({ maxEntries: 2 });
    cache.set('A', 'p', SERVICES, 23);
    cache.set('B', 'p', SERVICES, 23);
    cache.get('A', 'p');
    cache.set('C', 'p', SERVICES, 23);
    expect(cache.get('B', 'p')).toBeUndefined();
    expect(cache.get('A', 'p')).toBeDefined();
    expect(cache.size).toBe(2);
  });

  it('gatt-cache - delete without a proxy forgets the device on every proxy', () => {
    const cache = new GattCache();
    cache.set('A', 'p1', SERVICES, 23);
    cache.set('A', 'p2', SERVICES, 23);
    cache.set('B', 'p1', SERVICES, 23);
    cache.delete('a');
    expect(cache.size).toBe(1);
  });

  it('gatt-cache - persists to the named file and loads it back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gatt-cache-'));
    try {
      const file = join(dir, 'nested', 'cache.json');
      const cache = new GattCache({ file });
      cache.set('AA:BB:CC:DD:EE:FF', 'proxy-1', SERVICES, 185);
      await cache.flush();
      expect(JSON.parse(await readFile(file, 'utf8')).version).toBe(1);
      const loaded = new GattCache({ file });
      await loaded.load();
      expect(loaded.get('AA:BB:CC:DD:EE:FF', 'proxy-1')).toMatchObject({ mtu: 185, services: SERVICES });
      await new GattCache({ file: join(dir, 'missing.json') }).load();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("gatt-cache - two writers on one file keep each other's bonds and entries; a delete by one is not undone by the other", async () => {
    const { file } = await tempFile();
    const a = new GattCache({ file });
    await a.load();
    const b = new GattCache({ file });
    await b.load();
    a.setBond('AA:AA:AA:AA:AA:01', 'proxy-1');
    a.set('AA:AA:AA:AA:AA:01', 'proxy-1', SERVICES, 23);
    await a.flush();
    b.setBond('AA:AA:AA:AA:AA:02', 'proxy-2');
    await b.flush();
    let data = JSON.parse(await readFile(file, 'utf8'));
    expect(Object.keys(data.bonds).sort()).toEqual(['AA:AA:AA:AA:AA:01', 'AA:AA:AA:AA:AA:02']);
    expect(Object.keys(data.entries)).toEqual(['AA:AA:AA:AA:AA:01|proxy-1']);
    // c loads both; a unpairs device 01; c's next write (another device) must not bring 01's bond back.
    const c = new GattCache({ file });
    await c.load();
    a.deleteBond('aa:aa:aa:aa:aa:01');
    await a.flush();
    c.setBond('AA:AA:AA:AA:AA:03', 'proxy-1');
    await c.flush();
    data = JSON.parse(await readFile(file, 'utf8'));
    expect(Object.keys(data.bonds).sort()).toEqual(['AA:AA:AA:AA:AA:02', 'AA:AA:AA:AA:AA:03']);
  });

  it('gatt-cache - a truncated file is set aside with a warning and the cache starts empty (no SyntaxError)', async () => {
    const { dir, file } = await tempFile();
    await writeFile(file, '{"version":1,"entries":{},"bonds":{"AA:AA:AA:AA:AA:01":{"proxy":"p1"');
    const warned = nextCacheWarning();
    const cache = new GattCache({ file });
    await cache.load();
    expect((await warned).message).toContain('is not valid JSON');
    expect(cache.bondOf('AA:AA:AA:AA:AA:01')).toBeUndefined();
    expect((await readdir(dir)).filter((name) => name.startsWith('cache.json.corrupt-'))).toHaveLength(1);
    // The next write starts a good file.
    cache.setBond('AA:AA:AA:AA:AA:02', 'p2');
    await cache.flush();
    expect(Object.keys(JSON.parse(await readFile(file, 'utf8')).bonds)).toEqual(['AA:AA:AA:AA:AA:02']);
  });

  it('gatt-cache - parts of the wrong shape are left out with a warning: bonds as an array, entries that are no entries', async () => {
    const { file } = await tempFile();
    const good = { services: SERVICES, mtu: 185, savedAt: 1 };
    await writeFile(file, JSON.stringify({ version: 1, entries: { 'X|p': 5, 'AA:BB:CC:DD:EE:FF|p': good }, bonds: [{ proxy: 'p' }] }));
    const warned = nextCacheWarning();
    const cache = new GattCache({ file });
    await cache.load();
    expect((await warned).message).toMatch(/left out entry "X\|p", bonds \(not an object keyed by device MAC\)/);
    expect(cache.bondOf('0')).toBeUndefined();
    expect(cache.get('X', 'p')).toBeUndefined();
    expect(cache.get('aa-bb-cc-dd-ee-ff', 'p')?.mtu).toBe(185);
  });

  it("gatt-cache - bonds are found by any MAC spelling and keep the proxy's Bluetooth MAC", () => {
    const cache = new GattCache();
    cache.setBond('C0:FF:EE:00:00:01', 'proxy-1', 'AA:BB:CC:00:11:22');
    expect(cache.bondOf('c0ffee000001')).toMatchObject({ proxy: 'proxy-1', bluetoothMac: 'aabbcc001122' });
    expect(cache.bondOf('c0-ff-ee-00-00-01')?.proxy).toBe('proxy-1');
    cache.deleteBond('C0FFEE000001');
    expect(cache.bondOf('C0:FF:EE:00:00:01')).toBeUndefined();
  });
});
