import { addressTypeName, formatMac, parseMac } from '../bluetooth/address.js';
import type { BleConnection } from '../bluetooth/ble-connection.js';
import type { GattCharacteristic, GattDescriptor, GattServices } from '../bluetooth/gatt.js';
import { BluetoothProxy } from '../bluetooth/proxy-client.js';
import { BLE_CONNECT_TIMEOUT_MS } from '../bluetooth/timeouts.js';
import { BASE_UUID_SUFFIX, normalizeUuid } from '../bluetooth/uuid.js';
import type { ApiConnection } from '../connection/connection.js';
import { EspApiError, GattError } from '../errors.js';
import { parseProxySpec } from '../pool/proxy-pool.js';
import { formatDuration } from '../util/duration.js';
import { type CommandArgs, type CommandContext, durationOption, intOption, portOption, str, UsageError } from './command.js';
import { connectNode, SILENCE_NOTE_MS } from './connect-feedback.js';
import { EXIT, paint } from './output.js';
import { announceSubscription } from './real-home.js';
import { secretOption } from './secret-options.js';

export { DEVICE_OPTIONS } from './option-groups.js';

/** Notes about the single-proxy path (--host) of the device commands. */
export const PROXY_HELP = [
  'One proxy: --host host[:port] (or --host and --port); --psk / --psk-file / $ESPHOME_BLE_PSK selects Noise',
  'encryption, --password / --password-file / $ESPHOME_BLE_PASSWORD the legacy API password.',
].join('\n');

/** Notes about addressing a device and an attribute. */
export const DEVICE_HELP = [
  'MAC: AA:BB:CC:DD:EE:FF (or aa-bb-..., aabbccddeeff). Without --address-type the command waits up to 2 s to hear',
  'the device advertise, else assumes public. Attribute: a number is a handle (18 or 0x12, characteristic value or',
  'descriptor handle); anything else is a characteristic UUID (2a00, 0000xxxx-... or 128-bit). Write digits-only',
  'short UUIDs in full form.',
].join('\n');

// Long enough to hear a device that advertises at the common 1 s interval at least once, even with a missed packet.
const ADDRESS_TYPE_WAIT_MS = 2_000;

const ADDRESS_TYPES: Readonly<Record<string, number>> = { public: 0, random: 1, 'rpa-public': 2, 'rpa-random': 3 };

/** Per-step deadline from --timeout (ms), when given. */
export function timeoutOf(args: CommandArgs): number | undefined {
  return durationOption(args, 'timeout');
}

/** A positive integer option. */
export function countOption(args: CommandArgs, name: string): number | undefined {
  return intOption(args, name, 1);
}

/**
 * The node of --host/--port: `--host 10.0.0.5:6053` and `--host [::1]:6053` carry the port as --proxy does; a
 * --port that disagrees with it is a usage error.
 */
export function hostOf(
  args: CommandArgs,
  options: { required?: boolean; listening?: boolean } = {},
): { host: string; port: number | undefined } | undefined {
  const required = options.required ?? true;
  const text = str(args, 'host');
  const port = portOption(args, 'port', options.listening);
  if (text === undefined) {
    if (required) throw new UsageError('--host is required');
    return undefined;
  }
  const spec = parseProxySpec(text);
  if (spec.host === '' || (spec.port !== undefined && !(spec.port >= (options.listening ? 0 : 1) && spec.port <= 65_535))) {
    throw new UsageError(`--host must be a host name or address, optionally with :port, got ${JSON.stringify(text)}`);
  }
  if (spec.port !== undefined && port !== undefined && spec.port !== port) {
    throw new UsageError(`--host ${text} names port ${spec.port} but --port says ${port}: give the port once`);
  }
  return { host: spec.host, port: spec.port ?? port };
}

/** The Noise key and the legacy password of --host: flags, files or the environment. */
export function hostSecretsOf(args: CommandArgs): { psk: string | undefined; password: string | undefined } {
  return {
    psk: secretOption(args, { flag: 'psk', env: 'ESPHOME_BLE_PSK' }),
    password: secretOption(args, { flag: 'password', env: 'ESPHOME_BLE_PASSWORD' }),
  };
}

