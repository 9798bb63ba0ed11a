import { formatMac } from '../bluetooth/address.js';
import type { BleConnection } from '../bluetooth/ble-connection.js';
import { describeConnectionError } from '../bluetooth/codes.js';
import type { GattServices } from '../bluetooth/gatt.js';
import {
  type AttemptRecord,
  ConnectFailedError,
  ConnectionAbortedError,
  DeviceNotFoundError,
  type ErrorCode,
  EspApiError,
  NoProxyAvailableError,
  OutOfSlotsError,
  type ProxyCause,
} from '../errors.js';
import { FAILURE_TABLE, failureRule } from '../failure-table.js';
import type { PooledConnection } from '../pool/pooled-connection.js';
import type { ProxyPool, ProxyPoolOptions, ProxySnapshot } from '../pool/proxy-pool.js';
import { type CommandArgs, type CommandContext, durationOption, flag, str, UsageError } from './command.js';
import { DEFAULT_LISTEN_MS } from './option-groups.js';
import { EXIT, type Output, paint, reportError, Spinner } from './output.js';
import { type CliPool, openPool, POOL_HELP, waitForPool } from './pool-options.js';
import { announceSubscription } from './real-home.js';
import { countOption, runWithDevice, sanitize, timeoutOf } from './single-proxy.js';

export { DEFAULT_LISTEN_MS, LINK_OPTIONS, SOURCE_OPTIONS } from './option-groups.js';

/** Notes about the two ways of reaching proxies (scan and the like). */
export const SOURCE_HELP = ['With --host the command talks to that one proxy; without it, to every proxy of the pool.', POOL_HELP].join(
  '\n',
);

/** Notes about the pool path of the link commands (gatt, read, write, notify, pair). */
export const POOL_LINK_HELP = [
  'Without --host the command connects through the best proxy of the pool that hears the device (RSSI, free',
  'slots, recent failures), failing over to another proxy and retrying (--attempts). --listen-for listens first so',
  "every proxy's RSSI counts (it ends early once every online proxy heard the device).",
  'The proxy used goes to stderr, with the attempt timeline when it took more than one attempt; every --json object',
  'gains "proxy" (pool id) and "attempts":[{"attempt","proxy"|null,"rssi"|null,"score"|null,"code"|null,"reason"|null,"ms","ok",',
  '"failure"|null,"route":[{"kind","proxy"|null,"detail"}]}] ("failure": what it meant, e.g. controllerRefused for a 0x100',
  'at once; "route": a pinned or bonded proxy first, a fallback, a ghost link released). Per-device routes come from --config.',
  'A failed connect (device not found, out of slots, aborted, failed) prints one line with advice and exits 1',
  '(--json: {"error":{"code","name","message","advice","attempts":[...]}}).',
  POOL_HELP,
].join('\n');

/** Options that only make sense for the pool. */
const POOL_ONLY = ['proxy', 'config', 'mdns-interface', 'mdns-port', 'attempts', 'listen-for', 'via'] as const;
/** Options that only make sense for one proxy given by --host. */
const HOST_ONLY = ['port', 'password', 'password-file', 'address-type'] as const;

/** An open GATT link, whether it came from one proxy (--host) or from the pool. */
export interface DeviceSession {
  readonly link: BleConnection;
  readonly mac: string;
  /** The device's service table (discovered, or from the pool's GATT cache). */
  readonly services: GattServices;
  /** Human label of the proxy carrying the link: `node (host:port)`. */
  readonly via: string;
  /** Per-step deadline from --timeout. */
  readonly timeout: number | undefined;
  /** Fields every JSON object of the command gains: none with --host, {proxy, attempts} with the pool. */
  readonly jsonExtra: Readonly<Record<string, unknown>>;
}

/** JSON form of one connect attempt. */
export interface AttemptJson {
  attempt: number;
  proxy: string | null;
  rssi: number | null;
  score: number | null;
  code: string | null;
  reason: number | null;
  ms: number;
  ok: boolean;
  /** What the failure meant (the failure table's class), null for the attempt that connected. */
  failure: string | null;
  /** Routing decisions behind the attempt's choice of proxy (pinned, bonded, fallback, ghost link released...). */
  route: Array<{ kind: string; proxy: string | null; detail: string }>;
}

