import { formatMac, parseMac } from '../bluetooth/address.js';
import { normalizeUuid } from '../bluetooth/uuid.js';
import { CommandDecodeError, InvalidArgumentError } from '../errors.js';

/** OpenMQTTGateway's `value_type`: how a written value is encoded and a read one is shown. */
export type ValueType = 'STRING' | 'HEX' | 'INT' | 'FLOAT';

/** Fields every GATT command carries, as decoded and checked from its JSON. */
interface CommandBase {
  readonly address: number;
  /** `AA:BB:CC:DD:EE:FF`. */
  readonly mac: string;
  /** The service and characteristic as OpenMQTTGateway's answer prints them (NimBLEUUID::toString) and canonical. */
  readonly service: string;
  readonly characteristic: string;
  readonly serviceUuid: string;
  readonly characteristicUuid: string;
  readonly valueType: ValueType;
  /** OpenMQTTGateway's `ttl` (connect attempts); undefined: the pool's default. */
  readonly attempts: number | undefined;
}

/** A decoded MQTTtoBT command. */
export type GattCommand =
  | (CommandBase & { readonly kind: 'read' })
  | (CommandBase & { readonly kind: 'write'; readonly value: Uint8Array; readonly valueText: string | number })
  | (CommandBase & { readonly kind: 'notify'; readonly stop: boolean });

/** Largest command payload read: the biggest legitimate one (a 512-byte HEX write) fits several times over. */
export const MAX_COMMAND_BYTES = 4096;
/** Most connect attempts a command may ask for (`ttl`). */
export const MAX_COMMAND_ATTEMPTS = 10;

const PREFIXES = { read: 'ble_read_', write: 'ble_write_', notify: 'ble_notify_' } as const;

/**
 * Decodes one MQTTtoBT payload in OpenMQTTGateway's shape (`ble_write_address`/`_service`/`_char`/`_value`,
 * `ble_read_address`/`_service`/`_char`, `value_type`, `ttl`, `mac_type`, `immediate`) plus our notification
 * request (`ble_notify_address`/`_service`/`_char`, `ble_notify: false` stops). Throws CommandDecodeError.
 */
