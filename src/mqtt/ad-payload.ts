import type { Advertisement } from '../bluetooth/advertisement.js';
import { shortUuidOf } from '../bluetooth/uuid.js';

/** OpenMQTTGateway's calibration when an advertisement carries no TX power: -59 dBm measured at 1 m. */
export const DEFAULT_TX_POWER_AT_1M = -59;

/** One BTtoMQTT message as OpenMQTTGateway builds it (advertisement data published), plus the proxy that heard it. */
export interface BtAdvertisementJson {
  /** `AA:BB:CC:DD:EE:FF`. */
  id: string;
  /** 0 public, 1 random, 2/3 resolvable private (NimBLE's and ESPHome's numbering agree). */
  mac_type: number;
  name?: string;
  /** Hex of the first manufacturer-specific AD structure, company id (little-endian) first. */
  manufacturerdata?: string;
  rssi: number;
  txpower?: number;
  /** Metres, from RSSI and TX power as OpenMQTTGateway and Theengs Gateway estimate it. */
  distance?: number;
  /** Hex of one service-data AD structure after its UUID. */
  servicedata?: string;
  /** `0xfe95` (16-bit), `0x1234abcd` (32-bit), dashed lowercase (128-bit), as NimBLEUUID::toString writes them. */
  servicedatauuid?: string;
  /** Id of the proxy that heard it. */
  proxy: string;
}

/** The fields of one advertisement that OpenMQTTGateway publishes, in its order, ready to be written out. */
export interface AdvertisementFields {
  readonly name: string | undefined;
  readonly manufacturerdata: string | undefined;
  readonly txpower: number | undefined;
  /** One entry per service-data AD structure (OpenMQTTGateway publishes a message for each); empty when none. */
  readonly serviceData: ReadonlyArray<{ readonly uuid: string; readonly data: string }>;
}

/**
 * The log-distance estimate OpenMQTTGateway (`hass_presence`) and Theengs Gateway (`hass_presence`) both use:
 * ratio = rssi / txPower (txPower -59 when absent or not negative); ratio^10 below 1, else 0.89976·ratio^7.7095 + 0.111.
 */
export function estimateDistance(rssi: number, txPower: number | undefined): number {
  const calibration = txPower !== undefined && txPower < 0 ? txPower : DEFAULT_TX_POWER_AT_1M;
  const ratio = rssi / calibration;
  return ratio < 1 ? ratio ** 10 : 0.89976 * ratio ** 7.7095 + 0.111;
}

/**
 * Reads the published fields from the advertisement's AD bytes, structure by structure, as NimBLE hands them to
 * OpenMQTTGateway: service-data UUIDs keep the width they were sent with, manufacturer data is the first 0xFF
 * structure whole. Legacy parsed advertisements (message 67, no AD bytes) fall back to the parsed maps.
 */
export function advertisementFields(ad: Advertisement): AdvertisementFields {
  const raw = ad.raw;
  if (raw.length === 0) return fromParsed(ad);
  let manufacturerdata: string | undefined;
  let serviceData: Array<{ uuid: string; data: string }> | undefined;
  let pos = 0;
  const end = raw.length;
  while (pos < end) {
    const len = raw[pos]!;
    if (len === 0) break;
    const next = pos + 1 + len;
    if (next > end) break;
    const at = pos + 2;
    switch (raw[pos + 1]) {
      case 0xff:
        if (manufacturerdata === undefined && len >= 3) manufacturerdata = hex(raw, at, next);
        break;
      case 0x16:
        if (len >= 3) (serviceData ??= []).push({ uuid: `0x${hexReversed(raw, at, 2)}`, data: hex(raw, at + 2, next) });
        break;
      case 0x20:
        if (len >= 5) (serviceData ??= []).push({ uuid: `0x${hexReversed(raw, at, 4)}`, data: hex(raw, at + 4, next) });
        break;
      case 0x21:
        if (len >= 17) (serviceData ??= []).push({ uuid: uuid128(raw, at), data: hex(raw, at + 16, next) });
        break;
    }
    pos = next;
  }
  return { name: ad.localName, manufacturerdata, txpower: ad.txPower, serviceData: serviceData ?? NO_SERVICE_DATA };
}

/** Serialises one message (hand-built: this runs per advertisement, and JSON.stringify of an object costs more). */
export function formatAdvertisementJson(
  id: string,
  macType: number,
  rssi: number,
  fields: AdvertisementFields,
  serviceData: { readonly uuid: string; readonly data: string } | undefined,
  distance: number | undefined,
  proxy: string,
): string {
  let out = `{"id":"${id}","mac_type":${macType}`;
  if (fields.name !== undefined) out += `,"name":${JSON.stringify(fields.name)}`;
  if (fields.manufacturerdata !== undefined) out += `,"manufacturerdata":"${fields.manufacturerdata}"`;
  out += `,"rssi":${rssi}`;
  if (fields.txpower !== undefined) out += `,"txpower":${fields.txpower}`;
  if (distance !== undefined) out += `,"distance":${Math.round(distance * 1000) / 1000}`;
  if (serviceData !== undefined) out += `,"servicedata":"${serviceData.data}","servicedatauuid":"${serviceData.uuid}"`;
  return `${out},"proxy":${JSON.stringify(proxy)}}`;
}

/** What identifies an advertisement's content for change-only publishing (RSSI and distance left out). */
export function contentKey(fields: AdvertisementFields): string {
  let key = `${fields.name ?? ''}|${fields.manufacturerdata ?? ''}|${fields.txpower ?? ''}`;
  for (const entry of fields.serviceData) key += `|${entry.uuid}=${entry.data}`;
  return key;
}

const NO_SERVICE_DATA: ReadonlyArray<{ uuid: string; data: string }> = Object.freeze([]);

function fromParsed(ad: Advertisement): AdvertisementFields {
  let manufacturerdata: string | undefined;
  for (const [company, bytes] of ad.manufacturerData) {
    manufacturerdata = hexByte(company & 0xff) + hexByte(company >> 8) + hex(bytes, 0, bytes.length);
    break;
  }
  const serviceData: Array<{ uuid: string; data: string }> = [];
  for (const [uuid, bytes] of ad.serviceData) {
    const short = shortUuidOf(uuid);
    const text = short === undefined ? uuid : `0x${short.toString(16).padStart(short > 0xffff ? 8 : 4, '0')}`;
    serviceData.push({ uuid: text, data: hex(bytes, 0, bytes.length) });
  }
  return { name: ad.localName, manufacturerdata, txpower: ad.txPower, serviceData };
}

const HEX_BYTES: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function hexByte(value: number): string {
  return HEX_BYTES[value & 0xff]!;
}

function hex(bytes: Uint8Array, start: number, end: number): string {
  let out = '';
  for (let i = start; i < end; i++) out += HEX_BYTES[bytes[i]!]!;
  return out;
}

/** Little-endian bytes as the big-endian hex number they encode. */
function hexReversed(bytes: Uint8Array, start: number, length: number): string {
  let out = '';
  for (let i = start + length - 1; i >= start; i--) out += HEX_BYTES[bytes[i]!]!;
  return out;
}

function uuid128(bytes: Uint8Array, at: number): string {
  const h = hexReversed(bytes, at, 16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
