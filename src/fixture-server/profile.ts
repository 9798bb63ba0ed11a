import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../errors.js';

/** Folder of the committed device profiles (`fixtures/profiles`), from `src/` and from `dist/` alike. */
export const PROFILES_DIR = fileURLToPath(new URL('../../fixtures/profiles/', import.meta.url));

/** The default simulated neighbourhood: one demo peripheral plus a few real advertisers. */
export const DEFAULT_PROFILE_PATH = join(PROFILES_DIR, 'default.json');

/** Largest ATT attribute value (Core spec Vol 3 Part F 3.2.9); longer writes get 0x0D. */
export const MAX_ATTRIBUTE_LENGTH = 512;

/** ESPHome forwards advertising data plus scan response: 31 + 31 bytes at most. */
export const MAX_ADVERTISEMENT_LENGTH = 62;

/** GATT property bits by the names bleak and shared/data use (camelCase aliases accepted on input). */
export const PROPERTY_BITS = {
  broadcast: 0x01,
  read: 0x02,
  'write-without-response': 0x04,
  write: 0x08,
  notify: 0x10,
  indicate: 0x20,
  'authenticated-signed-writes': 0x40,
  'extended-properties': 0x80,
} as const;

/** UUID of the Client Characteristic Configuration Descriptor. */
export const CCCD_UUID = '00002902-0000-1000-8000-00805f9b34fb';

/** Periodic notifications of a characteristic, sent while it is subscribed. */
export interface NotifyProfile {
  readonly intervalMs: number;
  /** Rotated through; each one also becomes the characteristic's value. */
  readonly values: readonly Uint8Array[];
}

/** GATT statuses a characteristic always answers with instead of succeeding. */
export interface AttributeErrors {
  readonly read?: number;
  readonly write?: number;
}

/** A descriptor of a simulated characteristic. */
export interface GattDescriptorProfile {
  readonly uuid: string;
  readonly handle: number;
  /** Initial value (a CCCD's value is computed from the subscription state instead). */
  readonly value: Uint8Array;
  readonly writable: boolean;
}

/** A characteristic of a simulated peripheral; `handle` is the value handle. */
export interface GattCharacteristicProfile {
  readonly uuid: string;
  readonly handle: number;
  /** GATT property bit mask (0x02 read, 0x04 write without response, 0x08 write, 0x10 notify, 0x20 indicate...). */
  readonly properties: number;
  readonly value: Uint8Array;
  readonly descriptors: readonly GattDescriptorProfile[];
  readonly notify?: NotifyProfile;
  readonly error: AttributeErrors;
  /** Reads and writes fail with 0x05 (insufficient authentication) until the peripheral is bonded. */
  readonly encrypted: boolean;
  /** Value handle that receives whatever is written here (stored as its value and notified if subscribed). */
  readonly echoTo?: number;
  /** With echoTo: what that handle gets for every write instead of a copy (a device's fixed status answer). */
  readonly reply?: Uint8Array;
}

/** A primary service; `handle` is the service declaration handle. */
export interface GattServiceProfile {
  readonly uuid: string;
  readonly handle: number;
  readonly characteristics: readonly GattCharacteristicProfile[];
}

/** The GATT server of a simulated peripheral. */
export interface GattProfile {
  /** ATT MTU the proxy reports after connecting. */
  readonly mtu: number;
  readonly services: readonly GattServiceProfile[];
}

/** Connection behaviour knobs of a simulated peripheral. */
export interface BehaviourProfile {
  readonly connectDelayMs: number;
  /** 0 = connects; otherwise the `error` of the failing `connected=false` (e.g. 256, 133, 62). */
  readonly connectError: number;
  /** How many attempts fail with `connectError` before one succeeds; undefined = every attempt fails. */
  readonly connectErrorAttempts?: number;
  readonly responseDelayMs: number;
  /** The link drops (reason 0x08) this long after connecting; undefined = never. */
  readonly linkLossAfterMs?: number;
  readonly pairing: 'just-works' | 'fail';
  /** `error` of a failed pairing. */
  readonly pairingError: number;
  /** Keep advertising while connected (most peripherals stop). */
  readonly advertiseWhileConnected: boolean;
}

/**
 * A peripheral that is a Matter device: a real one (matter.js's own device side, an optional peer) runs behind
 * it and owns its advertisement and the Matter GATT service. Defaults are matter.js's test device's.
 */
