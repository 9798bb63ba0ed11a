import { inspect } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import type { BluetoothLEAdvertisementResponse } from '../gen/api_pb.js';
import { formatMac } from './address.js';
import { normalizeUuid, uuid16At, uuid32At, uuid128At } from './uuid.js';

/** Fields decoded from the AD structures of one advertising payload. Maps and arrays are read-only views. */
export interface AdvertisementData {
  readonly localName?: string | undefined;
  /** True when only a Shortened Local Name (AD 0x08) was present, false for a Complete Local Name (0x09). */
  readonly shortName?: boolean | undefined;
  readonly flags?: number | undefined;
  /** TX power level in dBm (AD 0x0A, signed). */
  readonly txPower?: number | undefined;
  readonly appearance?: number | undefined;
  /** Full lowercase UUIDs from the 16/32/128-bit service class UUID lists, complete or not, without duplicates. */
  readonly serviceUuids: readonly string[];
  /** Service data keyed by full lowercase UUID; values are the bytes after the UUID. */
  readonly serviceData: ReadonlyMap<string, Uint8Array>;
  /** Manufacturer-specific data keyed by company id; values are the bytes after the id. */
  readonly manufacturerData: ReadonlyMap<number, Uint8Array>;
}

/** One advertisement report from a proxy. */
export interface Advertisement extends AdvertisementData {
  /** 48-bit device address (§6.2). */
  readonly address: number;
  /** `AA:BB:CC:DD:EE:FF` form of `address`. */
  readonly mac: string;
  /** 0 public, 1 random, 2/3 resolvable private (see AddressType). */
  readonly addressType: number;
  readonly rssi: number;
  /**
   * The AD bytes as received (empty for legacy message 67). Like the service and manufacturer data values,
   * a view into a block shared with other reports of the same batches: `slice()` what you keep for long.
   */
  readonly raw: Uint8Array;
  /** Receive time, ms since the epoch. */
  readonly timestamp: number;
}

/** AD structure types this parser understands (Bluetooth Assigned Numbers, "Common Data Types"). */
export const AdType = {
  FLAGS: 0x01,
  UUID16_INCOMPLETE: 0x02,
  UUID16_COMPLETE: 0x03,
  UUID32_INCOMPLETE: 0x04,
  UUID32_COMPLETE: 0x05,
  UUID128_INCOMPLETE: 0x06,
  UUID128_COMPLETE: 0x07,
  SHORT_LOCAL_NAME: 0x08,
  COMPLETE_LOCAL_NAME: 0x09,
  TX_POWER: 0x0a,
  SERVICE_DATA_UUID16: 0x16,
  APPEARANCE: 0x19,
  SERVICE_DATA_UUID32: 0x20,
  SERVICE_DATA_UUID128: 0x21,
  MANUFACTURER_DATA: 0xff,
} as const;

class FrozenEmptyMap<K, V> extends Map<K, V> {
  override set(): this {
    throw new TypeError('This map is read-only');
  }
  override delete(): boolean {
    throw new TypeError('This map is read-only');
  }
  override clear(): void {
    throw new TypeError('This map is read-only');
  }
}

// Most advertisements carry no service data or no manufacturer data; sharing one empty map avoids two allocations each.
const NO_SERVICE_DATA: ReadonlyMap<string, Uint8Array> = Object.freeze(new FrozenEmptyMap<string, Uint8Array>());
const NO_MANUFACTURER_DATA: ReadonlyMap<number, Uint8Array> = Object.freeze(new FrozenEmptyMap<number, Uint8Array>());
const NO_UUIDS: readonly string[] = Object.freeze([]);
const NO_BYTES = new Uint8Array(0);

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** Mutable twin of AdvertisementData that the parser fills; fields are declared up front so every record shares one shape. */
class AdvertisementFields implements AdvertisementData {
  localName: string | undefined = undefined;
  shortName: boolean | undefined = undefined;
  flags: number | undefined = undefined;
  txPower: number | undefined = undefined;
  appearance: number | undefined = undefined;
  serviceUuids: readonly string[] = NO_UUIDS;
  serviceData: ReadonlyMap<string, Uint8Array> = NO_SERVICE_DATA;
  manufacturerData: ReadonlyMap<number, Uint8Array> = NO_MANUFACTURER_DATA;
}

// Presence bits of the AD structures whose values are built on first read (strings, arrays, maps).
const HAS_NAME = 1;
const HAS_UUIDS = 2;
const HAS_SERVICE_DATA = 4;
const HAS_MANUFACTURER_DATA = 8;