/**
 * True when the command line asks for the pool (no --host). Rejects options of the other path, so a
 * mixed command line fails before anything is opened.
 */
export function usesPool(args: CommandArgs): boolean {
  const given = (name: string): boolean => args.values[name] !== undefined;
  if (str(args, 'host') !== undefined) {
    const bad = POOL_ONLY.find(given);
    if (bad !== undefined) throw new UsageError(`--${bad} is a pool option and cannot be combined with --host`);
    return false;
  }
  const bad = HOST_ONLY.find(given);
  if (bad !== undefined) {
    const hint = bad === 'port' ? '; name a pool proxy as --proxy host:port' : '';
    throw new UsageError(`--${bad} only goes with --host (without --host the command uses the pool${hint})`);
  }
  return true;
}

/**
 * Opens a GATT link to `address` as the command line says: through the proxy of --host (today's
 * single-proxy path), else through the pool. Runs `fn` and always disconnects and closes. Connector
 * failures of the pool (not found, out of slots, aborted, failed) are one line with advice and exit 1.
 */
export async function runWithLink(
  args: CommandArgs,
  ctx: CommandContext,
  address: number,
  fn: (session: DeviceSession) => Promise<number>,
): Promise<number> {
  if (usesPool(args)) return runWithPoolLink(args, ctx, address, fn);
  const spinner = new Spinner(ctx.out);
  try {
    spinner.update(`connecting to ${formatMac(address)}`);
    return await runWithDevice(args, ctx, address, async (link, { proxy, timeout }) => {
      spinner.update(`discovering services of ${link.mac}`);
      const services = await link.getServices({ timeout, signal: ctx.signal });
      spinner.stop();
      return fn({ link, mac: link.mac, services, via: proxy.label, timeout, jsonExtra: {} });
    });
  } finally {
    spinner.stop();
  }
}

async function runWithPoolLink(
  args: CommandArgs,
  ctx: CommandContext,
  address: number,
  fn: (session: DeviceSession) => Promise<number>,
): Promise<number> {
  const { out, signal } = ctx;
  const timeout = timeoutOf(args);
  const maxAttempts = countOption(args, 'attempts');
  const listenMs = durationOption(args, 'listen-for', { allowZero: true }) ?? DEFAULT_LISTEN_MS;
  const json = flag(args, 'json');
  const mac = formatMac(address);
  const spinner = new Spinner(out);
  const cli = await openReadyPool(args, ctx, spinner);
  try {
    spinner.update(`listening for ${mac}`);
    await listenFor(cli.pool, address, listenMs, signal);
    spinner.update(`connecting to ${mac}`);
    let connection: PooledConnection;
    try {
      connection = await cli.pool.establishConnection(address, {
        signal,
        ...(maxAttempts === undefined ? {} : { maxAttempts }),
        ...(timeout === undefined ? {} : { attemptTimeout: timeout }),
      });
    } catch (error) {
      if (signal.aborted || !isConnectorError(error)) throw error;
      spinner.stop();
      reportConnectorError(out, error, json);
      return EXIT.failure;
    }
    try {
      spinner.stop();
      const labels = proxyLabels(cli.pool);
      const via = labels.get(connection.proxy) ?? connection.proxy;
      if (!json) out.error(paint(out, 'dim', connectedLine(connection, via, labels)));
      return await fn({
        link: connection.link,
        mac: connection.mac,
        services: connection.services,
        via,
        timeout,
        jsonExtra: { proxy: connection.proxy, attempts: attemptsJson(connection.timeline) },
      });
    } finally {
      // Not bound to `signal`: after Ctrl-C the link must still be released on the proxy.
      await connection.disconnect({ timeout }).catch(() => {});
    }
  } finally {
    spinner.stop();
    await cli.close();
  }
}

/**
 * Opens the pool of the command line and waits for its proxies. Fails when none is online (naming why
 * each is not); proxies that are offline while others work get one note each on stderr.
 */
