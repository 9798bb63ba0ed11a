import { formatMac } from '../bluetooth/address.js';
import { BluetoothProxy } from '../bluetooth/proxy-client.js';
import { type ApiConnection, DEFAULT_API_PORT } from '../connection/connection.js';
import { discoverProxies } from '../discovery/mdns.js';
import { type ErrorCode, EspApiError } from '../errors.js';
import { exitClassOf, FAILURE_TABLE } from '../failure-table.js';
import type { InspectTarget } from '../inspect/proxy-inspector.js';
import { formatDuration } from '../util/duration.js';
import { type CommandArgs, type CommandContext, durationOption, flag, type OptionSpec, UsageError } from './command.js';
import { connectNode } from './connect-feedback.js';
import { discoveredTarget, namedTargets } from './inspect-options.js';
import { PROXY_OPTIONS } from './option-groups.js';
import { EXIT, type Output, paint, table } from './output.js';
import { DEFAULT_DISCOVERY_MS, mdnsOptionsOf, POOL_OPTIONS } from './pool-options.js';
import { announceSubscription, requireConsent, type SubscriptionHolding, subscriptionCost } from './real-home.js';
import { hostOf, hostSecretsOf, parseAddressArg, sanitize } from './single-proxy.js';
import { option } from './vocabulary.js';

/** Deadline of each proxy's connect and of the operation, without --timeout. */
const DEFAULT_ADMIN_TIMEOUT_MS = 10_000;

/** Options of the commands that change something on proxies: one (--host) or the pool's, and --yes. */
export const ADMIN_OPTIONS = {
  ...PROXY_OPTIONS,
  ...POOL_OPTIONS,
  timeout: option('timeout', {
    description: "Deadline of each proxy's connect and of the operation; a bare number is milliseconds",
    default: formatDuration(DEFAULT_ADMIN_TIMEOUT_MS),
  }),
  yes: option('yes', { default: 'off: ask on a terminal, refuse (exit 2) without one' }),
} as const satisfies OptionSpec;

/** What happened on one proxy. */
export interface AdminResult {
  readonly proxy: string;
  readonly name: string | null;
  readonly ok: boolean;
  /** What the proxy answered, in words (`removed`, `passive`...). */
  readonly detail: string | null;
  readonly error: { readonly code: string; readonly message: string } | null;
}

/** The proxies of the command line: --host, or --proxy / --config, or those mDNS finds (browsed first, taking nothing). */
export async function adminTargets(args: CommandArgs, signal: AbortSignal): Promise<InspectTarget[]> {
  const host = hostOf(args, { required: false });
  if (host !== undefined) {
    for (const name of ['proxy', 'config', 'mdns-interface', 'mdns-port'] as const) {
      if (args.values[name] !== undefined) throw new UsageError(`--${name} is a pool option and cannot be combined with --host`);
    }
    return [{ host: host.host, port: host.port, ...hostSecretsOf(args) }];
  }
  const { targets, keys, fallback } = await namedTargets(args);
  if (targets.length > 0) return targets;
  const found = await discoverProxies({ ...mdnsOptionsOf(args), timeout: DEFAULT_DISCOVERY_MS, signal });
  if (found.length === 0) {
    throw new UsageError('No proxy answered on mDNS (_esphomelib._tcp); name one with --host or --proxy host[:port]');
  }
  return found.map((proxy) => discoveredTarget(proxy, keys, fallback));
}

/** `host:port` of a target. */
export function targetLabel(target: InspectTarget): string {
  return target.name ?? `${target.host}:${target.port ?? DEFAULT_API_PORT}`;
}

/** A proxy connected for an admin command: Hello and device info done, nothing taken yet. */
export interface ConnectedProxy {
  readonly id: string;
  readonly api: ApiConnection;
  /** What holding its subscription means, for the question and the note (label made terminal-safe). */
  readonly holding: SubscriptionHolding;
}