/**
 * An advertisement report. The constructor walks the AD structures once, keeping the numeric fields and
 * noting which other structures exist; names, UUID lists, maps and the `raw` view are built on first read
 * and cached. Most consumers filter on a few fields, and building every string, Map and view up front cost
 * more than all the rest of the ingest path together (measured: README, "Design decisions").
 */
class AdvertisementRecord implements Advertisement {
  readonly address: number;
  readonly addressType: number;
  readonly rssi: number;
  readonly timestamp: number;
  readonly flags: number | undefined;
  readonly txPower: number | undefined;
  readonly appearance: number | undefined;
  readonly #bytes: Uint8Array;
  readonly #start: number;
  readonly #end: number;
  readonly #present: number;
  #fields: AdvertisementFields | undefined;
  #raw: Uint8Array | undefined;
  #mac: string | undefined;

  constructor(
    address: number,
    rssi: number,
    addressType: number,
    bytes: Uint8Array,
    start: number,
    end: number,
    timestamp: number,
    fields?: AdvertisementFields,
  ) {
    this.address = address;
    this.addressType = addressType;
    this.rssi = rssi;
    this.timestamp = timestamp;
    this.#bytes = bytes;
    this.#start = start;
    this.#end = end;
    this.#fields = fields;
    this.#raw = undefined;
    this.#mac = undefined;
    let flags: number | undefined;
    let txPower: number | undefined;
    let appearance: number | undefined;
    let present = 0;
    // Same walk and stopping rules as parseInto: a zero length ends the data, an overrunning structure is dropped.
    let pos = start;
    while (pos < end) {
      const len = bytes[pos]!;
      if (len === 0) break;
      const next = pos + 1 + len;
      if (next > end) break;
      const at = pos + 2;
      switch (bytes[pos + 1]) {
        case 0x01:
          if (len >= 2) flags = bytes[at]!;
          break;
        case 0x0a:
          if (len >= 2) txPower = (bytes[at]! << 24) >> 24;
          break;
        case 0x19:
          if (len >= 3) appearance = bytes[at]! | (bytes[at + 1]! << 8);
          break;
        case 0x08:
        case 0x09:
          present |= HAS_NAME;
          break;
        case 0x02:
        case 0x03:
        case 0x04:
        case 0x05:
        case 0x06:
        case 0x07:
          present |= HAS_UUIDS;
          break;
        case 0x16:
        case 0x20:
        case 0x21:
          present |= HAS_SERVICE_DATA;
          break;
        case 0xff:
          present |= HAS_MANUFACTURER_DATA;
          break;
      }
      pos = next;
    }
    this.flags = flags;
    this.txPower = txPower;
    this.appearance = appearance;
    // Prebuilt fields (legacy message 67, which has no flags, TX power or appearance) answer every getter.
    this.#present = fields === undefined ? present : HAS_NAME | HAS_UUIDS | HAS_SERVICE_DATA | HAS_MANUFACTURER_DATA;
  }