export function parseCommand(payload: Uint8Array): GattCommand {
  if (payload.length > MAX_COMMAND_BYTES)
    throw new CommandDecodeError(`Command of ${payload.length} bytes is over the ${MAX_COMMAND_BYTES}-byte limit`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch {
    throw new CommandDecodeError('Command is not JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new CommandDecodeError('Command must be a JSON object');
  const body = json as Record<string, unknown>;
  // OpenMQTTGateway checks the write fields first, then the read ones; ours come last.
  const kind = (['write', 'read', 'notify'] as const).find((k) => body[`${PREFIXES[k]}address`] !== undefined);
  if (kind === undefined) {
    throw new CommandDecodeError('Command names no device: expected ble_write_address, ble_read_address or ble_notify_address');
  }
  const prefix = PREFIXES[kind];
  const addressText = body[`${prefix}address`];
  let address: number;
  try {
    if (typeof addressText !== 'string') throw new InvalidArgumentError('not a string');
    address = parseMac(addressText);
  } catch {
    throw new CommandDecodeError(`${prefix}address must be a MAC address such as AA:BB:CC:DD:EE:FF`);
  }
  const mac = formatMac(address);
  const fail = (message: string): never => {
    throw new CommandDecodeError(message, mac);
  };
  const service = body[`${prefix}service`];
  const characteristic = body[`${prefix}char`];
  if (typeof service !== 'string') return fail(`${prefix}service is missing`);
  if (typeof characteristic !== 'string') return fail(`${prefix}char is missing`);
  let serviceUuid: string;
  let characteristicUuid: string;
  try {
    serviceUuid = normalizeUuid(service);
    characteristicUuid = normalizeUuid(characteristic);
  } catch (error) {
    return fail((error as Error).message);
  }
  const valueType = valueTypeOf(body.value_type, fail);
  const ttl = body.ttl;
  if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_COMMAND_ATTEMPTS)) {
    return fail(`ttl must be an integer 1..${MAX_COMMAND_ATTEMPTS}`);
  }
  const base: CommandBase = {
    address,
    mac,
    service: nimbleUuidText(service, serviceUuid),
    characteristic: nimbleUuidText(characteristic, characteristicUuid),
    serviceUuid,
    characteristicUuid,
    valueType,
    attempts: typeof ttl === 'number' ? ttl : undefined,
  };
  if (kind === 'read') return { ...base, kind };
  if (kind === 'notify') {
    const flag = body.ble_notify;
    if (flag !== undefined && typeof flag !== 'boolean') return fail('ble_notify must be true or false');
    return { ...base, kind, stop: flag === false };
  }
  const raw = body.ble_write_value;
  if (typeof raw !== 'string' && typeof raw !== 'number') return fail('ble_write_value is missing (a string, or a number for INT/FLOAT)');
  let value: Uint8Array;
  try {
    value = encodeValue(raw, valueType);
  } catch (error) {
    return fail((error as Error).message);
  }
  return { ...base, kind, value, valueText: raw };
}

/**
 * Encodes a value to write as OpenMQTTGateway does on the ESP32: STRING as its UTF-8 bytes, HEX as pairs of hex
 * digits, INT as a 32-bit little-endian `long` (strtol, base prefix allowed), FLOAT as a 64-bit little-endian double.
 */
export function encodeValue(value: string | number, type: ValueType): Uint8Array {
  const text = String(value);
  switch (type) {
    case 'STRING':
      return new TextEncoder().encode(text);
    case 'HEX': {
      if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text))
        throw new InvalidArgumentError('HEX value must be an even number of hex digits');
      return Uint8Array.from(Buffer.from(text, 'hex'));
    }
    case 'INT': {
      const n = typeof value === 'number' ? value : Number(text.trim());
      if (!Number.isInteger(n) || n < -(2 ** 31) || n > 2 ** 32 - 1)
        throw new InvalidArgumentError('INT value must be an integer that fits 32 bits');
      const out = new Uint8Array(4);
      new DataView(out.buffer).setUint32(0, n >>> 0, true);
      return out;
    }
    case 'FLOAT': {
      const n = typeof value === 'number' ? value : Number(text.trim());
      if (!Number.isFinite(n) || text.trim() === '') throw new InvalidArgumentError('FLOAT value must be a number');
      const out = new Uint8Array(8);
      new DataView(out.buffer).setFloat64(0, n, true);
      return out;
    }
  }
}

/**
 * Shows a read value as OpenMQTTGateway's answer does: STRING as text, HEX as lowercase hex, INT as the signed 32-bit
 * little-endian number its first bytes hold, FLOAT as the little-endian double of 8 bytes (a float of 4).
 */
export function decodeValue(data: Uint8Array, type: ValueType): string | number {
  switch (type) {
    case 'STRING':
      return new TextDecoder().decode(data);
    case 'HEX':
      return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex');
    case 'INT': {
      const bytes = new Uint8Array(4);
      bytes.set(data.subarray(0, 4));
      const n = new DataView(bytes.buffer).getInt32(0, true);
      // A shorter value is a shorter signed integer: sign-extend from its own width.
      const bits = Math.min(data.length, 4) * 8;
      return bits === 0 ? 0 : bits === 32 ? n : (n << (32 - bits)) >> (32 - bits);
    }
    case 'FLOAT': {
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      if (data.length >= 8) return view.getFloat64(0, true);
      if (data.length >= 4) return view.getFloat32(0, true);
      return Number.NaN;
    }
  }
}

/**
 * A UUID as OpenMQTTGateway echoes it in an answer: NimBLE keeps the width the request used and prints 16 and
 * 32 bits as `0x` and lowercase hex (`0x2a19`), 128 bits dashed and lowercase.
 */
export function nimbleUuidText(given: string, canonical: string): string {
  const text = given.trim();
  const bare = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  return bare.length === 4 || bare.length === 8 ? `0x${bare.toLowerCase()}` : canonical;
}

function valueTypeOf(value: unknown, fail: (message: string) => never): ValueType {
  if (value === undefined) return 'STRING';
  if (typeof value !== 'string') return fail('value_type must be STRING, HEX, INT or FLOAT');
  const upper = value.toUpperCase();
  if (upper === 'STRING' || upper === 'HEX' || upper === 'INT' || upper === 'FLOAT') return upper;
  return fail(`value_type must be STRING, HEX, INT or FLOAT, got ${JSON.stringify(value.slice(0, 20))}`);
}
