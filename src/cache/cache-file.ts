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
  /** The pool's id of the proxy when the bond was made (matched by name when no Bluetooth MAC is known). */
  readonly proxy: string;
  /** The proxy's Bluetooth MAC (12 lower-case hex digits): names it across renames and address changes. */
  readonly bluetoothMac?: string | undefined;
  /** ms since epoch. */
  readonly savedAt: number;
}

/** The file's contents, checked: anything of the wrong shape is left out. */
export interface CacheFileData {
  readonly entries: Map<string, GattCacheEntry>;
  readonly bonds: Map<string, BondEntry>;
  /** Parts left out, for the warning. */
  readonly skipped: string[];
}

/** One writer's changes since its last write: keys set (with their values) or deleted, devices deleted on every proxy. */
export interface CacheChanges {
  readonly entries: ReadonlyMap<string, GattCacheEntry | undefined>;
  readonly bonds: ReadonlyMap<string, BondEntry | undefined>;
  readonly deletedDevices: ReadonlySet<string>;
}

/** `AA:BB:CC:DD:EE:FF` for a MAC in any spelling (colons, dashes, none; any case), else the text upper-cased. */
export function deviceKey(device: string): string {
  const hex = device.replace(/[:-]/g, '').toUpperCase();
  return /^[0-9A-F]{12}$/.test(hex) ? hex.replace(/(..)(?!$)/g, '$1:') : device.toUpperCase();
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Parses a cache file's text; throws SyntaxError for text that is not JSON (a truncated write, say). */
export function parseCacheFile(text: string): CacheFileData {
  const data: unknown = JSON.parse(text);
  const entries = new Map<string, GattCacheEntry>();
  const bonds = new Map<string, BondEntry>();
  const skipped: string[] = [];
  // Version 1 gained `bonds` without a bump: older readers ignore the field, newer ones read old files.
  if (!isRecord(data) || data.version !== 1) return { entries, bonds, skipped: ['the whole file (not version 1)'] };
  if (data.entries !== undefined && !isRecord(data.entries)) skipped.push('entries (not an object)');
  for (const [key, entry] of Object.entries(isRecord(data.entries) ? data.entries : {})) {
    const ok = isRecord(entry) && Array.isArray(entry.services) && typeof entry.mtu === 'number' && key.includes('|');
    if (ok) entries.set(key, { services: entry.services as GattService[], mtu: entry.mtu as number, savedAt: Number(entry.savedAt) || 0 });
    else skipped.push(`entry ${JSON.stringify(key)}`);
  }
  if (data.bonds !== undefined && !isRecord(data.bonds)) skipped.push('bonds (not an object keyed by device MAC)');
  for (const [device, bond] of Object.entries(isRecord(data.bonds) ? data.bonds : {})) {
    const key = deviceKey(device);
    if (!isRecord(bond) || typeof bond.proxy !== 'string' || !/^[0-9A-F:]{17}$/.test(key)) {
      skipped.push(`bond ${JSON.stringify(device)}`);
      continue;
    }
    const bluetoothMac = typeof bond.bluetoothMac === 'string' ? bond.bluetoothMac : undefined;
    bonds.set(key, { proxy: bond.proxy, ...(bluetoothMac ? { bluetoothMac } : {}), savedAt: Number(bond.savedAt) || 0 });
  }
  return { entries, bonds, skipped };
}

/** Writes in this process, chained per file: two caches on one file never interleave their read-merge-write. */
const chains = new Map<string, Promise<void>>();

/**
 * Applies one writer's changes to what the file holds now (another writer's keys stay, per key), bounded to
 * `max` newest per kind, and replaces the file atomically (temp file + rename). A file that is missing or
 * unreadable gets `full`, the writer's whole state.
 */
export function writeMerged(
  file: string,
  changes: CacheChanges,
  full: () => { entries: Map<string, GattCacheEntry>; bonds: Map<string, BondEntry> },
  max: number,
): Promise<void> {
  const previous = chains.get(file) ?? Promise.resolve();
  const next = previous.then(async () => {
    let current: { entries: Map<string, GattCacheEntry>; bonds: Map<string, BondEntry> };
    try {
      current = parseCacheFile(await readFile(file, 'utf8'));
    } catch {
      current = full();
    }
    const { entries, bonds } = current;
    for (const device of changes.deletedDevices) {
      for (const key of [...entries.keys()]) if (key.startsWith(`${device}|`)) entries.delete(key);
    }
    for (const [key, entry] of changes.entries) entry === undefined ? entries.delete(key) : entries.set(key, entry);
    for (const [key, bond] of changes.bonds) bond === undefined ? bonds.delete(key) : bonds.set(key, bond);
    const text = JSON.stringify({
      version: 1,
      entries: Object.fromEntries(newest(entries, max)),
      bonds: Object.fromEntries(newest(bonds, max)),
    });
    await mkdir(dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, text);
    await rename(tmp, file);
  });
  const settled = next.catch(() => {});
  chains.set(file, settled);
  void settled.then(() => {
    if (chains.get(file) === settled) chains.delete(file);
  });
  return next;
}

function newest<T extends { savedAt: number }>(items: Map<string, T>, max: number): Array<[string, T]> {
  const all = [...items];
  return all.length <= max ? all : all.sort((a, b) => b[1].savedAt - a[1].savedAt).slice(0, max);
}
