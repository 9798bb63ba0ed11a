import type { AdvertisementData } from '../bluetooth/advertisement.js';
import { BASE_UUID_SUFFIX } from '../bluetooth/uuid.js';
import { toNobleUuid } from './noble-format.js';

/** One service-data entry of a noble advertisement: `uuid` as the on-air bytes in hex (`fe95`, 4/8/32 digits). */
export interface NobleServiceData {
  uuid: string;
  data: Buffer;
}

/** The `advertisement` object noble hands to `discover` listeners (`peripheral.advertisement`). */
export interface NobleAdvertisement {
  localName: string | undefined;
  txPowerLevel: number | undefined;
  /** The whole Manufacturer Specific Data AD, company id (little-endian) included. */
  manufacturerData: Buffer | undefined;
  serviceData: NobleServiceData[];
  serviceUuids: string[];
  serviceSolicitationUuids: string[];
}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** A fresh advertisement object with noble's initial field values. */
export function emptyNobleAdvertisement(): NobleAdvertisement {
  return {
    localName: undefined,
    txPowerLevel: undefined,
    manufacturerData: undefined,
    serviceData: [],
    serviceUuids: [],
    serviceSolicitationUuids: [],
  };
}

/**
 * Folds the AD structures of one report into `into` the way noble's HCI GAP layer does for a device it has
 * seen before: names, TX power and manufacturer data are replaced, UUIDs are added once, service data is
 * replaced per UUID. Its quirks are kept on purpose, because noble-based libraries depend on its output:
 * 16-bit (and 32-bit solicitation) UUIDs print without zero padding, 32-bit service UUID lists (0x04/0x05)
 * are ignored, the walk stops at a zero length or an overrunning structure. Returns false when noble would
 * drop the whole report (a TX Power Level AD without a value makes its parser throw); fields folded before
 * that structure stay, as they do in noble.
 */
export function foldAdStructures(into: NobleAdvertisement, bytes: Uint8Array): boolean {
  const end = bytes.length;
  let i = 0;
  while (i + 1 < end) {
    const length = bytes[i]!;
    if (length < 1) break;
    if (i + length + 1 > end) break;
    const type = bytes[i + 1]!;
    const at = i + 2;
    const n = length - 1;
    switch (type) {
      case 0x02:
      case 0x03:
        addUuid16s(into.serviceUuids, bytes, at, n);
        break;
      case 0x06:
      case 0x07:
        addUuid128s(into.serviceUuids, bytes, at, n);
        break;
      case 0x08:
      case 0x09:
        into.localName = Buffer.from(bytes.buffer, bytes.byteOffset + at, n).toString('utf8');
        break;
      case 0x0a:
        if (n < 1) return false;
        into.txPowerLevel = (bytes[at]! << 24) >> 24;
        break;
      case 0x14:
        addUuid16s(into.serviceSolicitationUuids, bytes, at, n);
        break;
      case 0x15:
        addUuid128s(into.serviceSolicitationUuids, bytes, at, n);
        break;
      case 0x1f:
        for (let j = 0; j < n - 3; j += 4) {
          const p = at + j;
          const value = (bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16) | (bytes[p + 3]! << 24)) >>> 0;
          addOnce(into.serviceSolicitationUuids, value.toString(16));
        }
        break;
      case 0x16:
      case 0x20:
      case 0x21: {
        const uuidLength = type === 0x16 ? 2 : type === 0x20 ? 4 : 16;
        if (n < uuidLength) break;
        setServiceData(into.serviceData, reversedHex(bytes, at, uuidLength), Buffer.from(bytes.subarray(at + uuidLength, at + n)));
        break;
      }
      case 0xff:
        into.manufacturerData = Buffer.from(bytes.subarray(at, at + n));
        break;
    }
    i += length + 1;
  }
  return true;
}

/**
 * Folds already-parsed fields (legacy message 67 carries no AD bytes) into `into`, spelled as noble would
 * spell the same values had it parsed their AD structures.
 */
export function foldAdvertisementData(into: NobleAdvertisement, ad: AdvertisementData): void {
  if (ad.localName !== undefined) into.localName = ad.localName;
  if (ad.txPower !== undefined) into.txPowerLevel = ad.txPower;
  for (const uuid of ad.serviceUuids) addOnce(into.serviceUuids, toNobleUuid(uuid));
  for (const [uuid, data] of ad.serviceData) setServiceData(into.serviceData, serviceDataUuid(uuid), Buffer.from(data));
  let last: Buffer | undefined;
  for (const [company, data] of ad.manufacturerData) {
    last = Buffer.alloc(2 + data.length);
    last.writeUInt16LE(company, 0);
    last.set(data, 2);
  }
  if (last !== undefined) into.manufacturerData = last;
}

function addUuid16s(list: string[], bytes: Uint8Array, at: number, n: number): void {
  for (let j = 0; j < n - 1; j += 2) addOnce(list, (bytes[at + j]! | (bytes[at + j + 1]! << 8)).toString(16));
}

function addUuid128s(list: string[], bytes: Uint8Array, at: number, n: number): void {
  for (let j = 0; j < n - 15; j += 16) addOnce(list, reversedHex(bytes, at + j, 16));
}

function addOnce(list: string[], uuid: string): void {
  if (!list.includes(uuid)) list.push(uuid);
}

function setServiceData(list: NobleServiceData[], uuid: string, data: Buffer): void {
  const index = list.findIndex((entry) => entry.uuid === uuid);
  if (index >= 0) list[index] = { uuid, data };
  else list.push({ uuid, data });
}

/** Hex of `length` bytes read back to front: the big-endian text of a little-endian UUID. */
function reversedHex(bytes: Uint8Array, at: number, length: number): string {
  let out = '';
  for (let k = at + length - 1; k >= at; k--) out += HEX[bytes[k]!]!;
  return out;
}

/** Service-data UUID text for a canonical UUID: the hex of its 2, 4 or 16 on-air bytes. */
function serviceDataUuid(uuid: string): string {
  if (!uuid.endsWith(BASE_UUID_SUFFIX)) return uuid.replaceAll('-', '');
  return uuid.startsWith('0000') ? uuid.slice(4, 8) : uuid.slice(0, 8);
}
