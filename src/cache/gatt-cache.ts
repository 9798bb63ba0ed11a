import { readFile, rename } from 'node:fs/promises';
import type { GattService } from '../bluetooth/gatt.js';
import { type BondEntry, deviceKey, type GattCacheEntry, parseCacheFile, writeMerged } from './cache-file.js';

export type { BondEntry, GattCacheEntry } from './cache-file.js';

/** Options of the cache. */
export interface GattCacheOptions {
  /** Most entries kept in memory (least recently used are evicted). */
  maxEntries?: number;
  /** JSON file to persist entries in; loaded by `load()`, written after each change. */
  file?: string;
}

/** Enough for a large home: a few hundred connectable devices times a handful of proxies. */
const DEFAULT_MAX_ENTRIES = 1024;
/** process.emitWarning code of a cache file that could not be read as it was. */
export const CACHE_FILE_WARNING = 'ESPHOME_BLE_CACHE_FILE';

/**
 * GATT services + MTU per (device, proxy) — handles can differ between proxies — as a bounded LRU, and the proxy
 * each device was paired through (the pool routes there first), optionally persisted to a JSON file the user names.
 * Several caches (processes) may share the file: each write applies only its own changes to what the file holds.
 */
export class GattCache {
  readonly #entries = new Map<string, GattCacheEntry>();
  readonly #bonds = new Map<string, BondEntry>();
  readonly #max: number;
  readonly #file: string | undefined;
  /** Changes not written yet (undefined = deleted). */
  #changedEntries = new Map<string, GattCacheEntry | undefined>();
  #changedBonds = new Map<string, BondEntry | undefined>();
  #deletedDevices = new Set<string>();
  #writing: Promise<void> = Promise.resolve();

  constructor(options: GattCacheOptions = {}) {
    this.#max = Math.max(1, options.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.#file = options.file;
  }

  /** Number of entries. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Loads the persisted file (missing file = empty cache). A file that is not JSON (a write cut short) is set aside
   * as `<file>.corrupt-<ms>` and the cache starts empty; parts of the wrong shape are left out. Both are reported
   * with process.emitWarning (code ESPHOME_BLE_CACHE_FILE), never thrown: a cache is not worth failing a start for.
   */
  async load(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    let data: ReturnType<typeof parseCacheFile>;
    try {
      data = parseCacheFile(text);
    } catch (error) {
      const aside = `${file}.corrupt-${Date.now()}`;
      await rename(file, aside).catch(() => {});
      warn(`GATT cache file ${file} is not valid JSON (${(error as Error).message}); set aside as ${aside}, starting empty`);
      return;
    }
    if (data.skipped.length > 0)
      warn(`GATT cache file ${file}: left out ${data.skipped.slice(0, 5).join(', ')}${data.skipped.length > 5 ? ', ...' : ''}`);
    for (const [key, entry] of data.entries) this.#entries.set(key, entry);
    for (const [device, bond] of data.bonds) this.#bonds.set(device, bond);
    this.#evict();
  }

  /** The proxy `device` (a MAC in any spelling) was paired through, if any. */
  bondOf(device: string): BondEntry | undefined {
    return this.#bonds.get(deviceKey(device));
  }

  /**
   * Remembers that `device` was paired through `proxy` (the pool's id; `bluetoothMac`, the proxy's Bluetooth MAC,
   * finds it again after a rename or an address change). A later pairing through another proxy replaces it.
   */
  setBond(device: string, proxy: string, bluetoothMac?: string): void {
    const key = deviceKey(device);
    const mac = bluetoothMac?.replace(/[:-]/g, '').toLowerCase();
    const bond: BondEntry = { proxy, ...(mac ? { bluetoothMac: mac } : {}), savedAt: Date.now() };
    this.#bonds.delete(key);
    this.#bonds.set(key, bond);
    this.#changedBonds.set(key, bond);
    this.#evict();
    this.#persist();
  }

  /** Forgets the bond of `device` (after unpairing it). */
  deleteBond(device: string): void {
    const key = deviceKey(device);
    this.#bonds.delete(key);
    this.#changedBonds.set(key, undefined);
    this.#persist();
  }

  /** The entry for `device` via `proxy`, refreshing its recency. */
  get(device: string, proxy: string): GattCacheEntry | undefined {
    const key = cacheKey(device, proxy);
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  /** Stores services and MTU for `device` via `proxy`. */
  set(device: string, proxy: string, services: readonly GattService[], mtu: number): void {
    const key = cacheKey(device, proxy);
    const entry: GattCacheEntry = { services, mtu, savedAt: Date.now() };
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    this.#changedEntries.set(key, entry);
    this.#evict();
    this.#persist();
  }

  /** Forgets `device` via `proxy`, or via every proxy when `proxy` is omitted. */
  delete(device: string, proxy?: string): void {
    if (proxy !== undefined) {
      const key = cacheKey(device, proxy);
      this.#entries.delete(key);
      this.#changedEntries.set(key, undefined);
    } else {
      const prefix = `${deviceKey(device)}|`;
      for (const key of [...this.#entries.keys()]) if (key.startsWith(prefix)) this.#entries.delete(key);
      for (const key of [...this.#changedEntries.keys()]) if (key.startsWith(prefix)) this.#changedEntries.delete(key);
      this.#deletedDevices.add(deviceKey(device));
    }
    this.#persist();
  }

  /** Waits for pending file writes. */
  async flush(): Promise<void> {
    await this.#writing;
  }

  #evict(): void {
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
    while (this.#bonds.size > this.#max) this.#bonds.delete(this.#bonds.keys().next().value as string);
  }

  #persist(): void {
    const file = this.#file;
    if (file === undefined) return;
    const changes = { entries: this.#changedEntries, bonds: this.#changedBonds, deletedDevices: this.#deletedDevices };
    this.#changedEntries = new Map();
    this.#changedBonds = new Map();
    this.#deletedDevices = new Set();
    const full = () => ({ entries: new Map(this.#entries), bonds: new Map(this.#bonds) });
    // Chained per file and atomic (temp file + rename): a crash never leaves half a file.
    this.#writing = writeMerged(file, changes, full, this.#max);
    this.#writing.catch(() => {});
  }
}

function cacheKey(device: string, proxy: string): string {
  return `${deviceKey(device)}|${proxy}`;
}

function warn(message: string): void {
  process.emitWarning(message, { code: CACHE_FILE_WARNING });
}