export interface MatterProfile {
  /** 12-bit discriminator (default 3840). */
  readonly discriminator: number;
  /** Setup passcode (default 20202021). */
  readonly passcode: number;
  /** Vendor id (default 0xFFF1, a test vendor: test attestation certificates). */
  readonly vendorId: number;
  /** Product id (default 0x8000). */
  readonly productId: number;
}

/** matter.js's test device: what `serve --profile matter` runs unless the profile says otherwise. */
export const MATTER_TEST_DEVICE: MatterProfile = { discriminator: 3840, passcode: 20202021, vendorId: 0xfff1, productId: 0x8000 };

/** Setup passcodes the Matter spec forbids (Core spec 5.1.7.1). */
const INVALID_PASSCODES = new Set([
  0, 11111111, 22222222, 33333333, 44444444, 55555555, 66666666, 77777777, 88888888, 99999999, 12345678, 87654321,
]);

/** One simulated BLE peripheral in a proxy's radio range. */
export interface PeripheralProfile {
  /** `AA:BB:CC:DD:EE:FF`, upper case. */
  readonly mac: string;
  /** The 48-bit address as the API carries it. */
  readonly address: number;
  /** 0 public, 1 random (spec §6.2). */
  readonly addressType: number;
  readonly name: string;
  /** Where the data came from (shared/data ids). */
  readonly source: string;
  readonly rssi: number;
  readonly rssiJitter: number;
  readonly advertisingIntervalMs: number;
  readonly connectable: boolean;
  /** Raw AD payloads (advertising data and/or scan response), sent in rotation. */
  readonly advertisements: readonly Uint8Array[];
  readonly gatt: GattProfile;
  readonly behaviour: BehaviourProfile;
  /** Present when a Matter device runs behind this peripheral. */
  readonly matter?: MatterProfile;
}

/** One simulated proxy's radio neighbourhood. */
export interface DeviceProfile {
  readonly name: string;
  readonly description: string;
  readonly peripherals: readonly PeripheralProfile[];
}

const DEFAULT_BEHAVIOUR: BehaviourProfile = {
  // A real ESP32 needs tens of ms to open a link and run discovery; keeps tests fast yet asynchronous.
  connectDelayMs: 30,
  connectError: 0,
  responseDelayMs: 0,
  pairing: 'just-works',
  // ESP_GATT_AUTH_FAIL (spec §6.14): the stack's generic authentication failure.
  pairingError: 0x89,
  advertiseWhileConnected: false,
};

/** ATT_MTU before any exchange (Core spec); used when a profile has no GATT table. */
const DEFAULT_ATT_MTU = 23;