export async function openReadyPool(
  args: CommandArgs,
  ctx: CommandContext,
  spinner: Spinner,
  options: ProxyPoolOptions = {},
): Promise<CliPool> {
  const { out, signal } = ctx;
  const cli = await openPool(args, options);
  try {
    const count = cli.pool.proxies().length;
    spinner.update(cli.discovery ? 'looking for proxies (mDNS)' : `connecting to ${count} prox${count === 1 ? 'y' : 'ies'}`);
    await waitForPool(cli, signal, undefined, out);
    spinner.stop();
    const proxies = cli.pool.proxies();
    const labels = proxyLabels(cli.pool);
    if (!proxies.some((p) => p.online)) {
      throw new NoProxyAvailableError(
        proxies.length === 0
          ? 'No proxy answered on mDNS (_esphomelib._tcp); name proxies with --proxy host[:port] or --config FILE'
          : `No proxy is usable: ${proxies.map((p) => `${labels.get(p.id) ?? p.id} ${notOnlineText(p)}`).join('; ')}`,
        { proxies: offlineCauses(cli.pool) },
      );
    }
    for (const p of proxies) {
      if (p.online) continue;
      out.error(`${paint(out, 'yellow', 'note')} proxy ${sanitize(labels.get(p.id) ?? p.id)} ${notOnlineText(p)}; using the others`);
    }
    announcePoolSubscriptions(out, cli.pool);
    return cli;
  } catch (error) {
    spinner.stop();
    await cli.close();
    throw error;
  }
}

/**
 * Why each proxy of the pool is not online, as NoProxyAvailableError's causes: the exit code then follows the failure
 * table (every proxy timed out → 4, refused the key → 3) as it does with one --host.
 */
export function offlineCauses(pool: ProxyPool): ProxyCause[] {
  const diagnostics = new Map(pool.diagnostics().map((d) => [d.id, d]));
  return pool
    .proxies()
    .filter((p) => !p.online)
    .map((p) => {
      if (p.problem !== undefined) return p.problem;
      const last = diagnostics.get(p.id)?.lastErrors.at(-1);
      const code = last !== undefined && last.code in FAILURE_TABLE ? (last.code as ErrorCode) : 'ESPAPI_ERR_TIMEOUT';
      const message = last?.message ?? p.lastError ?? `${p.id} did not connect before the deadline`;
      const error = new EspApiError(code, message);
      const rule = failureRule(error);
      return { proxy: p.id, code, failureClass: rule.class, permanent: rule.permanent, message, error };
    });
}

/**
 * Why a proxy is not in use, as a clause: a proxy refused for its key or identity is not "offline" (it answered), and
 * retrying will not change that.
 */
export function notOnlineText(p: ProxySnapshot): string {
  const why = sanitize(p.problem?.message ?? p.lastError ?? 'not connected');
  switch (p.problem?.failureClass) {
    case 'credentials':
      return `refused the key or password (${why})`;
    case 'identity':
      return `is another node than configured (${why})`;
    case 'unsupported':
      return `cannot be used (${why})`;
    default:
      return `is offline (${why})`;
  }
}

/** The real-home note for every proxy whose Bluetooth subscription the pool holds (commands that need it to work). */
export function announcePoolSubscriptions(out: Output, pool: ProxyPool): void {
  const labels = proxyLabels(pool);
  const held = pool.diagnostics().filter((d) => d.subscription.state === 'subscribed');
  announceSubscription(
    out,
    held.map((d) => ({ label: sanitize(labels.get(d.id) ?? d.id), esphomeVersion: d.esphomeVersion })),
  );
}

/** `node (host:port)` of every proxy id (just the id when the node name is unknown or is the id). */
export function proxyLabels(pool: ProxyPool): Map<string, string> {
  return new Map(pool.proxies().map((p) => [p.id, proxyLabel(p)]));
}

/** Node name of every proxy id, falling back to the id. */
export function proxyShortNames(pool: ProxyPool): Map<string, string> {
  return new Map(pool.proxies().map((p) => [p.id, p.name ?? p.id]));
}

function proxyLabel(p: ProxySnapshot): string {
  return p.name === undefined || p.name === p.id ? p.id : `${p.name} (${p.id})`;
}

