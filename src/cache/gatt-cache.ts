import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { GattService } from '../bluetooth/gatt.js';

/** What we remember about a peripheral as seen through one proxy. */
export interface GattCacheEntry {
  readonly services: readonly GattService[];
  readonly mtu: number;
  /** ms since epoch. */
  readonly savedAt: number;
}

/** The proxy a device was paired through: its bond (long-term key) lives in that proxy's controller only. */
export interface BondEntry {
  /** The pool's id of the proxy. */
  readonly proxy: string;
  /** ms since epoch. */
  readonly savedAt: number;
}

/** Options of the cache. */
export interface GattCacheOptions {
  /** Most entries kept in memory (least recently used are evicted). */
  maxEntries?: number;
  /** JSON file to persist entries in; loaded by `load()`, written after each change. */
  file?: string;
}

/** Enough for a large home: a few hundred connectable devices times a handful of proxies. */
const DEFAULT_MAX_ENTRIES = 1024;

/**
 * GATT services + MTU per (device, proxy) — handles can differ between proxies — as a bounded LRU, and the proxy
 * each device was paired through (the pool routes there first), optionally persisted to a JSON file the user names.
 */
export class GattCache {
  readonly #entries = new Map<string, GattCacheEntry>();
  readonly #bonds = new Map<string, BondEntry>();
  readonly #max: number;
  readonly #file: string | undefined;
  #writing: Promise<void> = Promise.resolve();

  constructor(options: GattCacheOptions = {}) {
    this.#max = Math.max(1, options.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.#file = options.file;
  }

  /** Number of entries. */
  get size(): number {
    return this.#entries.size;
  }

  /** Loads the persisted file (missing file = empty cache). */
  async load(): Promise<void> {
    if (this.#file === undefined) return;
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    // Version 1 gained `bonds` without a bump: older readers ignore the field, newer ones read old files.
    const data = JSON.parse(text) as { version?: number; entries?: Record<string, GattCacheEntry>; bonds?: Record<string, BondEntry> };
    if (data.version !== 1 || data.entries === undefined) return;
    for (const [key, entry] of Object.entries(data.entries)) this.#entries.set(key, entry);
    for (const [device, bond] of Object.entries(data.bonds ?? {})) {
      if (typeof bond?.proxy === 'string') this.#bonds.set(device.toUpperCase(), { proxy: bond.proxy, savedAt: Number(bond.savedAt) || 0 });
    }
    this.#evict();
  }

  /** The proxy `device` was paired through, if any. */
  bondOf(device: string): BondEntry | undefined {
    return this.#bonds.get(device.toUpperCase());
  }

  /** Remembers that `device` was paired through `proxy` (a later pairing through another proxy replaces it). */
  setBond(device: string, proxy: string): void {
    const key = device.toUpperCase();
    this.#bonds.delete(key);
    this.#bonds.set(key, { proxy, savedAt: Date.now() });
    this.#evict();
    this.#persist();
  }

  /** Forgets the bond of `device` (after unpairing it). */
  deleteBond(device: string): void {
    if (this.#bonds.delete(device.toUpperCase())) this.#persist();
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
    this.#entries.delete(key);
    this.#entries.set(key, { services, mtu, savedAt: Date.now() });
    this.#evict();
    this.#persist();
  }

  /** Forgets `device` via `proxy`, or via every proxy when `proxy` is omitted. */
  delete(device: string, proxy?: string): void {
    if (proxy !== undefined) {
      this.#entries.delete(cacheKey(device, proxy));
    } else {
      const prefix = `${device.toUpperCase()}|`;
      for (const key of [...this.#entries.keys()]) if (key.startsWith(prefix)) this.#entries.delete(key);
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
    const snapshot = JSON.stringify({ version: 1, entries: Object.fromEntries(this.#entries), bonds: Object.fromEntries(this.#bonds) });
    // Writes are chained and atomic (temp file + rename) so a crash never leaves half a file.
    this.#writing = this.#writing.then(async () => {
      await mkdir(dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, snapshot);
      await rename(tmp, file);
    });
    this.#writing.catch(() => {});
  }
}

function cacheKey(device: string, proxy: string): string {
  return `${device.toUpperCase()}|${proxy}`;
}
