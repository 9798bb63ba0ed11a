import { formatMac } from '../../bluetooth/address.js';
import { featureNames } from '../../bluetooth/features.js';
import { type ApiConnection, DEFAULT_API_PORT } from '../../connection/connection.js';
import { DEFAULT_DISCOVERY_TIMEOUT_MS, type DiscoveredProxy, discoverProxies } from '../../discovery/mdns.js';
import { looksLikeBluetoothProxy } from '../../discovery/txt.js';
import { EncryptionRequiredError, EspApiError } from '../../errors.js';
import type { InspectTarget } from '../../inspect/proxy-inspector.js';
import { SlotInspector, type SlotReport } from '../../inspect/slot-inspector.js';
import { formatDuration } from '../../util/duration.js';
import { type Command, type CommandContext, durationOption, flag, type OptionSpec, UsageError } from '../command.js';
import { connectNode } from '../connect-feedback.js';
import { discoveredTarget, namedTargets } from '../inspect-options.js';
import { jsonMac } from '../json-format.js';
import { OUTPUT_OPTIONS } from '../option-groups.js';
import { EXIT, exitCodeFor, type Output, paint, Spinner, table } from '../output.js';
import { mdnsOptionsOf } from '../pool-options.js';
import { sanitize } from '../single-proxy.js';
import { deprecatedOption, option } from '../vocabulary.js';

/** Deadline of each follow-up API connect: a slow ESP on weak Wi-Fi takes a few seconds. */
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** What `discover --json` reports per device. */
export interface DiscoverJson {
  name: string;
  host: string;
  addresses: readonly string[];
  port: number;
  mac: string | null;
  /** Where it came from: an mDNS answer, or --proxy / --config (then the TXT fields are null). */
  source: 'mdns' | 'named';
  /** ESPHome version from the TXT record. */
  version: string | null;
  platform: string | null;
  board: string | null;
  friendlyName: string | null;
  /** `required` (Noise key set), `supported` (no key yet) or `none`, from the TXT record; null for a named proxy. */
  encryption: string | null;
  /** The TXT names an official Bluetooth proxy image (a heuristic; custom YAML proxies carry no such hint). */
  proxyImage: boolean;
  connected: boolean;
  /** Transport actually used. */
  transport: 'noise' | 'plaintext' | null;
  esphomeVersion: string | null;
  model: string | null;
  manufacturer: string | null;
  bluetooth: {
    featureFlags: number;
    features: string[];
    /** Forwards advertisements only: no connections, no slot query to read (slots null). */
    advertisementOnly: boolean;
    bluetoothMac: string | null;
    /** `allocated`: the MACs holding a slot (as in `slots --json`). */
    slots: { free: number; limit: number; allocated: string[] } | null;
  } | null;
  error: { code: string; message: string } | null;
}

const OPTIONS = {
  proxy: option('proxy', {
    description: 'A proxy (or any ESPHome node) to check directly instead of browsing mDNS (repeatable)',
    default: 'browse mDNS',
    multiple: true,
  }),
  config: option('config', { default: 'none' }),
  psk: option('psk', { description: 'Noise key of every node without a key in --config; also $ESPHOME_BLE_PSK', default: 'plaintext' }),
  'psk-file': option('psk-file', { default: 'none' }),
  'listen-for': option('listen-for', {
    description: 'Listen this long for mDNS answers; a bare number is milliseconds',
    default: formatDuration(DEFAULT_DISCOVERY_TIMEOUT_MS),
  }),
  timeout: deprecatedOption('listen-for', { type: 'string', kind: 'duration', unit: 'ms', meaning: '--timeout is a deadline elsewhere' }),
  'connect-timeout': option('connect-timeout', {
    description: 'Deadline of connecting to each node and its slot query together; bare: ms',
    default: formatDuration(DEFAULT_CONNECT_TIMEOUT_MS),
  }),
  'no-connect': option('no-connect', { default: 'off' }),
  'mdns-interface': option('mdns-interface', { default: 'the OS default' }),
  'mdns-port': option('mdns-port', { default: '5353' }),
  ...OUTPUT_OPTIONS,
} as const satisfies OptionSpec;