/** JSON form of a connect timeline. */
export function attemptsJson(timeline: readonly AttemptRecord[]): AttemptJson[] {
  return timeline.map((r) => ({
    attempt: r.attempt,
    proxy: r.proxy ?? null,
    rssi: r.rssi === undefined ? null : Math.round(r.rssi * 10) / 10,
    score: r.score === undefined ? null : Math.round(r.score * 10) / 10,
    code: r.code ?? null,
    reason: r.reason ?? null,
    ms: r.ms,
    ok: r.code === undefined,
    failure: r.failure ?? null,
    route: r.route.map((d) => ({ kind: d.kind, proxy: d.proxy ?? null, detail: d.detail })),
  }));
}

/** One line: which proxy carries the link, plus every attempt when it took more than one. */
function connectedLine(connection: PooledConnection, via: string, labels: ReadonlyMap<string, string>): string {
  const timeline = connection.timeline;
  const last = timeline[timeline.length - 1];
  const cache = connection.fromCache ? ', services from cache' : '';
  const routing = timeline.flatMap((r) => r.route.map((d) => sanitize(d.detail)));
  const routed = routing.length === 0 ? '' : `; routing: ${routing.join('; ')}`;
  if (timeline.length <= 1) return `Connected to ${connection.mac} via ${sanitize(via)} (${last?.ms ?? 0} ms${cache})${routed}`;
  const steps = timeline.map((r) => {
    const where = r.proxy === undefined ? 'no proxy' : sanitize(labels.get(r.proxy) ?? r.proxy);
    const meaning = r.failure === undefined || r.reason === undefined ? '' : `, ${r.failure}`;
    const outcome = r.code === undefined ? 'ok' : r.reason === undefined ? r.code : `${r.code} ${reasonText(r.reason)}${meaning}`;
    return `#${r.attempt} ${where}: ${outcome} (${r.ms} ms)`;
  });
  return `Connected to ${connection.mac} via ${sanitize(via)} on attempt ${timeline.length}${cache}; ${steps.join(', ')}${routed}`;
}

function reasonText(reason: number): string {
  return `0x${reason.toString(16)} ${describeConnectionError(reason).name}`;
}

type ConnectorError = DeviceNotFoundError | OutOfSlotsError | ConnectionAbortedError | ConnectFailedError;

function isConnectorError(error: unknown): error is ConnectorError {
  return (
    error instanceof DeviceNotFoundError ||
    error instanceof OutOfSlotsError ||
    error instanceof ConnectionAbortedError ||
    error instanceof ConnectFailedError
  );
}

/** One line (its message ends with the advice); JSON adds the advice and the attempt timeline. */
function reportConnectorError(out: Output, error: ConnectorError, json: boolean): void {
  if (!json) {
    reportError(out, error, false);
    return;
  }
  out.json({
    error: {
      code: error.code,
      name: error.name,
      message: error.message,
      advice: error.advice,
      attempts: attemptsJson(error.timeline),
    },
  });
}

/**
 * Waits up to `ms` for the device to be heard by every online proxy (at least one report each), so
 * the pool ranks them all instead of taking the first that reported. Ends early on Ctrl-C.
 */
async function listenFor(pool: ProxyPool, address: number, ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return;
  signal.throwIfAborted();
  const heardBy = new Set(Object.keys(pool.devices().find((d) => d.address === address)?.proxies ?? {}));
  const complete = (): boolean => {
    const online = pool.proxies().filter((p) => p.online);
    return online.length > 0 && online.every((p) => heardBy.has(p.id));
  };
  if (complete()) return;
  await new Promise<void>((resolve) => {
    const finish = (): void => {
      clearTimeout(timer);
      off();
      signal.removeEventListener('abort', finish);
      resolve();
    };
    const timer = setTimeout(finish, ms);
    const off = pool.onAdvertisement((ad, proxy) => {
      if (ad.address !== address || heardBy.has(proxy)) return;
      heardBy.add(proxy);
      if (complete()) finish();
    });
    signal.addEventListener('abort', finish, { once: true });
  });
  signal.throwIfAborted();
}