  // Formatting costs about as much as parsing a whole payload, so only consumers that read it pay for it.
  get mac(): string {
    if (this.#mac === undefined) this.#mac = formatMac(this.address);
    return this.#mac;
  }

  get raw(): Uint8Array {
    if (this.#raw === undefined) {
      const bytes = this.#bytes;
      this.#raw = this.#start === 0 && this.#end === bytes.length ? bytes : bytes.subarray(this.#start, this.#end);
    }
    return this.#raw;
  }

  get localName(): string | undefined {
    return this.#present & HAS_NAME ? this.#built().localName : undefined;
  }

  get shortName(): boolean | undefined {
    return this.#present & HAS_NAME ? this.#built().shortName : undefined;
  }

  get serviceUuids(): readonly string[] {
    return this.#present & HAS_UUIDS ? this.#built().serviceUuids : NO_UUIDS;
  }

  get serviceData(): ReadonlyMap<string, Uint8Array> {
    return this.#present & HAS_SERVICE_DATA ? this.#built().serviceData : NO_SERVICE_DATA;
  }

  get manufacturerData(): ReadonlyMap<number, Uint8Array> {
    return this.#present & HAS_MANUFACTURER_DATA ? this.#built().manufacturerData : NO_MANUFACTURER_DATA;
  }

  /** Plain-data form (hex bytes, maps as objects) for JSON.stringify and logs. */
  toJSON(): AdvertisementJson {
    return {
      address: this.address,
      mac: this.mac,
      addressType: this.addressType,
      rssi: this.rssi,
      timestamp: this.timestamp,
      ...(this.localName === undefined ? {} : { localName: this.localName, shortName: this.shortName }),
      ...(this.flags === undefined ? {} : { flags: this.flags }),
      ...(this.txPower === undefined ? {} : { txPower: this.txPower }),
      ...(this.appearance === undefined ? {} : { appearance: this.appearance }),
      serviceUuids: [...this.serviceUuids],
      serviceData: Object.fromEntries([...this.serviceData].map(([uuid, bytes]) => [uuid, toHex(bytes)])),
      manufacturerData: Object.fromEntries([...this.manufacturerData].map(([company, bytes]) => [String(company), toHex(bytes)])),
      raw: toHex(this.raw),
    };
  }

  [inspect.custom](): AdvertisementJson {
    return this.toJSON();
  }

  #built(): AdvertisementFields {
    if (this.#fields === undefined) {
      const fields = new AdvertisementFields();
      parseInto(fields, this.#bytes, this.#start, this.#end);
      this.#fields = fields;
    }
    return this.#fields;
  }
}

/** JSON form of an Advertisement (`toJSON()`): bytes as lowercase hex, manufacturer ids as decimal keys. */
export interface AdvertisementJson {
  address: number;
  mac: string;
  addressType: number;
  rssi: number;
  timestamp: number;
  localName?: string | undefined;
  shortName?: boolean | undefined;
  flags?: number;
  txPower?: number;
  appearance?: number;
  serviceUuids: string[];
  serviceData: Record<string, string>;
  manufacturerData: Record<string, string>;
  raw: string;
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Parses the AD structures of an advertising payload (advertisement followed by scan response, ≤ 62 bytes). */
export function parseAdvertisementData(data: Uint8Array): AdvertisementData {
  const fields = new AdvertisementFields();
  parseInto(fields, data, 0, data.length);
  return fields;
}

/**
 * Builds an Advertisement from one raw report whose AD bytes are `bytes[start, end)` (default: all of `bytes`).
 * The bytes are kept by reference, not copied: they must not change afterwards.
 */
export function parseRawAdvertisement(
  address: number,
  rssi: number,
  addressType: number,
  bytes: Uint8Array,
  timestamp: number,
  start = 0,
  end: number = bytes.length,
): Advertisement {
  return new AdvertisementRecord(address, rssi, addressType, bytes, start, end, timestamp);
}

/** Converts a legacy parsed advertisement (message 67, firmware before 2025.8) into an Advertisement with empty `raw`. */
export function fromLegacyAdvertisement(msg: BluetoothLEAdvertisementResponse, timestamp: number): Advertisement {
  const fields = new AdvertisementFields();
  if (msg.name.length > 0) fields.localName = decodeName(msg.name, 0, msg.name.length);
  if (msg.serviceUuids.length > 0) {
    const uuids: string[] = [];
    for (const text of msg.serviceUuids) {
      const uuid = legacyUuid(text);
      if (!uuids.includes(uuid)) uuids.push(uuid);
    }
    fields.serviceUuids = uuids;
  }
  if (msg.serviceData.length > 0) {
    const map = new Map<string, Uint8Array>();
    for (const entry of msg.serviceData) map.set(legacyUuid(entry.uuid), legacyBytes(entry));
    fields.serviceData = map;
  }
  if (msg.manufacturerData.length > 0) {
    const map = new Map<number, Uint8Array>();
    for (const entry of msg.manufacturerData) {
      const company = Number.parseInt(entry.uuid, 16);
      if (Number.isInteger(company) && company >= 0 && company <= 0xffff) map.set(company, legacyBytes(entry));
    }
    if (map.size > 0) fields.manufacturerData = map;
  }
  return new AdvertisementRecord(msg.address, msg.rssi, msg.addressType, NO_BYTES, 0, 0, timestamp, fields);
}

function legacyUuid(text: string): string {
  try {
    return normalizeUuid(text);
  } catch {
    // Old firmware is the only sender; keep an odd string rather than dropping the entry.
    return text.toLowerCase();
  }
}

function legacyBytes(entry: { legacyData: readonly number[]; data: Uint8Array }): Uint8Array {
  return entry.data.length > 0 || entry.legacyData.length === 0 ? entry.data : Uint8Array.from(entry.legacyData);
}

function parseInto(target: AdvertisementFields, data: Uint8Array, from: number, end: number): void {
  let pos = from;
  let uuids: string[] | undefined;
  let serviceData: Map<string, Uint8Array> | undefined;
  let manufacturerData: Map<number, Uint8Array> | undefined;
  while (pos < end) {
    const len = data[pos]!;
    // A zero length ends the significant part; the rest is padding.
    if (len === 0) break;
    const next = pos + 1 + len;
    // A structure running past the end is a truncated tail from the radio: keep what parsed so far.
    if (next > end) break;
    const start = pos + 2;
    const size = len - 1;
    switch (data[pos + 1]) {
      case 0x01:
        if (size >= 1) target.flags = data[start]!;
        break;
      case 0x02:
      case 0x03:
        for (let i = start; i + 2 <= next; i += 2) uuids = addUuid(uuids, uuid16At(data, i));
        break;
      case 0x04:
      case 0x05:
        for (let i = start; i + 4 <= next; i += 4) uuids = addUuid(uuids, uuid32At(data, i));
        break;
      case 0x06:
      case 0x07:
        for (let i = start; i + 16 <= next; i += 16) uuids = addUuid(uuids, uuid128At(data, i));
        break;
      case 0x08:
        if (size > 0 && target.localName === undefined) {
          target.localName = decodeName(data, start, next);
          target.shortName = true;
        }
        break;
      case 0x09:
        if (size > 0) {
          target.localName = decodeName(data, start, next);
          target.shortName = false;
        }
        break;
      case 0x0a:
        if (size >= 1) target.txPower = (data[start]! << 24) >> 24;
        break;
      case 0x16:
        if (size >= 2) (serviceData ??= new Map()).set(uuid16At(data, start), data.subarray(start + 2, next));
        break;
      case 0x19:
        if (size >= 2) target.appearance = data[start]! | (data[start + 1]! << 8);
        break;
      case 0x20:
        if (size >= 4) (serviceData ??= new Map()).set(uuid32At(data, start), data.subarray(start + 4, next));
        break;
      case 0x21:
        if (size >= 16) (serviceData ??= new Map()).set(uuid128At(data, start), data.subarray(start + 16, next));
        break;
      case 0xff:
        if (size >= 2) (manufacturerData ??= new Map()).set(data[start]! | (data[start + 1]! << 8), data.subarray(start + 2, next));
        break;
    }
    pos = next;
  }
  if (uuids !== undefined) target.serviceUuids = uuids;
  if (serviceData !== undefined) target.serviceData = serviceData;
  if (manufacturerData !== undefined) target.manufacturerData = manufacturerData;
}

function addUuid(list: string[] | undefined, uuid: string): string[] {
  if (list === undefined) return [uuid];
  if (!list.includes(uuid)) list.push(uuid);
  return list;
}

function decodeName(data: Uint8Array, start: number, end: number): string {
  let any = 0;
  for (let i = start; i < end; i++) any |= data[i]!;
  if (any >= 0x80) return utf8.decode(data.subarray(start, end));
  // ASCII (nearly every name): a few multi-argument fromCharCode calls beat both per-byte concatenation and TextDecoder.
  let text = '';
  let i = start;
  for (; i + 8 <= end; i += 8) {
    text += String.fromCharCode(data[i]!, data[i + 1]!, data[i + 2]!, data[i + 3]!, data[i + 4]!, data[i + 5]!, data[i + 6]!, data[i + 7]!);
  }
  if (i + 4 <= end) {
    text += String.fromCharCode(data[i]!, data[i + 1]!, data[i + 2]!, data[i + 3]!);
    i += 4;
  }
  if (i + 2 <= end) {
    text += String.fromCharCode(data[i]!, data[i + 1]!);
    i += 2;
  }
  if (i < end) text += String.fromCharCode(data[i]!);
  return text;
}

/** A device's advertisements and scan responses merged field by field. */
export interface MergedDevice extends AdvertisementData {
  readonly address: number;
  readonly mac: string;
  /** From the newest report. */
  readonly addressType: number;
  /** From the newest report. */
  readonly rssi: number;
  /** Time of the newest report, ms since the epoch. */
  readonly timestamp: number;
}

/** Options of DeviceTracker. */
export interface DeviceTrackerOptions {
  /** Most devices kept; the least recently heard is evicted first. */
  maxDevices?: number;
}

// A busy location has a few hundred devices in range; 2048 leaves room for address-rotating phones without unbounded growth.
const DEFAULT_MAX_DEVICES = 2048;

/**
 * Merges advertisement and scan-response fields per address (a report usually carries only one of them):
 * newer values override per field and per map key, names persist (a complete name beats a shortened one),
 * service UUIDs accumulate. Returned devices are immutable snapshots. Bounded by LRU eviction.
 */
export class DeviceTracker {
  readonly maxDevices: number;
  readonly #devices = new Map<number, MergedDevice>();

