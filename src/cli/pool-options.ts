import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { ProxyConfig } from '../connection/proxy-session.js';
import { MdnsDiscovery, type MdnsSocketOptions } from '../discovery/mdns.js';
import { type ProxyDiscoverySource, ProxyPool, type ProxyPoolOptions, parseProxySpec } from '../pool/proxy-pool.js';
import type { DeviceRoute } from '../pool/routing.js';
import { sleep } from '../util/abort.js';
import { formatDuration } from '../util/duration.js';
import { type CommandArgs, durationOption, portOption, str, UsageError } from './command.js';
import { cliTapFor, SessionPhases, SILENCE_NOTE_MS } from './connect-feedback.js';
import { DEFAULT_POOL_READY_MS } from './option-groups.js';
import { type Output, paint } from './output.js';
import { secretOption } from './secret-options.js';

export { DEFAULT_POOL_READY_MS, POOL_OPTIONS } from './option-groups.js';

/** Notes shared by the pool commands. */
export const POOL_HELP = [
  'The pool: --proxy host[:port] (repeatable) and/or --config FILE, a JSON file',
  '  {"proxies":[{"host","port"?,"psk"?,"name"?,"password"?}],"keys":{"<node name or MAC>":"<base64 key>"},',
  '  "routes":{"<device MAC>":{"prefer"?:[P...],"require"?:[P...],"exclude"?:[P...]}}} (P: a proxy\'s id, node name,',
  '  host, host:port or MAC; a preferred proxy goes first whenever it can take the connect, the others are the fallback).',
  '  --psk is the key of every proxy without a key of its own (with mDNS: of every proxy whose TXT record says it',
  '  requires encryption). A legacy API password (firmware before 2026.1) is per proxy, in --config ("password");',
  '  --password and $ESPHOME_BLE_PASSWORD are for --host only (the pool ignores the variable: one password for every',
  '  proxy found by mDNS would go to proxies that never asked for it). With neither --proxy nor a config listing',
  '  proxies, proxies are found by mDNS',
  '  (_esphomelib._tcp). A proxy that is not up after a moment is named on stderr with what it waits for.',
].join('\n');

/** mDNS browse window before the pool is used: aioesphomeapi's 3 s query timeout. */
export const DEFAULT_DISCOVERY_MS = 3_000;

/** Contents of a `--config` file. */
export interface PoolConfigFile {
  readonly proxies: readonly ProxyConfig[];
  /** Noise keys by node name or network MAC (12 hex digits, any spelling); `*` applies to all. */
  readonly keys: Readonly<Record<string, string>>;
  /** Routes per device MAC: pinned proxies with fallback, required or excluded ones. */
  readonly routes?: Readonly<Record<string, DeviceRoute>>;
}

/** A pool opened from the command line, with what it took to build it. */
export interface CliPool {
  readonly pool: ProxyPool;
  /** Present when proxies come from mDNS. */
  readonly discovery: MdnsDiscovery | undefined;
  /** Deadline for proxies to connect (ms). */
  readonly timeout: number;
  /** What each proxy's connect waits for (the silent-port note). */
  readonly phases: SessionPhases;
  /** Closes the pool and the discovery socket. */
  close(): Promise<void>;
}

