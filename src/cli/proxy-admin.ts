import { BluetoothProxy } from '../bluetooth/proxy-client.js';
import { DEFAULT_API_PORT } from '../connection/connection.js';
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
import { announceSubscription, requireConsent } from './real-home.js';
import { hostOf, hostSecretsOf, sanitize } from './single-proxy.js';
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

/**
 * The real-home rule for a change to shared state: says what will change on which proxies and goes ahead only when
 * --yes (or a yes on the terminal) asked for it; false when the user declined.
 */
export async function consentTo(
  ctx: CommandContext,
  args: CommandArgs,
  action: string,
  targets: readonly InspectTarget[],
): Promise<boolean> {
  return requireConsent(ctx, { action: `${action} on ${targets.map(targetLabel).join(', ')}`, flag: '--yes', given: flag(args, 'yes') });
}

/**
 * Connects to each target at once, holds its Bluetooth subscription (the answers of these requests go to the
 * subscriber only, spec §6.3) while `fn` runs, then lets go. A proxy that cannot be reached gets its error as result.
 */
export async function onEachProxy(
  ctx: CommandContext,
  args: CommandArgs,
  targets: readonly InspectTarget[],
  fn: (proxy: BluetoothProxy, timeout: number) => Promise<string>,
): Promise<AdminResult[]> {
  const timeout = durationOption(args, 'timeout') ?? DEFAULT_ADMIN_TIMEOUT_MS;
  const { signal } = ctx;
  return Promise.all(
    targets.map(async (target): Promise<AdminResult> => {
      const id = targetLabel(target);
      let name: string | null = null;
      try {
        const api = await connectNode(ctx, { ...target, clientInfo: 'esphome-ble', timeout, signal });
        name = api.hello.name || null;
        try {
          const proxy = await BluetoothProxy.attach(api, { signal, timeout });
          announceSubscription(ctx.out, [
            {
              label: sanitize(proxy.label),
              esphomeVersion: api.deviceInfo.esphomeVersion,
              apiVersion: { major: api.hello.apiVersionMajor, minor: api.hello.apiVersionMinor },
            },
          ]);
          try {
            const detail = await fn(proxy, timeout);
            return { proxy: id, name, ok: true, detail, error: null };
          } finally {
            // Not bound to `signal`: after Ctrl-C the subscription is still handed back cleanly.
            await proxy.detach({ timeout }).catch(() => {});
          }
        } finally {
          await api.close({ timeout }).catch(() => {});
        }
      } catch (error) {
        if (signal.aborted) throw error;
        return { proxy: id, name, ok: false, detail: null, error: errorOf(error) };
      }
    }),
  );
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