/** `esphome-ble discover`: find ESPHome nodes by mDNS and say which are usable Bluetooth proxies. */
export const discoverCommand: Command = {
  name: 'discover',
  summary: 'Find ESPHome nodes by mDNS (or check named ones), then report Bluetooth features and slots without taking anything',
  usage: 'esphome-ble discover [--proxy host[:port]...] [options]',
  options: OPTIONS,
  help: [
    'Lists name, address, ESPHome version and encryption from the TXT record, then connects to each node (unless',
    '--no-connect) with the Noise key from --config keys (by node name or MAC), --psk or $ESPHOME_BLE_PSK, and adds',
    'the Bluetooth proxy features and connection slots, or why the connect failed. It reads the slots with the slot',
    'query only: no advertisement subscribe, so Home Assistant keeps the Bluetooth subscription. An advertisement-only',
    'proxy (no ACTIVE_CONNECTIONS) answers no slot query: shown as "adv. only", slots null.',
    'Nodes named by --proxy and --config are checked directly (their TXT fields are null, "source":"named").',
    'Exit 0 when a node connected (or with --no-connect when one answered); 1 when none did, or none was found;',
    '3 when every node refused the key or is another node than named.',
    '--json prints ONE JSON array:',
    '[{"name","host","addresses":[...],"port","mac":"AA:BB:CC:DD:EE:FF"|null,"source","version","platform","board",',
    '"friendlyName","encryption","proxyImage","connected","transport","esphomeVersion","model","manufacturer",',
    '"bluetooth":{"featureFlags","features":[...],"advertisementOnly","bluetoothMac","slots":{"free","limit",',
    '"allocated":["AA:BB:CC:DD:EE:FF",...]}|null}|null,"error":{"code","message"}|null}].',
  ].join('\n'),
  examples: [
    'esphome-ble discover',
    'esphome-ble discover --proxy 192.168.1.40 --proxy 192.168.1.41 --json',
    'esphome-ble discover --no-connect --listen-for 10s',
  ],
  async run(args, ctx) {
    const { out, signal } = ctx;
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const timeout = durationOption(args, 'listen-for') ?? DEFAULT_DISCOVERY_TIMEOUT_MS;
    const connectTimeout = durationOption(args, 'connect-timeout') ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const json = flag(args, 'json');
    const connect = !flag(args, 'no-connect');
    const mdns = mdnsOptionsOf(args);
    const { targets, keys, fallback } = await namedTargets(args);
    const spinner = new Spinner(out);
    /** Why each node failed, for the exit code. */
    const errors = new Map<DiscoverJson, unknown>();
    try {
      let found: Array<{ base: DiscoverJson; target: InspectTarget | undefined }>;
      if (targets.length > 0) {
        found = targets.map((target) => ({ base: namedJson(target), target }));
      } else {
        spinner.update(`browsing mDNS for ${(timeout / 1000).toFixed(1)} s`);
        const proxies = (await discoverProxies({ ...mdns, timeout, signal })).sort((a, b) => a.name.localeCompare(b.name));
        found = proxies.map((proxy) => ({ base: baseJson(proxy), target: mdnsTarget(proxy, keys, fallback) }));
      }
      spinner.update(`connecting to ${found.length} node${found.length === 1 ? '' : 's'}`);
      const results = await Promise.all(
        found.map(({ base, target }) => (connect ? probe(ctx, base, target, connectTimeout, errors) : Promise.resolve(base))),
      );
      spinner.stop();
      signal.throwIfAborted();
      if (json) out.json(results);
      else printResults(out, results, timeout, connect, targets.length > 0);
      return discoverExit(results, connect, errors);
    } finally {
      spinner.stop();
    }
  },
};

/**
 * Exit 0 when a node connected (with --no-connect: when one answered), else as the failure table says for the causes
 * when they agree (every node refused our key: 3), else 1 (nothing found, or mixed causes).
 */
function discoverExit(results: readonly DiscoverJson[], connect: boolean, errors: ReadonlyMap<DiscoverJson, unknown>): number {
  if (results.length === 0) return EXIT.failure;
  if (!connect || results.some((r) => r.connected)) return EXIT.ok;
  const exits = new Set(results.map((r) => exitCodeFor(errors.get(r))));
  const [only] = exits;
  return exits.size === 1 && only !== undefined ? only : EXIT.failure;
}

