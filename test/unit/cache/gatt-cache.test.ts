import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { GattService } from '../../../src/bluetooth/gatt.js';
import { GattCache } from '../../../src/cache/gatt-cache.js';

const SERVICES: GattService[] = [
  {
    uuid: '00001800-0000-1000-8000-00805f9b34fb',
    handle: 1,
    characteristics: [{ uuid: '00002a00-0000-1000-8000-00805f9b34fb', handle: 3, properties: 2, descriptors: [] }],
  },
];

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
});