/** Reads and validates a profile file. */
export async function loadProfile(path: string): Promise<DeviceProfile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new InvalidArgumentError(`Cannot read device profile ${path}: ${(cause as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new InvalidArgumentError(`${basename(path)}: not valid JSON: ${(cause as Error).message}`);
  }
  return parseProfile(json, basename(path));
}

/** A profile name (`kitchen`) or a path (anything with a slash or ending in `.json`) to a file path. */
export function resolveProfilePath(nameOrPath: string): string {
  if (nameOrPath.includes('/') || nameOrPath.includes('\\') || nameOrPath.endsWith('.json')) return nameOrPath;
  return join(PROFILES_DIR, `${nameOrPath}.json`);
}

/** Validates and normalises parsed profile JSON; errors name the offending path inside the JSON. */
export function parseProfile(json: unknown, source = 'profile'): DeviceProfile {
  const ctx = new Context(source);
  const root = ctx.object(json, '', ['name', 'description', 'peripherals', 'notes']);
  ctx.optionalNotes(root.notes, 'notes');
  const peripherals = ctx.array(root.peripherals, 'peripherals').map((p, i) => parsePeripheral(ctx, p, `peripherals[${i}]`));
  const seen = new Map<string, number>();
  peripherals.forEach((p, i) => {
    const previous = seen.get(p.mac);
    if (previous !== undefined) ctx.fail(`peripherals[${i}].mac`, `${p.mac} is already used by peripherals[${previous}]`);
    seen.set(p.mac, i);
  });
  return {
    name: ctx.string(root.name, 'name'),
    description: root.description === undefined ? '' : ctx.string(root.description, 'description'),
    peripherals,
  };
}

/** Splits AD structures (`[len][type][len-1 bytes]`...); a zero length byte ends the data. Throws a message on inconsistency. */
export function splitAdStructures(data: Uint8Array): { type: number; data: Uint8Array }[] {
  const out: { type: number; data: Uint8Array }[] = [];
  let pos = 0;
  while (pos < data.length) {
    const len = data[pos]!;
    if (len === 0) {
      if (data.subarray(pos).some((b) => b !== 0)) throw new Error(`non-zero bytes after the zero length at offset ${pos}`);
      break;
    }
    if (pos + 1 + len > data.length)
      throw new Error(`AD structure at offset ${pos} claims ${len} bytes but only ${data.length - pos - 1} remain`);
    out.push({ type: data[pos + 1]!, data: data.subarray(pos + 2, pos + 1 + len) });
    pos += 1 + len;
  }
  return out;
}

/** Lower-case full 128-bit form of a 16-bit, 32-bit or 128-bit UUID (`2a00`, `0x2A00`, `0000180f-...`). */
export function normalizeUuid(uuid: string): string | undefined {
  const text = uuid.trim().toLowerCase().replace(/^0x/, '');
  if (/^[0-9a-f]{4}$/.test(text)) return `0000${text}-0000-1000-8000-00805f9b34fb`;
  if (/^[0-9a-f]{8}$/.test(text)) return `${text}-0000-1000-8000-00805f9b34fb`;
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(text)) return text;
  return undefined;
}

function parsePeripheral(ctx: Context, value: unknown, path: string): PeripheralProfile {
  const p = ctx.object(value, path, [
    'mac',
    'addressType',
    'name',
    'source',
    'notes',
    'rssi',
    'rssiJitter',
    'advertisingIntervalMs',
    'connectable',
    'advertisements',
    'gatt',
    'behaviour',
    'matter',
  ]);
  ctx.optionalNotes(p.notes, `${path}.notes`);
  const mac = ctx.string(p.mac, `${path}.mac`).toUpperCase();
  if (!/^[0-9A-F]{2}(:[0-9A-F]{2}){5}$/.test(mac)) ctx.fail(`${path}.mac`, `expected AA:BB:CC:DD:EE:FF, got ${JSON.stringify(mac)}`);
  const advertisements = ctx.array(p.advertisements, `${path}.advertisements`).map((hex, i) => {
    const at = `${path}.advertisements[${i}]`;
    const bytes = ctx.hex(hex, at);
    if (bytes.length === 0 || bytes.length > MAX_ADVERTISEMENT_LENGTH) {
      ctx.fail(at, `expected 1..${MAX_ADVERTISEMENT_LENGTH} bytes, got ${bytes.length}`);
    }
    try {
      splitAdStructures(bytes);
    } catch (cause) {
      ctx.fail(at, `not a sequence of AD structures: ${(cause as Error).message}`);
    }
    return bytes;
  });
  if (advertisements.length === 0) ctx.fail(`${path}.advertisements`, 'expected at least one advertisement');
  return {
    mac,
    // 12 hex digits are < 2^48, exact in a double; never combine the halves bitwise.
    address: Number.parseInt(mac.replaceAll(':', ''), 16),
    addressType: ctx.int(p.addressType, `${path}.addressType`, 0, 3),
    name: p.name === undefined ? '' : ctx.string(p.name, `${path}.name`),
    source: p.source === undefined ? '' : ctx.string(p.source, `${path}.source`),
    rssi: p.rssi === undefined ? -60 : ctx.int(p.rssi, `${path}.rssi`, -127, 0),
    rssiJitter: p.rssiJitter === undefined ? 0 : ctx.int(p.rssiJitter, `${path}.rssiJitter`, 0, 40),
    advertisingIntervalMs:
      p.advertisingIntervalMs === undefined ? 1000 : ctx.int(p.advertisingIntervalMs, `${path}.advertisingIntervalMs`, 20, 60_000),
    connectable: p.connectable === undefined ? false : ctx.bool(p.connectable, `${path}.connectable`),
    advertisements,
    gatt: p.gatt === undefined ? { mtu: DEFAULT_ATT_MTU, services: [] } : parseGatt(ctx, p.gatt, `${path}.gatt`),
    behaviour: p.behaviour === undefined ? DEFAULT_BEHAVIOUR : parseBehaviour(ctx, p.behaviour, `${path}.behaviour`),
    ...(p.matter === undefined ? {} : { matter: parseMatter(ctx, p.matter, `${path}.matter`) }),
  };
}

function parseMatter(ctx: Context, value: unknown, path: string): MatterProfile {
  const m = ctx.object(value, path, ['discriminator', 'passcode', 'vendorId', 'productId']);
  const d = MATTER_TEST_DEVICE;
  const passcode = m.passcode === undefined ? d.passcode : ctx.int(m.passcode, `${path}.passcode`, 1, 99_999_998);
  if (INVALID_PASSCODES.has(passcode)) ctx.fail(`${path}.passcode`, `${passcode} is one of the passcodes the Matter spec forbids`);
  return {
    discriminator: m.discriminator === undefined ? d.discriminator : ctx.int(m.discriminator, `${path}.discriminator`, 0, 0xfff),
    passcode,
    vendorId: m.vendorId === undefined ? d.vendorId : ctx.int(m.vendorId, `${path}.vendorId`, 0, 0xfffe),
    productId: m.productId === undefined ? d.productId : ctx.int(m.productId, `${path}.productId`, 0, 0xffff),
  };
}

function parseGatt(ctx: Context, value: unknown, path: string): GattProfile {
  const g = ctx.object(value, path, ['mtu', 'services']);
  const services = ctx.array(g.services, `${path}.services`).map((s, i) => parseService(ctx, s, `${path}.services[${i}]`));
  checkHandles(ctx, services, path);
  return { mtu: g.mtu === undefined ? DEFAULT_ATT_MTU : ctx.int(g.mtu, `${path}.mtu`, 23, 517), services };
}

function parseService(ctx: Context, value: unknown, path: string): GattServiceProfile {
  const s = ctx.object(value, path, ['uuid', 'handle', 'characteristics']);
  return {
    uuid: ctx.uuid(s.uuid, `${path}.uuid`),
    handle: ctx.int(s.handle, `${path}.handle`, 1, 0xffff),
    characteristics: ctx
      .array(s.characteristics, `${path}.characteristics`)
      .map((c, i) => parseCharacteristic(ctx, c, `${path}.characteristics[${i}]`)),
  };
}

function parseCharacteristic(ctx: Context, value: unknown, path: string): GattCharacteristicProfile {
  const c = ctx.object(value, path, [
    'uuid',
    'handle',
    'properties',
    'value',
    'descriptors',
    'notify',
    'error',
    'encrypted',
    'echoTo',
    'reply',
  ]);
  const properties = ctx.properties(c.properties, `${path}.properties`);
  const descriptors =
    c.descriptors === undefined
      ? []
      : ctx.array(c.descriptors, `${path}.descriptors`).map((d, i) => parseDescriptor(ctx, d, `${path}.descriptors[${i}]`));
  const subscribable = (properties & (PROPERTY_BITS.notify | PROPERTY_BITS.indicate)) !== 0;
  if (subscribable && !descriptors.some((d) => d.uuid === CCCD_UUID)) {
    ctx.fail(`${path}.descriptors`, 'a notify/indicate characteristic needs a 0x2902 CCCD descriptor');
  }
  let notify: NotifyProfile | undefined;
  if (c.notify !== undefined) {
    if (!subscribable) ctx.fail(`${path}.notify`, 'the characteristic has neither the notify nor the indicate property');
    const n = ctx.object(c.notify, `${path}.notify`, ['intervalMs', 'values']);
    const values = ctx.array(n.values, `${path}.notify.values`).map((v, i) => ctx.value(v, `${path}.notify.values[${i}]`));
    if (values.length === 0) ctx.fail(`${path}.notify.values`, 'expected at least one value');
    notify = { intervalMs: ctx.int(n.intervalMs, `${path}.notify.intervalMs`, 1, 3_600_000), values };
  }
  let error: AttributeErrors = {};
  if (c.error !== undefined) {
    const e = ctx.object(c.error, `${path}.error`, ['read', 'write']);
    if (e.read !== undefined) error = { ...error, read: ctx.int(e.read, `${path}.error.read`, 1, 0xff) };
    if (e.write !== undefined) error = { ...error, write: ctx.int(e.write, `${path}.error.write`, 1, 0xff) };
  }
  const characteristic: GattCharacteristicProfile = {
    uuid: ctx.uuid(c.uuid, `${path}.uuid`),
    handle: ctx.int(c.handle, `${path}.handle`, 2, 0xffff),
    properties,
    value: c.value === undefined ? new Uint8Array(0) : ctx.value(c.value, `${path}.value`),
    descriptors,
    error,
    encrypted: c.encrypted === undefined ? false : ctx.bool(c.encrypted, `${path}.encrypted`),
  };
  if (characteristic.value.length > MAX_ATTRIBUTE_LENGTH) ctx.fail(`${path}.value`, `longer than ${MAX_ATTRIBUTE_LENGTH} bytes`);
  let reply: Uint8Array | undefined;
  if (c.reply !== undefined) {
    if (c.echoTo === undefined) ctx.fail(`${path}.reply`, 'a reply needs echoTo (the value handle that answers)');
    reply = ctx.value(c.reply, `${path}.reply`);
    if (reply.length > MAX_ATTRIBUTE_LENGTH) ctx.fail(`${path}.reply`, `longer than ${MAX_ATTRIBUTE_LENGTH} bytes`);
  }
  return {
    ...characteristic,
    ...(notify === undefined ? {} : { notify }),
    ...(c.echoTo === undefined ? {} : { echoTo: ctx.int(c.echoTo, `${path}.echoTo`, 1, 0xffff) }),
    ...(reply === undefined ? {} : { reply }),
  };
}

function parseDescriptor(ctx: Context, value: unknown, path: string): GattDescriptorProfile {
  const d = ctx.object(value, path, ['uuid', 'handle', 'value', 'writable']);
  const uuid = ctx.uuid(d.uuid, `${path}.uuid`);
  if (uuid === CCCD_UUID && d.value !== undefined) ctx.fail(`${path}.value`, 'a CCCD value comes from the subscription state; remove it');
  return {
    uuid,
    handle: ctx.int(d.handle, `${path}.handle`, 1, 0xffff),
    value: d.value === undefined ? new Uint8Array(0) : ctx.value(d.value, `${path}.value`),
    writable: d.writable === undefined ? false : ctx.bool(d.writable, `${path}.writable`),
  };
}

function parseBehaviour(ctx: Context, value: unknown, path: string): BehaviourProfile {
  const b = ctx.object(value, path, [
    'connectDelayMs',
    'connectError',
    'connectErrorAttempts',
    'responseDelayMs',
    'linkLossAfterMs',
    'pairing',
    'pairingError',
    'advertiseWhileConnected',
  ]);
  let pairing = DEFAULT_BEHAVIOUR.pairing;
  if (b.pairing !== undefined) {
    const text = ctx.string(b.pairing, `${path}.pairing`);
    if (text !== 'just-works' && text !== 'fail')
      ctx.fail(`${path}.pairing`, `expected "just-works" or "fail", got ${JSON.stringify(text)}`);
    pairing = text;
  }
  const optionalMs = (v: unknown, at: string, fallback: number): number => (v === undefined ? fallback : ctx.int(v, at, 0, 3_600_000));
  return {
    connectDelayMs: optionalMs(b.connectDelayMs, `${path}.connectDelayMs`, DEFAULT_BEHAVIOUR.connectDelayMs),
    connectError: b.connectError === undefined ? 0 : ctx.int(b.connectError, `${path}.connectError`, -1, 0xffff),
    ...(b.connectErrorAttempts === undefined || b.connectErrorAttempts === null
      ? {}
      : { connectErrorAttempts: ctx.int(b.connectErrorAttempts, `${path}.connectErrorAttempts`, 0, 1_000_000) }),
    responseDelayMs: optionalMs(b.responseDelayMs, `${path}.responseDelayMs`, DEFAULT_BEHAVIOUR.responseDelayMs),
    ...(b.linkLossAfterMs === undefined || b.linkLossAfterMs === null
      ? {}
      : { linkLossAfterMs: ctx.int(b.linkLossAfterMs, `${path}.linkLossAfterMs`, 1, 3_600_000) }),
    pairing,
    pairingError:
      b.pairingError === undefined ? DEFAULT_BEHAVIOUR.pairingError : ctx.int(b.pairingError, `${path}.pairingError`, -1, 0xffff),
    advertiseWhileConnected:
      b.advertiseWhileConnected === undefined ? false : ctx.bool(b.advertiseWhileConnected, `${path}.advertiseWhileConnected`),
  };
}

// Attributes in table order must have strictly ascending handles, and each characteristic's
// declaration (value handle - 1) must fit between the previous attribute and its value.
function checkHandles(ctx: Context, services: readonly GattServiceProfile[], path: string): void {
  let previous = 0;
  const valueHandles = new Set<number>();
  services.forEach((service, si) => {
    const sp = `${path}.services[${si}]`;
    if (service.handle <= previous) ctx.fail(`${sp}.handle`, `handle ${service.handle} is not above the previous attribute's ${previous}`);
    previous = service.handle;
    service.characteristics.forEach((characteristic, ci) => {
      const cp = `${sp}.characteristics[${ci}]`;
      if (characteristic.handle - 1 <= previous) {
        ctx.fail(`${cp}.handle`, `value handle ${characteristic.handle} leaves no room for its declaration after handle ${previous}`);
      }
      previous = characteristic.handle;
      valueHandles.add(characteristic.handle);
      characteristic.descriptors.forEach((descriptor, di) => {
        if (descriptor.handle <= previous) {
          ctx.fail(`${cp}.descriptors[${di}].handle`, `handle ${descriptor.handle} is not above the previous attribute's ${previous}`);
        }
        previous = descriptor.handle;
      });
    });
  });
  services.forEach((service, si) => {
    service.characteristics.forEach((characteristic, ci) => {
      if (characteristic.echoTo !== undefined && !valueHandles.has(characteristic.echoTo)) {
        ctx.fail(`${path}.services[${si}].characteristics[${ci}].echoTo`, `no characteristic has value handle ${characteristic.echoTo}`);
      }
    });
  });
}

