import { featureNames } from '../../bluetooth/features.js';
import { ApiConnection } from '../../connection/connection.js';
import { DEFAULT_DISCOVERY_TIMEOUT_MS, type DiscoveredProxy, discoverProxies } from '../../discovery/mdns.js';
import { looksLikeBluetoothProxy } from '../../discovery/txt.js';
import { EspApiError } from '../../errors.js';
import { BluetoothConnectionsFreeResponse, SubscribeBluetoothConnectionsFreeRequest } from '../../gen/api_pb.js';
import { type Command, flag, num, type OptionSpec, UsageError } from '../command.js';
import { type Output, paint, Spinner, table } from '../output.js';
import { keyFor, keysOf, mdnsOptionsOf } from '../pool-options.js';
import { sanitize } from '../single-proxy.js';

/** Deadline of each follow-up API connect: a slow ESP on weak Wi-Fi takes a few seconds. */
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** What `discover --json` reports per device. */
export interface DiscoverJson {
  name: string;
  host: string;
  addresses: readonly string[];
  port: number;
  mac: string | null;
  /** ESPHome version from the TXT record. */
  version: string | null;
  platform: string | null;
  board: string | null;
  friendlyName: string | null;
  /** `required` (Noise key set), `supported` (no key yet) or `none`, from the TXT record. */
  encryption: string;
  /** The TXT names an official Bluetooth proxy image (a heuristic; custom YAML proxies carry no such hint). */
  proxyImage: boolean;
  connected: boolean;
  /** Transport actually used. */
  transport: 'noise' | 'plaintext' | null;
  esphomeVersion: string | null;
  model: string | null;
  bluetooth: {
    featureFlags: number;
    features: string[];
    bluetoothMac: string | null;
    slots: { free: number; limit: number; allocated: number } | null;
  } | null;
  error: { code: string; message: string } | null;
}

