import { DEFAULT_API_PORT, type MessageTap } from '../connection/connection.js';
import { type DiscoveredProxy, MdnsDiscovery } from '../discovery/mdns.js';
import type { ErrorCode } from '../errors.js';
import { FAILURE_TABLE } from '../failure-table.js';
import { type InspectTarget, type ProxyInspection, ProxyInspector } from '../inspect/proxy-inspector.js';
import { parseProxySpec } from '../pool/proxy-pool.js';
import { sleep } from '../util/abort.js';
import { type CommandArgs, UsageError } from './command.js';
import { cliTapFor } from './connect-feedback.js';
import { EXIT, type Output } from './output.js';
import { DEFAULT_DISCOVERY_MS, keyFor, keysOf, mdnsOptionsOf, poolTimeoutOf } from './pool-options.js';
import { announceSubscription } from './real-home.js';
import { sanitize } from './single-proxy.js';

/** Proxies to inspect, opened from the command line: --proxy and --config, or mDNS. */
export interface CliInspection {
  readonly inspector: ProxyInspector;
  /** Present when proxies come from mDNS (proxies it finds later are added while the inspection runs). */
  readonly discovery: MdnsDiscovery | undefined;
  /** Deadline for proxies to connect (ms). */
  readonly timeout: number;
  /** Closes the sessions and the discovery socket. */
  close(): Promise<void>;
}

/** The proxies named by --proxy and --config, with their keys (--config keys, else --psk / $ESPHOME_BLE_PSK). */
export async function namedTargets(
  args: CommandArgs,
): Promise<{ targets: InspectTarget[]; keys: Record<string, string>; fallback: string | undefined }> {
  const { config, keys, fallback } = await keysOf(args);
  const given = args.values.proxy;
  const texts = Array.isArray(given) ? given.filter((v): v is string => typeof v === 'string') : typeof given === 'string' ? [given] : [];
  const targets: InspectTarget[] = [];
  for (const text of texts) {
    const spec = parseProxySpec(text);
    if (spec.host === '' || (spec.port !== undefined && (spec.port < 1 || spec.port > 65_535))) {
      throw new UsageError(`--proxy must be host[:port], got ${JSON.stringify(text)}`);
    }
    targets.push(spec);
  }
  targets.push(...(config?.proxies ?? []));
  const keyed = targets.map((t) => {
    const psk = t.psk ?? keyFor(keys, t.name, undefined) ?? fallback;
    return psk === undefined ? t : { ...t, psk };
  });
  return { targets: keyed, keys, fallback };
}

/** The inspect target of a proxy found by mDNS: its key only when its TXT says it requires encryption. */
export function discoveredTarget(
  proxy: DiscoveredProxy,
  keys: Readonly<Record<string, string>>,
  fallback: string | undefined,
): InspectTarget {
  const psk = proxy.txt.encryption === 'required' ? (keyFor(keys, proxy.name, proxy.txt.mac) ?? fallback) : undefined;
  return { host: proxy.addresses[0] ?? proxy.host, port: proxy.port, name: proxy.name, ...(psk === undefined ? {} : { psk }) };
}

/**
 * Opens an inspection of the command line's proxies (started; look with lookAtInspection(), or waitForInspection()). It takes nothing from
 * the proxies' other clients unless `subscribe` (the command's explicit --subscribe).
 */