class Context {
  readonly #source: string;

  constructor(source: string) {
    this.#source = source;
  }

  fail(path: string, message: string): never {
    throw new InvalidArgumentError(`${this.#source}: ${path === '' ? '(root)' : path}: ${message}`);
  }

  object(value: unknown, path: string, allowed: readonly string[]): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(path, `expected an object, got ${describe(value)}`);
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) this.fail(path === '' ? key : `${path}.${key}`, `unknown key (allowed: ${allowed.join(', ')})`);
    }
    return value as Record<string, unknown>;
  }

  array(value: unknown, path: string): unknown[] {
    if (!Array.isArray(value)) this.fail(path, `expected an array, got ${describe(value)}`);
    return value;
  }

  string(value: unknown, path: string): string {
    if (typeof value !== 'string') this.fail(path, `expected a string, got ${describe(value)}`);
    return value;
  }

  bool(value: unknown, path: string): boolean {
    if (typeof value !== 'boolean') this.fail(path, `expected true or false, got ${describe(value)}`);
    return value;
  }

  int(value: unknown, path: string, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(path, `expected an integer ${min}..${max}, got ${describe(value)}`);
    }
    return value;
  }

  optionalNotes(value: unknown, path: string): void {
    if (value === undefined) return;
    this.array(value, path).forEach((note, i) => {
      this.string(note, `${path}[${i}]`);
    });
  }

  uuid(value: unknown, path: string): string {
    const uuid = normalizeUuid(this.string(value, path));
    if (uuid === undefined) this.fail(path, `expected a 16-bit, 32-bit or 128-bit UUID, got ${JSON.stringify(value)}`);
    return uuid;
  }

  hex(value: unknown, path: string): Uint8Array {
    const text = this.string(value, path).replace(/[\s:]/g, '');
    if (!/^([0-9a-fA-F]{2})*$/.test(text)) this.fail(path, `expected hex bytes, got ${JSON.stringify(value)}`);
    return Uint8Array.from(Buffer.from(text, 'hex'));
  }

  /** A hex string, or `{ "utf8": "text" }` for readable string values. */
  value(value: unknown, path: string): Uint8Array {
    if (typeof value === 'string') return this.hex(value, path);
    const v = this.object(value, path, ['utf8']);
    return new TextEncoder().encode(this.string(v.utf8, `${path}.utf8`));
  }

  properties(value: unknown, path: string): number {
    if (typeof value === 'number') return this.int(value, path, 0, 0xff);
    return this.array(value, path).reduce<number>((mask, name, i) => {
      const text = this.string(name, `${path}[${i}]`);
      const bit = (PROPERTY_BITS as Readonly<Record<string, number | undefined>>)[text.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)];
      if (bit === undefined)
        this.fail(`${path}[${i}]`, `unknown property ${JSON.stringify(text)} (known: ${Object.keys(PROPERTY_BITS).join(', ')})`);
      return mask | bit;
    }, 0);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return JSON.stringify(value);
}