const OPTIONS = {
  timeout: { type: 'string' },
  'connect-timeout': { type: 'string' },
  config: { type: 'string' },
  psk: { type: 'string' },
  'no-connect': { type: 'boolean' },
  'mdns-interface': { type: 'string' },
  'mdns-port': { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies OptionSpec;

/** `esphome-ble discover`: find ESPHome nodes by mDNS and say which are usable Bluetooth proxies. */
export const discoverCommand: Command = {
  name: 'discover',
  summary: 'Find ESPHome nodes by mDNS, then connect to each and report Bluetooth features and slots',
  usage:
    'esphome-ble discover [--timeout ms] [--connect-timeout ms] [--config FILE] [--psk B64] [--no-connect] [--mdns-interface IP --mdns-port N] [--json]',
  options: OPTIONS,
  help: [
    `Browses _esphomelib._tcp for --timeout ms (default ${DEFAULT_DISCOVERY_TIMEOUT_MS}), listing name, address, ESPHome version and`,
    'encryption from the TXT record. Then connects to each (unless --no-connect; --connect-timeout ms, default',
    `${DEFAULT_CONNECT_TIMEOUT_MS}) with the Noise key from --config keys (by node name or MAC), --psk or $ESPHOME_BLE_PSK, and adds the`,
    'Bluetooth proxy features and connection slots, or why the connect failed. Connecting does not take over',
    'the Bluetooth subscription (Home Assistant keeps it). --json prints ONE JSON array:',
    '[{"name","host","addresses":[...],"port","mac","version","platform","board","friendlyName","encryption",',
    '"proxyImage","connected","transport","esphomeVersion","model","bluetooth":{"featureFlags","features":[...],',
    '"bluetoothMac","slots":{"free","limit","allocated"}|null}|null,"error":{"code","message"}|null}].',
    '--mdns-interface IP / --mdns-port N pin the mDNS socket (e.g. 127.0.0.1 and a private port in tests).',
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const timeout = positive(num(args, 'timeout'), 'timeout') ?? DEFAULT_DISCOVERY_TIMEOUT_MS;
    const connectTimeout = positive(num(args, 'connect-timeout'), 'connect-timeout') ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const json = flag(args, 'json');
    const connect = !flag(args, 'no-connect');
    const mdns = mdnsOptionsOf(args);
    const { keys, fallback } = await keysOf(args);
    const spinner = new Spinner(out);
    try {
      spinner.update(`browsing mDNS for ${(timeout / 1000).toFixed(1)} s`);
      const found = (await discoverProxies({ ...mdns, timeout, signal })).sort((a, b) => a.name.localeCompare(b.name));
      spinner.update(`connecting to ${found.length} node${found.length === 1 ? '' : 's'}`);
      const results = await Promise.all(
        found.map((proxy) => (connect ? probe(proxy, keys, fallback, connectTimeout, signal) : Promise.resolve(baseJson(proxy)))),
      );
      spinner.stop();
      signal.throwIfAborted();
      if (json) out.json(results);
      else printResults(out, results, timeout, connect);
      return 0;
    } finally {
      spinner.stop();
    }
  },
};

function positive(value: number | undefined, name: string): number | undefined {
  if (value !== undefined && !(value > 0)) throw new UsageError(`--${name} must be a positive number of milliseconds`);
  return value;
}

function baseJson(proxy: DiscoveredProxy): DiscoverJson {
  const txt = proxy.txt;
  return {
    name: proxy.name,
    host: proxy.host,
    addresses: proxy.addresses,
    port: proxy.port,
    mac: txt.mac ?? null,
    version: txt.version ?? null,
    platform: txt.platform ?? null,
    board: txt.board ?? null,
    friendlyName: txt.friendlyName ?? null,
    encryption: txt.encryption,
    proxyImage: looksLikeBluetoothProxy(txt),
    connected: false,
    transport: null,
    esphomeVersion: null,
    model: null,
    bluetooth: null,
    error: null,
  };
}

/** Connects once (without becoming the Bluetooth subscriber) to read features and slots. */
async function probe(
  proxy: DiscoveredProxy,
  keys: Readonly<Record<string, string>>,
  fallback: string | undefined,
  timeout: number,
  signal: AbortSignal,
): Promise<DiscoverJson> {
  const result = baseJson(proxy);
  const host = proxy.addresses[0] ?? proxy.host;
  // A device that publishes no `api_encryption` speaks plaintext (or is unprovisioned): a key would only fail the handshake.
  const psk = proxy.txt.encryption === 'required' ? (keyFor(keys, proxy.name, proxy.txt.mac) ?? fallback) : undefined;
  if (proxy.txt.encryption === 'required' && psk === undefined) {
    return {
      ...result,
      error: {
        code: 'ESPAPI_ERR_ENCRYPTION_REQUIRED',
        message: 'requires a Noise key: add it to --config keys (by node name or MAC), or pass --psk / $ESPHOME_BLE_PSK',
      },
    };
  }
  let api: ApiConnection | undefined;
  try {
    api = await ApiConnection.connect({ host, port: proxy.port, psk, clientInfo: 'esphome-ble discover', timeout, signal });
    const info = api.deviceInfo;
    const flags = info.bluetoothProxyFeatureFlags;
    let slots: { free: number; limit: number; allocated: number } | null = null;
    if (flags & 0x02) {
      const reply = await api.request(SubscribeBluetoothConnectionsFreeRequest, {}, BluetoothConnectionsFreeResponse, () => true, {
        timeout,
        signal,
      });
      slots = { free: reply.free, limit: reply.limit, allocated: reply.allocated.filter((a) => a !== 0).length };
    }
    return {
      ...result,
      connected: true,
      transport: api.encrypted ? 'noise' : 'plaintext',
      esphomeVersion: info.esphomeVersion || null,
      model: info.model || null,
      bluetooth:
        flags === 0 ? null : { featureFlags: flags, features: featureNames(flags), bluetoothMac: info.bluetoothMacAddress || null, slots },
    };
  } catch (error) {
    if (signal.aborted) throw error;
    return {
      ...result,
      connected: api !== undefined,
      error: { code: error instanceof EspApiError ? error.code : 'ERROR', message: error instanceof Error ? error.message : String(error) },
    };
  } finally {
    await api?.close({ timeout: 2_000 }).catch(() => {});
  }
}

function printResults(out: Output, results: readonly DiscoverJson[], timeout: number, connect: boolean): void {
  if (results.length === 0) {
    out.line(`No ESPHome node answered in ${(timeout / 1000).toFixed(1)} s.`);
    out.line(paint(out, 'dim', 'mDNS needs the same network segment (and multicast allowed); name a proxy with --proxy otherwise.'));
    return;
  }
  const rows = results.map((r) => [
    sanitize(r.name),
    addressCell(r),
    r.version ?? '-',
    r.encryption === 'required' ? 'noise' : r.encryption === 'supported' ? 'no key yet' : 'plaintext',
    bluetoothCell(out, r, connect),
    slotsCell(out, r),
  ]);
  out.line(table(['name', 'address', 'version', 'encryption', 'bluetooth', 'slots'], rows));
  for (const r of results) if (r.error !== null) out.line(`${paint(out, 'red', sanitize(r.name))}: ${sanitize(r.error.message)}`);
  const proxies = results.filter((r) => r.bluetooth?.features.includes('ACTIVE_CONNECTIONS')).length;
  const failed = results.filter((r) => r.error !== null).length;
  const nodes = `${results.length} node${results.length === 1 ? '' : 's'}`;
  const summary = connect
    ? `${nodes}, ${proxies} usable Bluetooth prox${proxies === 1 ? 'y' : 'ies'}${failed > 0 ? `, ${failed} failed to connect` : ''}`
    : `${nodes} (not connected: --no-connect)`;
  out.line(paint(out, 'dim', summary));
}

function addressCell(r: DiscoverJson): string {
  const host = r.addresses[0] ?? r.host;
  return host.includes(':') ? `[${host}]:${r.port}` : `${host}:${r.port}`;
}

function bluetoothCell(out: Output, r: DiscoverJson, connect: boolean): string {
  if (r.error !== null)
    return paint(out, 'red', r.error.code === 'ESPAPI_ERR_ENCRYPTION_REQUIRED' && !r.connected ? 'needs a key' : r.error.code);
  if (!connect) return r.proxyImage ? 'proxy image' : '-';
  if (r.bluetooth === null) return paint(out, 'dim', 'not a proxy');
  const active = r.bluetooth.features.includes('ACTIVE_CONNECTIONS');
  return `${active ? 'active' : 'passive only'} (0x${r.bluetooth.featureFlags.toString(16)})`;
}

function slotsCell(out: Output, r: DiscoverJson): string {
  const slots = r.bluetooth?.slots;
  if (slots === undefined || slots === null) return '-';
  const text = `${slots.free}/${slots.limit} free`;
  return slots.free === 0 ? paint(out, 'red', text) : text;
}