export async function openInspection(
  args: CommandArgs,
  options: { subscribe: boolean; clientInfo: string; tapFor?: (proxy: string) => MessageTap | undefined; keepTrying?: boolean },
): Promise<CliInspection> {
  const timeout = poolTimeoutOf(args);
  const mdns = mdnsOptionsOf(args);
  const { targets, keys, fallback } = await namedTargets(args);
  const inspector: ProxyInspector = new ProxyInspector(targets, {
    subscribe: options.subscribe,
    clientInfo: options.clientInfo,
    connectTimeout: timeout,
    ...(options.keepTrying === true ? { permanentErrors: 'retry' as const } : {}),
    tapFor: (target) => {
      const port = target.port ?? DEFAULT_API_PORT;
      const id = inspector.snapshot().find((p) => p.host === target.host && p.port === port)?.id ?? `${target.host}:${port}`;
      const taps = [cliTapFor(target), options.tapFor?.(id)].filter((t): t is MessageTap => t !== undefined);
      if (taps.length <= 1) return taps[0];
      return (direction, messageId, payload) => {
        for (const tap of taps) tap(direction, messageId, payload);
      };
    },
  });
  if (targets.length > 0) {
    inspector.start();
    return { inspector, discovery: undefined, timeout, close: () => inspector.close() };
  }
  const discovery = new MdnsDiscovery(mdns);
  const following = new AbortController();
  const follow = (async () => {
    try {
      for await (const event of discovery.events({ signal: following.signal })) {
        if (event.type === 'up') inspector.add(discoveredTarget(event.proxy, keys, fallback));
      }
    } catch {
      // The socket error is reported by waitForInspection (discovery.error).
    }
  })();
  inspector.start();
  return {
    inspector,
    discovery,
    timeout,
    async close() {
      following.abort();
      await discovery.close();
      await follow;
      await inspector.close();
    },
  };
}

/**
 * The exit code when no proxy could be used: the failure table's class when every proxy failed for causes of one
 * class (every key refused: 3; every connect timed out: 4), else a plain failure (none found, or mixed causes).
 */
export function offlineExit(inspections: readonly ProxyInspection[]): number {
  const exits = new Set(inspections.map((p) => (isErrorCode(p.error?.code) ? FAILURE_TABLE[p.error.code].exit : 'failure')));
  const [only] = exits;
  return exits.size === 1 && only !== undefined ? EXIT[only] : EXIT.failure;
}

/** Whether `p` is down for a cause retrying cannot fix (the failure table's permanent causes). */
export function downForGood(p: ProxyInspection): boolean {
  return !p.online && isErrorCode(p.error?.code) && FAILURE_TABLE[p.error.code].permanent;
}

function isErrorCode(code: string | undefined): code is ErrorCode {
  return code !== undefined && Object.hasOwn(FAILURE_TABLE, code);
}

/** With mDNS, browses for `discoveryMs` first (at most the timeout); answers keep adding proxies meanwhile. */
export async function browse(cli: CliInspection, signal: AbortSignal, discoveryMs: number): Promise<void> {
  if (cli.discovery === undefined) return;
  await sleep(Math.min(discoveryMs, cli.timeout), signal);
  if (cli.discovery.error !== undefined) throw cli.discovery.error;
}

/** Waits for the proxies (a watch): browses first with mDNS, then gives each up to the timeout to connect. */
export async function waitForInspection(cli: CliInspection, signal: AbortSignal, discoveryMs = DEFAULT_DISCOVERY_MS): Promise<void> {
  await browse(cli, signal, discoveryMs);
  await cli.inspector.ready({ timeout: cli.timeout, signal });
}

/**
 * One look at the proxies (ProxyInspector.look) within the timeout: connecting, the slot queries and the second
 * look all count; with mDNS the browse comes first.
 */
export async function lookAtInspection(
  cli: CliInspection,
  signal: AbortSignal,
  discoveryMs = DEFAULT_DISCOVERY_MS,
): Promise<ProxyInspection[]> {
  await browse(cli, signal, discoveryMs);
  return cli.inspector.look({ signal, timeout: cli.timeout });
}

/** The real-home note for the proxies whose subscription this run holds (--subscribe, events). */
export function announceHeld(out: Output, inspections: readonly ProxyInspection[]): void {
  announceSubscription(
    out,
    inspections
      .filter((p) => p.inspection?.subscriber.holder === 'thisProcess')
      .map((p) => ({ label: sanitize(p.name ?? p.id), esphomeVersion: p.inspection?.esphomeVersion })),
    { winsBack: false },
  );
}