/** What an admin command does on the proxies, in the order onEachProxy runs it. */
export interface AdminSteps {
  /** Refuses a proxy before its subscription is taken (a missing feature): its error, or undefined to go on. */
  readonly check?: (api: ApiConnection) => Error | undefined;
  /**
   * Decides once every proxy is connected and nothing is taken yet (so the question can say what taking the
   * subscription costs on each proxy's firmware): false when the user declined; throws UsageError without consent.
   */
  readonly consent: (proxies: readonly ConnectedProxy[]) => Promise<boolean>;
  /** The request itself, with the proxy's Bluetooth subscription held. */
  readonly run: (proxy: BluetoothProxy, timeout: number) => Promise<string>;
}

/**
 * The real-home rule for a change to shared state: the question (or, without a terminal, the refusal) says what will
 * change on which proxies AND what holding their subscription for it costs Home Assistant on their firmware; it goes
 * ahead only on --yes (a `note` on stderr then says what is done) or a yes on the terminal; false when declined.
 */
export async function consentTo(
  ctx: CommandContext,
  args: CommandArgs,
  action: string,
  proxies: readonly ConnectedProxy[],
): Promise<boolean> {
  return requireConsent(ctx, { action: `${action} on ${labels(proxies)}; ${costOf(proxies)}`, flag: '--yes', given: flag(args, 'yes') });
}

/** What taking the subscription of `proxies` for the command costs Home Assistant, as one clause. */
export function costOf(proxies: readonly ConnectedProxy[]): string {
  return subscriptionCost(proxies.map((p) => p.holding));
}

/** The proxies' labels, comma-separated. */
export function labels(proxies: readonly ConnectedProxy[]): string {
  return proxies.map((p) => p.holding.label).join(', ');
}

/**
 * Connects to every target at once (taking nothing), asks `steps.consent` about those that answered, then on each
 * holds its Bluetooth subscription (the answers of these requests go to the subscriber only, spec §6.3) while
 * `steps.run` runs, and lets go. A proxy that cannot be reached, or fails `steps.check`, gets its error as result.
 * Resolves 'declined' (nothing done) when the user said no.
 */
export async function onEachProxy(
  ctx: CommandContext,
  args: CommandArgs,
  targets: readonly InspectTarget[],
  steps: AdminSteps,
): Promise<AdminResult[] | 'declined'> {
  const timeout = durationOption(args, 'timeout') ?? DEFAULT_ADMIN_TIMEOUT_MS;
  const { signal } = ctx;
  const connects = await Promise.allSettled(
    targets.map((target) => connectNode(ctx, { ...target, clientInfo: 'esphome-ble', timeout, signal })),
  );
  const opened = connects.flatMap((c) => (c.status === 'fulfilled' ? [c.value] : []));
  const close = (api: ApiConnection): Promise<void> => api.close({ timeout }).catch(() => {});
  try {
    signal.throwIfAborted();
    const failed = new Map<string, AdminResult>();
    const usable: ConnectedProxy[] = [];
    for (const [i, connect] of connects.entries()) {
      const id = targetLabel(targets[i]!);
      if (connect.status === 'rejected') {
        failed.set(id, { proxy: id, name: null, ok: false, detail: null, error: errorOf(connect.reason) });
        continue;
      }
      const api = connect.value;
      const refused = steps.check?.(api);
      if (refused !== undefined)
        failed.set(id, { proxy: id, name: api.hello.name || null, ok: false, detail: null, error: errorOf(refused) });
      else usable.push({ id, api, holding: holdingOf(api) });
    }
    if (usable.length > 0 && !(await steps.consent(usable))) return 'declined';
    const done = await Promise.all(usable.map((p) => runOn(ctx, p, steps, timeout)));
    const byId = new Map(done.map((r) => [r.proxy, r]));
    return targets.map((t) => {
      const id = targetLabel(t);
      return byId.get(id) ?? failed.get(id)!;
    });
  } finally {
    await Promise.all(opened.map(close));
  }
}