  constructor(options: DeviceTrackerOptions = {}) {
    const max = options.maxDevices ?? DEFAULT_MAX_DEVICES;
    if (!Number.isInteger(max) || max < 1) throw new InvalidArgumentError(`maxDevices must be a positive integer, got ${max}`);
    this.maxDevices = max;
  }

  /** Number of devices currently tracked. */
  get size(): number {
    return this.#devices.size;
  }

  /** Merges one report into its device and returns the device's new snapshot. */
  update(ad: Advertisement): MergedDevice {
    const devices = this.#devices;
    const prev = devices.get(ad.address);
    let merged: MergedDevice;
    if (prev === undefined) {
      merged = {
        address: ad.address,
        mac: ad.mac,
        addressType: ad.addressType,
        rssi: ad.rssi,
        timestamp: ad.timestamp,
        localName: ad.localName,
        shortName: ad.shortName,
        flags: ad.flags,
        txPower: ad.txPower,
        appearance: ad.appearance,
        serviceUuids: ad.serviceUuids,
        serviceData: ad.serviceData,
        manufacturerData: ad.manufacturerData,
      };
      if (devices.size >= this.maxDevices) devices.delete(devices.keys().next().value!);
    } else {
      // A shortened name never replaces a complete one (scan responses often carry the complete name).
      const keepName = ad.localName === undefined || (ad.shortName === true && prev.localName !== undefined && prev.shortName === false);
      merged = {
        address: ad.address,
        mac: prev.mac,
        addressType: ad.addressType,
        rssi: ad.rssi,
        timestamp: ad.timestamp,
        localName: keepName ? prev.localName : ad.localName,
        shortName: keepName ? prev.shortName : ad.shortName,
        flags: ad.flags ?? prev.flags,
        txPower: ad.txPower ?? prev.txPower,
        appearance: ad.appearance ?? prev.appearance,
        serviceUuids: unionUuids(prev.serviceUuids, ad.serviceUuids),
        serviceData: mergeMaps(prev.serviceData, ad.serviceData),
        manufacturerData: mergeMaps(prev.manufacturerData, ad.manufacturerData),
      };
      // Re-inserting moves the device to the most-recently-heard end of the map.
      devices.delete(ad.address);
    }
    devices.set(ad.address, merged);
    return merged;
  }