/** Reads and validates a `--config` file. */
export async function loadPoolConfig(path: string): Promise<PoolConfigFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new UsageError(`Cannot read --config ${path}: ${(cause as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new UsageError(`--config ${path} is not JSON: ${(cause as Error).message}`);
  }
  return parsePoolConfig(json, path);
}

/** Validates the JSON of a config file; errors name the file and the offending path. */
export function parsePoolConfig(json: unknown, source = 'config'): PoolConfigFile {
  const fail = (where: string, what: string): never => {
    throw new UsageError(`${source}: ${where}: ${what}`);
  };
  if (!isRecord(json)) return fail('(root)', 'expected an object {"proxies":[...],"keys":{...}}');
  for (const key of Object.keys(json)) {
    if (key !== 'proxies' && key !== 'keys' && key !== 'routes') fail(key, 'unknown key (expected proxies, keys, routes)');
  }
  const proxies: ProxyConfig[] = [];
  if (json.proxies !== undefined) {
    if (!Array.isArray(json.proxies)) fail('proxies', 'expected an array');
    for (const [i, entry] of (json.proxies as unknown[]).entries()) {
      const at = `proxies[${i}]`;
      if (!isRecord(entry)) return fail(at, 'expected an object {"host","port"?,"psk"?,"name"?}');
      for (const key of Object.keys(entry)) {
        if (!['host', 'port', 'psk', 'name', 'password'].includes(key)) fail(`${at}.${key}`, 'unknown key');
      }
      const host = entry.host;
      if (typeof host !== 'string' || host === '') return fail(`${at}.host`, 'expected a host name or address');
      const port = entry.port;
      if (port !== undefined && (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535)) {
        fail(`${at}.port`, 'expected a port number 1..65535');
      }
      for (const key of ['psk', 'name', 'password'] as const) {
        if (entry[key] !== undefined && typeof entry[key] !== 'string') fail(`${at}.${key}`, 'expected a string');
      }
      proxies.push({
        host,
        ...(typeof port === 'number' ? { port } : {}),
        ...(typeof entry.psk === 'string' ? { psk: entry.psk } : {}),
        ...(typeof entry.name === 'string' ? { name: entry.name } : {}),
        ...(typeof entry.password === 'string' ? { password: entry.password } : {}),
      });
    }
  }
  const keys: Record<string, string> = {};
  if (json.keys !== undefined) {
    if (!isRecord(json.keys)) return fail('keys', 'expected an object {"<node name or MAC>":"<base64 key>"}');
    for (const [name, value] of Object.entries(json.keys)) {
      if (typeof value !== 'string') fail(`keys.${name}`, 'expected a base64 key string');
      keys[normaliseKeyName(name)] = value as string;
    }
  }
  const routes: Record<string, DeviceRoute> = {};
  if (json.routes !== undefined) {
    if (!isRecord(json.routes))
      return fail('routes', 'expected an object {"<device MAC>":{"prefer":[...],"require":[...],"exclude":[...]}}');
    for (const [mac, route] of Object.entries(json.routes)) {
      const at = `routes.${mac}`;
      if (!/^[0-9a-f]{12}$/i.test(mac.replace(/[:-]/g, ''))) fail(at, 'expected a device MAC as the key');
      if (!isRecord(route)) return fail(at, 'expected an object {"prefer"?,"require"?,"exclude"?}');
      const entry: DeviceRoute = {};
      for (const [field, names] of Object.entries(route)) {
        if (field !== 'prefer' && field !== 'require' && field !== 'exclude')
          fail(`${at}.${field}`, 'unknown key (expected prefer, require, exclude)');
        if (!Array.isArray(names) || !names.every((n) => typeof n === 'string'))
          return fail(`${at}.${field}`, 'expected an array of proxy names');
        (entry as Record<string, readonly string[]>)[field] = names as string[];
      }
      routes[mac] = entry;
    }
  }
  return { proxies, keys, ...(json.routes === undefined ? {} : { routes }) };
}

/** The Noise key for a proxy by its node name or network MAC, else the `*` key, else undefined. */
export function keyFor(keys: Readonly<Record<string, string>>, name: string | undefined, mac: string | undefined): string | undefined {
  return (name !== undefined ? keys[name] : undefined) ?? (mac !== undefined ? keys[normaliseKeyName(mac)] : undefined) ?? keys['*'];
}

/** mDNS socket options from --mdns-interface / --mdns-port (empty: the OS default interface, port 5353). */
export function mdnsOptionsOf(args: CommandArgs): MdnsSocketOptions {
  const iface = str(args, 'mdns-interface');
  const port = portOption(args, 'mdns-port');
  if (iface !== undefined && isIP(iface) === 0)
    throw new UsageError(`--mdns-interface must be an IP address, got ${JSON.stringify(iface)}`);
  return {
    // Bound to the wildcard address: a socket bound to the interface address does not receive multicast on Linux.
    ...(iface !== undefined ? { interface: iface, bind: isIP(iface) === 6 ? '::' : '0.0.0.0' } : {}),
    ...(port !== undefined ? { port } : {}),
  };
}

/** The pool-wide deadline from --timeout (ms). */
export function poolTimeoutOf(args: CommandArgs): number {
  return durationOption(args, 'timeout') ?? DEFAULT_POOL_READY_MS;
}

/** Keys from --config plus --psk / --psk-file / $ESPHOME_BLE_PSK, the key of every proxy without one of its own. */
export async function keysOf(
  args: CommandArgs,
): Promise<{ config: PoolConfigFile | undefined; keys: Record<string, string>; fallback: string | undefined }> {
  const path = str(args, 'config');
  const config = path === undefined ? undefined : await loadPoolConfig(path);
  const keys: Record<string, string> = { ...(config?.keys ?? {}) };
  const fallback = secretOption(args, { flag: 'psk', env: 'ESPHOME_BLE_PSK' });
  return { config, keys, fallback };
}

/**
 * Builds a ProxyPool from the command line: --proxy and --config proxies, or mDNS discovery when
 * neither names one. The pool is started; wait for it with waitForPool().
 */
export async function openPool(args: CommandArgs, options: ProxyPoolOptions = {}): Promise<CliPool> {
  const timeout = poolTimeoutOf(args);
  const mdns = mdnsOptionsOf(args);
  const { config, keys, fallback } = await keysOf(args);
  const specs: ProxyConfig[] = [];
  const given = args.values.proxy;
  const proxyArgs = Array.isArray(given)
    ? given.filter((v): v is string => typeof v === 'string')
    : typeof given === 'string'
      ? [given]
      : [];
  for (const text of proxyArgs) {
    const spec = parseProxySpec(text);
    if (spec.host === '' || (spec.port !== undefined && (spec.port < 1 || spec.port > 65_535))) {
      throw new UsageError(`--proxy must be host[:port], got ${JSON.stringify(text)}`);
    }
    specs.push(spec);
  }
  specs.push(...(config?.proxies ?? []));
  const withKeys = specs.map((spec) => {
    const psk = spec.psk ?? keyFor(keys, spec.name, undefined) ?? fallback;
    return psk === undefined ? spec : { ...spec, psk };
  });
  // Each proxy session (and each reconnect) gets its own recording when `record`/ESPHOME_BLE_RECORD is on.
  const phases = new SessionPhases();
  const poolOptions: ProxyPoolOptions = {
    clientInfo: 'esphome-ble cli',
    connectTimeout: timeout,
    tapFor: (target) => {
      const phase = phases.tapFor(target);
      const other = cliTapFor(target);
      if (other === undefined) return phase;
      return (direction, id, payload) => {
        phase(direction, id, payload);
        other(direction, id, payload);
      };
    },
    ...(config?.routes === undefined ? {} : { routes: config.routes }),
    ...options,
  };
  if (withKeys.length > 0) {
    const pool = new ProxyPool([], poolOptions);
    try {
      for (const spec of withKeys) pool.addProxy(spec);
    } catch (error) {
      await pool.close();
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
    pool.start();
    return { pool, discovery: undefined, timeout, phases, close: () => pool.close() };
  }
  const discovery = new MdnsDiscovery(mdns);
  const pool = new ProxyPool([], { ...poolOptions, discovery: keyedDiscovery(discovery, keys, fallback), keys });
  pool.start();
  return {
    pool,
    discovery,
    timeout,
    phases,
    async close() {
      await pool.close();
      await discovery.close();
    },
  };
}

/**
 * Waits until the pool's proxies have connected: with mDNS, first browses for `discoveryMs`
 * (answers keep adding proxies meanwhile), then gives every proxy up to the pool's timeout. Past SILENCE_NOTE_MS,
 * each proxy still not up is named on stderr with what it waits for (when `out` is given).
 */
export async function waitForPool(cli: CliPool, signal: AbortSignal, discoveryMs = DEFAULT_DISCOVERY_MS, out?: Output): Promise<void> {
  const started = Date.now();
  const deadline = started + (cli.discovery === undefined ? 0 : Math.min(discoveryMs, cli.timeout)) + cli.timeout;
  const timer = out === undefined ? undefined : setTimeout(() => noteWaitingProxies(out, cli, deadline - Date.now()), SILENCE_NOTE_MS);
  try {
    if (cli.discovery !== undefined) {
      await sleep(Math.min(discoveryMs, cli.timeout), signal);
      if (cli.discovery.error !== undefined) throw cli.discovery.error;
    }
    await cli.pool.ready({ timeout: cli.timeout, signal });
    signal.throwIfAborted();
  } finally {
    clearTimeout(timer);
  }
}

/** One stderr note per proxy that has not connected yet, with its last error, and how long the wait goes on. */
function noteWaitingProxies(out: Output, cli: CliPool, leftMs: number): void {
  const waiting = cli.pool.proxies().filter((p) => !p.online && p.problem === undefined);
  const left = `giving up in ${formatDuration(Math.max(0, leftMs))} (--timeout)`;
  if (cli.pool.proxies().length === 0 && cli.discovery !== undefined) {
    out.error(`${paint(out, 'yellow', 'note')} no proxy has answered on mDNS (_esphomelib._tcp) yet; still browsing`);
    return;
  }
  for (const p of waiting) {
    const label = p.name === undefined || p.name === p.id ? p.id : `${p.name} (${p.id})`;
    const what = cli.phases.waitingFor(p.host, p.port);
    const last =
      p.lastError === undefined ? (what === undefined ? ' (no answer yet)' : '') : ` (last attempt: ${sanitizeText(p.lastError)})`;
    const phase = what === undefined ? '' : `: waiting for ${what}`;
    out.error(`${paint(out, 'yellow', 'note')} waiting for proxy ${sanitizeText(label)} to connect${phase}${last}; ${left}`);
  }
}

function sanitizeText(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: device-supplied text must not steer the terminal
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '\uFFFD');
}

/**
 * Passes discovery events on, first giving the fallback key to each proxy whose TXT says it requires
 * encryption and that has no key of its own: plaintext proxies must not get one (their handshake would fail).
 * The pool looks `keys` up when a proxy appears, so filling it in just before is enough.
 */
function keyedDiscovery(discovery: MdnsDiscovery, keys: Record<string, string>, fallback: string | undefined): ProxyDiscoverySource {
  return {
    async *events(options = {}) {
      for await (const event of discovery.events(options)) {
        if (event.type !== 'down' && fallback !== undefined && event.proxy.txt.encryption === 'required') {
          if (keyFor(keys, event.proxy.name, event.proxy.txt.mac) === undefined) keys[event.proxy.name] = fallback;
        }
        yield event;
      }
    },
  };
}

/** Node names stay as written; MACs in any spelling become 12 lower-case hex digits (the TXT `mac` form). */
function normaliseKeyName(name: string): string {
  const hex = name.replace(/[:-]/g, '').toLowerCase();
  return /^[0-9a-f]{12}$/.test(hex) ? hex : name;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