function baseJson(proxy: DiscoveredProxy): DiscoverJson {
  const txt = proxy.txt;
  return {
    name: proxy.name,
    host: proxy.host,
    addresses: proxy.addresses,
    port: proxy.port,
    mac: jsonMac(txt.mac),
    source: 'mdns',
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
    manufacturer: null,
    bluetooth: null,
    error: null,
  };
}

/** A proxy named by --proxy / --config: what the command line says, nothing from mDNS. */
function namedJson(target: InspectTarget): DiscoverJson {
  const port = target.port ?? DEFAULT_API_PORT;
  return {
    name: target.name ?? `${target.host}:${port}`,
    host: target.host,
    addresses: [target.host],
    port,
    mac: null,
    source: 'named',
    version: null,
    platform: null,
    board: null,
    friendlyName: null,
    encryption: null,
    proxyImage: false,
    connected: false,
    transport: null,
    esphomeVersion: null,
    model: null,
    manufacturer: null,
    bluetooth: null,
    error: null,
  };
}

/**
 * How to reach a node found by mDNS; undefined when its TXT says it requires encryption and no key is known. A node
 * that publishes no `api_encryption` speaks plaintext (or is unprovisioned): a key would only fail the handshake.
 */
function mdnsTarget(
  proxy: DiscoveredProxy,
  keys: Readonly<Record<string, string>>,
  fallback: string | undefined,
): InspectTarget | undefined {
  const target = discoveredTarget(proxy, keys, fallback);
  return proxy.txt.encryption === 'required' && target.psk === undefined ? undefined : target;
}

/** Connects once to read features and slots with the slot query (never subscribing, see SlotInspector). */
async function probe(
  ctx: CommandContext,
  result: DiscoverJson,
  target: InspectTarget | undefined,
  timeout: number,
  errors: Map<DiscoverJson, unknown>,
): Promise<DiscoverJson> {
  const { signal } = ctx;
  if (target === undefined) {
    const failed = {
      ...result,
      error: {
        code: 'ESPAPI_ERR_ENCRYPTION_REQUIRED',
        message: 'requires a Noise key: add it to --config keys (by node name or MAC), or pass --psk / $ESPHOME_BLE_PSK',
      },
    };
    errors.set(failed, new EncryptionRequiredError(failed.error.message));
    return failed;
  }
  let api: ApiConnection | undefined;
  let inspector: SlotInspector | undefined;
  // One deadline for the node: connecting and the slot query together.
  const deadline = Date.now() + timeout;
  const left = (): number => Math.max(1, deadline - Date.now());
  try {
    api = await connectNode(ctx, { ...target, clientInfo: 'esphome-ble discover', timeout, signal }, '--connect-timeout');
  } catch (error) {
    if (signal.aborted) throw error;
    const failed = { ...result, error: errorJson(error) };
    errors.set(failed, error);
    return failed;
  }
  try {
    inspector = new SlotInspector(api);
    const info = api.deviceInfo;
    const flags = inspector.features;
    const connected: DiscoverJson = {
      ...result,
      name: result.source === 'named' ? api.hello.name || info.name || result.name : result.name,
      mac: result.mac ?? jsonMac(info.macAddress),
      connected: true,
      transport: api.encrypted ? 'noise' : 'plaintext',
      esphomeVersion: info.esphomeVersion || null,
      model: info.model || null,
      manufacturer: info.manufacturer || null,
      bluetooth:
        flags === 0
          ? null
          : {
              featureFlags: flags,
              features: featureNames(flags),
              advertisementOnly: inspector.advertisementOnly,
              bluetoothMac: jsonMac(info.bluetoothMacAddress),
              slots: null,
            },
    };
    // What the node said at Hello stands even when the slot query then goes unanswered.
    let slots: SlotReport | undefined;
    try {
      slots = (await inspector.poll({ timeout: left(), signal })).slots;
    } catch (error) {
      if (signal.aborted) throw error;
      return { ...connected, error: errorJson(error) };
    }
    if (connected.bluetooth === null || slots === undefined) return connected;
    return {
      ...connected,
      bluetooth: {
        ...connected.bluetooth,
        slots: { free: slots.free, limit: slots.limit, allocated: slots.allocated.map((a) => formatMac(a)) },
      },
    };
  } finally {
    inspector?.close();
    await api.close({ timeout: Math.min(2_000, Math.max(100, left())) }).catch(() => {});
  }
}