  /** The merged device for an address, if tracked. */
  get(address: number): MergedDevice | undefined {
    return this.#devices.get(address);
  }

  /** All tracked devices, least recently heard first. */
  devices(): MergedDevice[] {
    return [...this.#devices.values()];
  }

  /** Forgets one device; true if it was tracked. */
  delete(address: number): boolean {
    return this.#devices.delete(address);
  }

  /** Forgets every device. */
  clear(): void {
    this.#devices.clear();
  }

  /** Removes and returns the devices last heard more than `olderThanMs` before `now`. */
  prune(olderThanMs: number, now: number = Date.now()): MergedDevice[] {
    const cutoff = now - olderThanMs;
    const removed: MergedDevice[] = [];
    for (const [address, device] of this.#devices) {
      if (device.timestamp < cutoff) {
        removed.push(device);
        this.#devices.delete(address);
      }
    }
    return removed;
  }
}

function unionUuids(prev: readonly string[], next: readonly string[]): readonly string[] {
  if (next.length === 0 || next === prev) return prev;
  let out: string[] | undefined;
  for (const uuid of next) {
    if (prev.includes(uuid) || out?.includes(uuid)) continue;
    out ??= [...prev];
    out.push(uuid);
  }
  return out ?? prev;
}

function mergeMaps<K>(prev: ReadonlyMap<K, Uint8Array>, next: ReadonlyMap<K, Uint8Array>): ReadonlyMap<K, Uint8Array> {
  if (next.size === 0 || next === prev) return prev;
  if (prev.size === 0) return next;
  const out = new Map(prev);
  for (const [key, value] of next) out.set(key, value);
  return out;
}