async function runOn(ctx: CommandContext, p: ConnectedProxy, steps: AdminSteps, timeout: number): Promise<AdminResult> {
  const { signal } = ctx;
  const name = p.api.hello.name || null;
  try {
    const proxy = await BluetoothProxy.attach(p.api, { signal, timeout });
    announceSubscription(ctx.out, [p.holding]);
    try {
      const detail = await steps.run(proxy, timeout);
      return { proxy: p.id, name, ok: true, detail, error: null };
    } finally {
      // Not bound to `signal`: after Ctrl-C the subscription is still handed back cleanly.
      await proxy.detach({ timeout }).catch(() => {});
    }
  } catch (error) {
    if (signal.aborted) throw error;
    return { proxy: p.id, name, ok: false, detail: null, error: errorOf(error) };
  }
}

function holdingOf(api: ApiConnection): SubscriptionHolding {
  return {
    label: sanitize(api.label),
    esphomeVersion: api.deviceInfo.esphomeVersion,
    apiVersion: { major: api.hello.apiVersionMajor, minor: api.hello.apiVersionMinor },
  };
}

/** Prints the results (a table, or one JSON object) and returns the exit code: 0 when every proxy did it. */
export function reportResults(
  out: Output,
  json: boolean,
  header: Readonly<Record<string, unknown>>,
  results: readonly AdminResult[],
): number {
  if (json) out.json({ ...header, proxies: results });
  else {
    out.line(
      table(
        ['proxy', 'name', 'result'],
        results.map((r) => [
          sanitize(r.proxy),
          sanitize(r.name ?? '-'),
          r.ok ? paint(out, 'green', r.detail ?? 'done') : paint(out, 'red', `${r.error?.code}: ${sanitize(r.error?.message ?? '')}`),
        ]),
      ),
    );
  }
  const failed = results.filter((r) => !r.ok);
  if (failed.length === 0) return EXIT.ok;
  // Every proxy refused our key: 3, as for any other command; a mix of causes, or some proxies done, is a failure.
  const exits = new Set(failed.map((r) => EXIT[exitClassOf(new EspApiError(codeOf(r.error?.code), r.error?.message ?? ''))]));
  const [only] = exits;
  return exits.size === 1 && failed.length === results.length && only !== undefined ? only : EXIT.failure;
}

function codeOf(code: string | undefined): ErrorCode {
  return code !== undefined && Object.hasOwn(FAILURE_TABLE, code) ? (code as ErrorCode) : 'ESPAPI_ERR_CONNECT_FAILED';
}

function errorOf(error: unknown): { code: string; message: string } {
  return { code: error instanceof EspApiError ? error.code : 'ERROR', message: error instanceof Error ? error.message : String(error) };
}

/** One device-level change (unpair, clear-cache) on the proxies: what it does, as the question and --json say it. */
export interface DeviceChange {
  /** `--json`'s action name. */
  readonly name: string;
  /** What it changes, for the question (`mac` formatted). */
  readonly action: (mac: string) => string;
  /** The request on one proxy; resolves with the result's detail. */
  readonly run: (proxy: BluetoothProxy, address: number, options: { timeout: number; signal: AbortSignal }) => Promise<string>;
}

/** `<command> <MAC>` for a device-level change: parse, connect, ask, run on each proxy, report; the exit code. */
export async function runDeviceChange(args: CommandArgs, ctx: CommandContext, change: DeviceChange): Promise<number> {
  const [macArg, extra] = args.positionals;
  if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`);
  const address = parseAddressArg(macArg);
  const mac = formatMac(address);
  const targets = await adminTargets(args, ctx.signal);
  const results = await onEachProxy(ctx, args, targets, {
    consent: (proxies) => consentTo(ctx, args, change.action(mac), proxies),
    run: (proxy, timeout) => change.run(proxy, address, { timeout, signal: ctx.signal }),
  });
  if (results === 'declined') {
    ctx.out.error('Nothing was changed.');
    return EXIT.ok;
  }
  return reportResults(ctx.out, flag(args, 'json'), { action: change.name, mac }, results);
}