function errorJson(error: unknown): { code: string; message: string } {
  return { code: error instanceof EspApiError ? error.code : 'ERROR', message: error instanceof Error ? error.message : String(error) };
}

function printResults(out: Output, results: readonly DiscoverJson[], timeout: number, connect: boolean, named: boolean): void {
  if (results.length === 0 && !named) {
    out.line(`No ESPHome node answered in ${(timeout / 1000).toFixed(1)} s.`);
    out.line(paint(out, 'dim', 'mDNS needs the same network segment (and multicast allowed); name a proxy with --proxy otherwise.'));
    return;
  }
  const rows = results.map((r) => [
    sanitize(r.name),
    sanitize(addressCell(r)),
    sanitize(r.version ?? r.esphomeVersion ?? '-'),
    encryptionCell(r),
    bluetoothCell(out, r, connect),
    slotsCell(out, r),
  ]);
  out.line(table(['name', 'address', 'version', 'encryption', 'bluetooth', 'slots'], rows));
  for (const r of results) if (r.error !== null) out.line(`${paint(out, 'red', sanitize(r.name))}: ${sanitize(r.error.message)}`);
  const usable = results.filter((r) => r.error === null && r.bluetooth?.features.includes('ACTIVE_CONNECTIONS')).length;
  // A node that said Hello and then did not answer the slot query did connect: say what failed.
  const unreachable = results.filter((r) => r.error !== null && !r.connected).length;
  const silent = results.filter((r) => r.error !== null && r.connected && r.error.code === 'ESPAPI_ERR_TIMEOUT').length;
  const broken = results.filter((r) => r.error !== null && r.connected && r.error.code !== 'ESPAPI_ERR_TIMEOUT').length;
  const nodes = `${results.length} node${results.length === 1 ? '' : 's'}`;
  const problems = [
    unreachable > 0 ? `, ${unreachable} failed to connect` : '',
    silent > 0 ? `, ${silent} connected but did not answer the slot query` : '',
    broken > 0 ? `, ${broken} failed after connecting` : '',
  ].join('');
  const summary = connect
    ? `${nodes}, ${usable} usable Bluetooth prox${usable === 1 ? 'y' : 'ies'}${problems}`
    : `${nodes} (not connected: --no-connect)`;
  out.line(paint(out, 'dim', summary));
}

function encryptionCell(r: DiscoverJson): string {
  if (r.encryption === null) return r.transport ?? '-';
  return r.encryption === 'required' ? 'noise' : r.encryption === 'supported' ? 'no key yet' : 'plaintext';
}

function addressCell(r: DiscoverJson): string {
  const host = r.addresses[0] ?? r.host;
  return host.includes(':') ? `[${host}]:${r.port}` : `${host}:${r.port}`;
}

function bluetoothCell(out: Output, r: DiscoverJson, connect: boolean): string {
  if (r.error !== null && !r.connected)
    return paint(out, 'red', r.error.code === 'ESPAPI_ERR_ENCRYPTION_REQUIRED' ? 'needs a key' : r.error.code);
  if (!connect) return r.proxyImage ? 'proxy image' : '-';
  if (r.bluetooth === null) return paint(out, 'dim', 'not a proxy');
  const active = r.bluetooth.features.includes('ACTIVE_CONNECTIONS');
  return `${active ? 'active' : r.bluetooth.advertisementOnly ? 'adv. only' : 'passive only'} (0x${r.bluetooth.featureFlags.toString(16)})`;
}

function slotsCell(out: Output, r: DiscoverJson): string {
  if (r.connected && r.error?.code === 'ESPAPI_ERR_TIMEOUT') return paint(out, 'red', 'no answer');
  const slots = r.bluetooth?.slots;
  if (slots === undefined || slots === null) return '-';
  const text = `${slots.free}/${slots.limit} free`;
  return slots.free === 0 ? paint(out, 'red', text) : text;
}