/** Parses the MAC positional. */
export function parseAddressArg(text: string | undefined): number {
  if (text === undefined) throw new UsageError('the device MAC address is required');
  try {
    return parseMac(text);
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

/** A handle or a characteristic UUID from the command line. */
export type AttributeKey = { readonly kind: 'handle'; readonly handle: number } | { readonly kind: 'uuid'; readonly uuid: string };

/** Parses an attribute argument: decimal or 0x-hex digits are a handle, anything else a UUID. */
export function parseAttributeArg(text: string | undefined): AttributeKey {
  if (text === undefined) throw new UsageError('a characteristic UUID or handle is required');
  let handle: number | undefined;
  if (/^\d+$/.test(text)) handle = Number.parseInt(text, 10);
  else if (/^0x[0-9a-f]+$/i.test(text)) handle = Number.parseInt(text.slice(2), 16);
  if (handle !== undefined) {
    if (handle < 1 || handle > 0xffff) throw new UsageError(`Handle ${text} is out of range (1..65535)`);
    return { kind: 'handle', handle };
  }
  try {
    return { kind: 'uuid', uuid: normalizeUuid(text) };
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

/** Parses hex bytes; spaces, colons, dashes and a leading 0x are ignored. */
export function parseHexArg(text: string | undefined): Uint8Array {
  if (text === undefined) throw new UsageError('the value to write (hex bytes) is required');
  const bare = text.replace(/^0x/i, '').replace(/[\s:-]/g, '');
  if (!/^(?:[0-9a-f]{2})*$/i.test(bare)) {
    throw new UsageError(`Not hex bytes: ${JSON.stringify(text)} (expected an even number of hex digits, e.g. 0102ff)`);
  }
  return Uint8Array.from(Buffer.from(bare, 'hex'));
}

/** What an attribute key resolved to in a device's service table. */
export interface ResolvedAttribute {
  readonly handle: number;
  readonly kind: 'characteristic' | 'descriptor' | 'unknown';
  /** UUID of the attribute, when it is in the table. */
  readonly uuid: string | undefined;
  readonly characteristic: GattCharacteristic | undefined;
  readonly descriptor: GattDescriptor | undefined;
}

/** Looks a key up in the service table (unknown handles pass through as-is). */
export function resolveAttribute(services: GattServices, key: AttributeKey, mac: string): ResolvedAttribute {
  if (key.kind === 'uuid') {
    const characteristic = services.get(key.uuid, mac);
    return { handle: characteristic.handle, kind: 'characteristic', uuid: characteristic.uuid, characteristic, descriptor: undefined };
  }
  const characteristic = services.find(key.handle);
  if (characteristic !== undefined) {
    return { handle: key.handle, kind: 'characteristic', uuid: characteristic.uuid, characteristic, descriptor: undefined };
  }
  const found = services.descriptor(key.handle);
  if (found !== undefined) {
    return {
      handle: key.handle,
      kind: 'descriptor',
      uuid: found.descriptor.uuid,
      characteristic: found.characteristic,
      descriptor: found.descriptor,
    };
  }
  return { handle: key.handle, kind: 'unknown', uuid: undefined, characteristic: undefined, descriptor: undefined };
}

/** One API session with the proxy as its Bluetooth subscriber. */
export interface ProxySession {
  readonly api: ApiConnection;
  readonly proxy: BluetoothProxy;
  /** Per-step deadline from --timeout. */
  readonly timeout: number | undefined;
}

/**
 * Connects to the proxy from --host/--port/--psk/--password (or $ESPHOME_BLE_PSK), attaches the Bluetooth
 * client, runs `fn` and always detaches and closes. An interrupt (SIGINT) becomes exit code 130.
 */
export async function runWithProxy(
  args: CommandArgs,
  ctx: CommandContext,
  fn: (session: ProxySession) => Promise<number>,
): Promise<number> {
  const { host, port } = hostOf(args)!;
  const timeout = timeoutOf(args);
  const { signal } = ctx;
  try {
    const api = await connectNode(ctx, { host, port, ...hostSecretsOf(args), timeout, signal });
    try {
      const proxy = await BluetoothProxy.attach(api, { signal, ...(timeout === undefined ? {} : { timeout }) });
      // These commands need the subscription to work: say what holding it means for the proxy's other clients.
      announceSubscription(ctx.out, [
        {
          label: sanitize(proxy.label),
          esphomeVersion: api.deviceInfo.esphomeVersion,
          apiVersion: { major: api.hello.apiVersionMajor, minor: api.hello.apiVersionMinor },
        },
      ]);
      try {
        return await fn({ api, proxy, timeout });
      } finally {
        // Not bound to `signal`: after Ctrl-C the links must still be released on the proxy.
        await proxy.detach({ timeout }).catch(() => {});
      }
    } finally {
      await api.close({ timeout }).catch(() => {});
    }
  } catch (error) {
    if (signal.aborted) {
      ctx.out.error('interrupted');
      return EXIT.interrupted;
    }
    throw error;
  }
}

/** Like runWithProxy, plus a BLE link to `address` (connected without cache) that is always disconnected. */
export async function runWithDevice(
  args: CommandArgs,
  ctx: CommandContext,
  address: number,
  fn: (link: BleConnection, session: ProxySession) => Promise<number>,
): Promise<number> {
  const forced = addressTypeArg(args);
  return runWithProxy(args, ctx, async (session) => {
    const { proxy, timeout } = session;
    const addressType = forced ?? (await heardAddressType(proxy, address, ctx));
    const link = await connectNoting(ctx, proxy, address, addressType, timeout);
    try {
      return await fn(link, session);
    } finally {
      await link.disconnect({ timeout }).catch(() => {});
    }
  });
}

/**
 * proxy.connect with a stderr note when the proxy has not answered after SILENCE_NOTE_MS: a device that is off, out
 * of range or not in a replayed recording gets no answer until the proxy's own connect timeout (about 20 s).
 */
async function connectNoting(
  ctx: CommandContext,
  proxy: BluetoothProxy,
  address: number,
  addressType: number,
  timeout: number | undefined,
): Promise<BleConnection> {
  const started = Date.now();
  const deadline = timeout ?? BLE_CONNECT_TIMEOUT_MS;
  const timer = setTimeout(() => {
    const left = formatDuration(Math.max(0, deadline - (Date.now() - started)));
    ctx.out.error(
      `${paint(ctx.out, 'yellow', 'note')} ${formatMac(address)}: no answer from ${proxy.label} for ${formatDuration(SILENCE_NOTE_MS)}; ` +
        'the proxy keeps trying until its own connect timeout (about 20 s) when the device is off, out of range or not ' +
        `in a replayed recording; giving up in ${left} (--timeout)`,
    );
  }, SILENCE_NOTE_MS);
  try {
    return await proxy.connect(address, { addressType, timeout, signal: ctx.signal });
  } finally {
    clearTimeout(timer);
  }
}

/** Reads --address-type. */
function addressTypeArg(args: CommandArgs): number | undefined {
  const text = str(args, 'address-type');
  if (text === undefined) return undefined;
  const type = ADDRESS_TYPES[text.toLowerCase()] ?? (/^[0-3]$/.test(text) ? Number(text) : undefined);
  if (type === undefined)
    throw new UsageError(`--address-type must be public, random, rpa-public, rpa-random or 0..3, got ${JSON.stringify(text)}`);
  return type;
}

/** The address type the proxy heard for `address`, waiting briefly for an advertisement; public when silent. */
async function heardAddressType(proxy: BluetoothProxy, address: number, ctx: CommandContext): Promise<number> {
  const known = proxy.addressTypeOf(address);
  if (known !== undefined) return known;
  const heard = await new Promise<number | undefined>((resolve) => {
    const finish = (type: number | undefined): void => {
      clearTimeout(timer);
      off();
      ctx.signal.removeEventListener('abort', onAbort);
      resolve(type);
    };
    const onAbort = (): void => finish(undefined);
    const timer = setTimeout(() => finish(undefined), ADDRESS_TYPE_WAIT_MS);
    const off = proxy.onAdvertisement((ad) => {
      if (ad.address === address) finish(ad.addressType);
    });
    ctx.signal.addEventListener('abort', onAbort, { once: true });
  });
  ctx.signal.throwIfAborted();
  if (heard !== undefined) return heard;
  ctx.out.error(
    paint(ctx.out, 'yellow', 'note') +
      ` ${formatMac(address)} was not heard advertising via ${proxy.label}; connecting as a ${addressTypeName(0)} address (see --address-type)`,
  );
  return 0;
}

/** Lower-case hex of bytes. */
export function hexOf(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The bytes as text when they are valid UTF-8 without control characters (trailing NULs ignored), else undefined. */
export function printable(data: Uint8Array): string | undefined {
  let end = data.length;
  while (end > 0 && data[end - 1] === 0) end--;
  if (end === 0) return undefined;
  let text: string;
  try {
    text = utf8.decode(data.subarray(0, end));
  } catch {
    return undefined;
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejects binary values that happen to be valid UTF-8
  return /[\u0000-\u001f\u007f-\u009f]/.test(text) ? undefined : text;
}

/** Replaces control characters in device-supplied text so it cannot mess with the terminal. */
export function sanitize(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '\uFFFD');
}

/** `0x0012` form of a handle. */
export function handleText(handle: number): string {
  return `0x${handle.toString(16).padStart(4, '0')}`;
}

/** Short form (`2a00`) of a UUID on the Bluetooth base UUID, else the full UUID. */
export function shortUuid(uuid: string): string {
  if (!uuid.endsWith(BASE_UUID_SUFFIX)) return uuid;
  return uuid.slice(0, 8).replace(/^0000/, '');
}

// A few well-known assigned numbers, so the tree reads without a lookup table at hand.
const KNOWN_UUIDS: Readonly<Record<string, string>> = {
  '1800': 'Generic Access',
  '1801': 'Generic Attribute',
  '180a': 'Device Information',
  '180f': 'Battery',
  '180d': 'Heart Rate',
  '1812': 'Human Interface Device',
  '2a00': 'Device Name',
  '2a01': 'Appearance',
  '2a04': 'Peripheral Preferred Connection Parameters',
  '2a05': 'Service Changed',
  '2a19': 'Battery Level',
  '2a24': 'Model Number',
  '2a25': 'Serial Number',
  '2a26': 'Firmware Revision',
  '2a27': 'Hardware Revision',
  '2a28': 'Software Revision',
  '2a29': 'Manufacturer Name',
  '2900': 'Extended Properties',
  '2901': 'User Description',
  '2902': 'Client Characteristic Configuration',
  '2904': 'Presentation Format',
  '2908': 'Report Reference',
};

/** Short UUID plus its assigned name when well known: `2a00 Device Name`. */
export function uuidLabel(uuid: string): string {
  const short = shortUuid(uuid);
  const name = KNOWN_UUIDS[short];
  return name === undefined ? short : `${short} ${name}`;
}

/** JSON form of a per-attribute failure (a GATT status keeps its number and name). */
export function errorJson(error: unknown): Record<string, unknown> {
  const base = {
    code: error instanceof EspApiError ? error.code : 'ERROR',
    name: error instanceof Error ? error.name : 'Error',
    message: error instanceof Error ? error.message : String(error),
  };
  return error instanceof GattError ? { ...base, status: error.status, statusName: error.statusName } : base;
}

/** One-cell text of a per-attribute failure. */
export function errorText(error: unknown): string {
  if (error instanceof GattError) return `${error.statusName} (${error.status})`;
  return error instanceof EspApiError ? error.code : error instanceof Error ? error.message : String(error);
}

// Human output keeps table rows on one screen line; --json always carries the full value.
const MAX_HEX_BYTES = 32;
const MAX_TEXT_CHARS = 40;

/** Table cells [hex, text] of a value, shortened for terminals. */
export function valueCells(data: Uint8Array): [string, string] {
  const hex = data.length > MAX_HEX_BYTES ? `${hexOf(data.subarray(0, MAX_HEX_BYTES))}… (${data.length} bytes)` : hexOf(data);
  const text = printable(data);
  if (text === undefined) return [hex, ''];
  const safe = sanitize(text);
  return [hex, JSON.stringify(safe.length > MAX_TEXT_CHARS ? `${safe.slice(0, MAX_TEXT_CHARS)}…` : safe)];
}
