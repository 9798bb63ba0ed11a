import { formatMac } from '../../bluetooth/address.js';
import { isAdvertisementOnly } from '../../bluetooth/features.js';
import { NoProxyAvailableError, type RouteDecision } from '../../errors.js';
import { DEFAULT_MAX_ATTEMPTS, NOT_FOUND_WAIT_MS, type ProxyPool, SLOT_WAIT_MS } from '../../pool/proxy-pool.js';
import type { DeviceRoute } from '../../pool/routing.js';
import type { ScoreBreakdown } from '../../pool/scoring.js';
import { sleep } from '../../util/abort.js';
import { formatDuration } from '../../util/duration.js';
import { type Command, durationOption, flag, UsageError } from '../command.js';
import { announcePoolSubscriptions, offlineCauses } from '../device-session.js';
import { EXIT, exitCodeFor, type Output, paint, Spinner, table } from '../output.js';
import { openPool, POOL_HELP, POOL_OPTIONS, waitForPool } from '../pool-options.js';
import { parseAddressArg, sanitize } from '../single-proxy.js';
import { deprecatedOption, option } from '../vocabulary.js';

/** Listening time before ranking: several advertising intervals of a typical (100 ms - 1 s) advertiser. */
const DEFAULT_LISTEN_MS = 1_500;

/** What establishConnection would do now. */
export type ExplainAction = 'connect' | 'waitForSlot' | 'notFound' | 'noUsableProxy';

/** The verdict of `explain`. */
export interface ExplainVerdict {
  readonly action: ExplainAction;
  /** The proxy it would connect through (action `connect`). */
  readonly proxy: string | null;
  /** Proxies whose slot it would wait for (action `waitForSlot`). */
  readonly waitingOn: string[];
  readonly message: string;
}

/** `esphome-ble explain <MAC>`: which proxy establishConnection would use for a device, and why. */
export const explainCommand: Command = {
  name: 'explain',
  summary: 'Rank the proxies that hear a device with the score breakdown, and say what connecting would do',
  usage: 'esphome-ble explain <MAC> [--proxy host[:port]...] [--prefer P]... [options]',
  options: {
    ...POOL_OPTIONS,
    'listen-for': option('listen-for', { default: formatDuration(DEFAULT_LISTEN_MS) }),
    listen: deprecatedOption('listen-for', { type: 'string', kind: 'duration', unit: 'ms', meaning: 'a bare number was milliseconds' }),
    prefer: option('prefer', { default: 'none (routes of --config apply)', multiple: true }),
    require: option('require', { default: 'any proxy', multiple: true }),
    exclude: option('exclude', { default: 'none', multiple: true }),
  },
  examples: [
    'esphome-ble explain C0:FF:EE:00:00:01 --proxy 192.168.1.40 --proxy 192.168.1.41',
    'esphome-ble explain C0:FF:EE:00:00:01 --prefer kitchen --json',
  ],
  help: [
    'Connects to the proxies, listens --listen-for for advertisements, then ranks every proxy',
    'that hears the device as ProxyPool.establishConnection does: score = smoothed RSSI + slot bonus (2 dB per',
    'free slot, up to 3) - failure penalty (10 dB per recent failure, decaying) - in-flight penalty (3 dB per',
    'connect in progress); eligible proxies (online, able to connect, a slot free, not backing off) come first.',
    'Ends with one sentence: connect via X / wait for a slot / not found / no usable proxy. Exit 0 either way.',
    'Routing decisions come before it, one line each: a pinned proxy (--prefer P, repeatable, in order: it goes first',
    "whenever it can take the connect) or the proxy holding the device's bond going first, --require/--exclude, a",
    'fallback when the pinned or bonded proxy cannot be used, and ghost links (a proxy still holding a link we ended)',
    'that a connect would release first. P is a pool id, node name, host, host:port or MAC. --json adds',
    '"routing":[{"kind":"prefer|bond|require|exclude|fallback|ghost","proxy"|null,"detail"}].',
    '--json prints ONE object: {"mac","name"|null,"ranking":[{"rank","proxy","proxyName"|null,"rssi","slotBonus","failurePenalty",',
    '"inFlightPenalty","preferBonus","score","available","failures","eligible","reason"|null}],"notHeardBy":[...],',
    '"verdict":{"action":"connect|waitForSlot|notFound|noUsableProxy","proxy"|null,"waitingOn":[...],"message"}}.',
    POOL_HELP,
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    const [macArg, extra] = args.positionals;
    if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`);
    const address = parseAddressArg(macArg);
    const listenMs = durationOption(args, 'listen-for', { allowZero: true }) ?? DEFAULT_LISTEN_MS;
    const json = flag(args, 'json');
    const cli = await openPool(args);
    const spinner = new Spinner(out);
    try {
      spinner.update(cli.discovery ? 'looking for proxies (mDNS)' : 'connecting to the proxies');
      await waitForPool(cli, signal, undefined, out);
      spinner.stop();
      announcePoolSubscriptions(out, cli.pool);
      spinner.update(`listening for ${formatMac(address)}`);
      await sleep(listenMs, signal);
      spinner.stop();
      const report = explainReport(cli.pool, address, routeOf(args.values));
      if (json) out.json(report);
      else printReport(out, report, proxyNames(cli.pool));
      // The report is printed either way; with no proxy online the exit follows their causes (all timed out → 4).
      if (cli.pool.proxies().some((p) => p.online)) return EXIT.ok;
      return exitCodeFor(new NoProxyAvailableError('No proxy is online', { proxies: offlineCauses(cli.pool) }));
    } finally {
      spinner.stop();
      await cli.close();
    }
  },
};

/** --prefer / --require / --exclude as a route (each repeatable). */
function routeOf(values: Record<string, unknown>): DeviceRoute {
  const list = (name: string): string[] | undefined => {
    const value = values[name];
    const items = Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : typeof value === 'string' ? [value] : [];
    return items.length === 0 ? undefined : items;
  };
  const prefer = list('prefer');
  const require = list('require');
  const exclude = list('exclude');
  return { ...(prefer ? { prefer } : {}), ...(require ? { require } : {}), ...(exclude ? { exclude } : {}) };
}

/** The full `explain --json` object for `address` as the pool sees it now (with `route` as a connect would get it). */
export function explainReport(
  pool: ProxyPool,
  address: number,
  route: DeviceRoute = {},
): {
  mac: string;
  name: string | null;
  ranking: Array<
    Omit<ScoreBreakdown, 'reason'> & { rank: number; proxyName: string | null; advertisementOnly: boolean; reason: string | null }
  >;
  notHeardBy: string[];
  routing: Array<{ kind: RouteDecision['kind']; proxy: string | null; detail: string }>;
  verdict: ExplainVerdict;
} {
  const plan = pool.route(address, route);
  const ranking = shownReasons(plan.ranking, advertisementOnlyProxies(pool));
  const heardBy = new Set(ranking.map((r) => r.proxy));
  const names = proxyNames(pool);
  const advOnly = advertisementOnlyProxies(pool);
  const name = pool.devices().find((d) => d.address === address)?.name ?? null;
  return {
    mac: formatMac(address),
    name,
    ranking: ranking.map((r, i) => ({
      ...r,
      rank: i + 1,
      proxyName: names.get(r.proxy) ?? null,
      advertisementOnly: advOnly.has(r.proxy),
      reason: r.reason ?? null,
    })),
    notHeardBy: pool
      .proxies()
      .map((p) => p.id)
      .filter((id) => !heardBy.has(id)),
    routing: [...plan.ghosts, ...plan.decisions].map((d) => ({ kind: d.kind, proxy: d.proxy ?? null, detail: d.detail })),
    verdict: verdictOf(pool, address, ranking, plan.decisions),
  };
}

/** What establishConnection would do with this ranking (in the order it tries it), as one sentence. */
export function verdictOf(
  pool: ProxyPool,
  address: number,
  ranking: readonly ScoreBreakdown[],
  decisions: readonly RouteDecision[] = [],
): ExplainVerdict {
  const mac = formatMac(address);
  const names = proxyNames(pool);
  const label = (id: string): string => {
    const name = names.get(id);
    return name === undefined || name === id ? sanitize(id) : `${sanitize(name)} (${id})`;
  };
  if (ranking.length === 0) {
    const online = pool.proxies().filter((p) => p.online).length;
    return {
      action: 'notFound',
      proxy: null,
      waitingOn: [],
      message:
        online === 0
          ? `Not found: no proxy is online, so establishConnection would fail with DeviceNotFoundError.`
          : `Not found: none of the ${online} online prox${online === 1 ? 'y' : 'ies'} heard ${mac}; establishConnection would wait up to ${NOT_FOUND_WAIT_MS / 1000} s per attempt for an advertisement, then fail with DeviceNotFoundError.`,
    };
  }
  const best = ranking[0]!;
  if (best.eligible) {
    // Proxies nearer to the device that cannot be used now are the surprise worth naming.
    const skipped = ranking.filter((r) => !r.eligible && (r.rssi > best.rssi || r.score > best.score));
    const because = skipped.length > 0 ? `, skipping ${skipped.map((r) => `${label(r.proxy)}: ${r.reason}`).join(', ')}` : '';
    const routed = decisions.find((d) => (d.kind === 'prefer' || d.kind === 'bond') && d.proxy === best.proxy);
    const why = routed === undefined ? 'the best eligible score' : routed.kind === 'bond' ? 'it holds the bond' : 'it is pinned';
    return {
      action: 'connect',
      proxy: best.proxy,
      waitingOn: [],
      message: `Connect via ${label(best.proxy)}: ${why}, ${signed(best.score)} dB${because}.`,
    };
  }
  const busy = ranking.filter((r) => r.reason === 'no free slot' || r.reason?.startsWith('backing off'));
  if (busy.length > 0) {
    const names = busy.map((r) => r.proxy);
    return {
      action: 'waitForSlot',
      proxy: null,
      waitingOn: names,
      message: `Wait for a slot: every proxy that hears ${mac} is busy (${busy.map((r) => `${label(r.proxy)}: ${r.reason}`).join(', ')}); establishConnection would queue up to ${SLOT_WAIT_MS / 1000} s per attempt for one to free up, then fail with OutOfSlotsError after ${DEFAULT_MAX_ATTEMPTS} attempts.`,
    };
  }
  return {
    action: 'noUsableProxy',
    proxy: null,
    waitingOn: [],
    message: `No usable proxy: ${ranking.map((r) => `${label(r.proxy)}: ${r.reason}`).join(', ')}; establishConnection would fail.`,
  };
}

function printReport(out: Output, report: ReturnType<typeof explainReport>, names: ReadonlyMap<string, string>): void {
  const title = report.name === null ? report.mac : `${report.mac} ${sanitize(report.name)}`;
  if (report.ranking.length === 0) {
    out.line(`${title}: heard by no proxy`);
  } else {
    out.line(`${title}: heard by ${report.ranking.length} prox${report.ranking.length === 1 ? 'y' : 'ies'}`);
    out.line(rankingTable(out, report.ranking, names));
  }
  if (report.notHeardBy.length > 0)
    out.line(paint(out, 'dim', `Not heard by: ${report.notHeardBy.map((id) => sanitize(names.get(id) ?? id)).join(', ')}`));
  for (const decision of report.routing) out.line(`Routing (${decision.kind}): ${sanitize(decision.detail)}`);
  const color = report.verdict.action === 'connect' ? 'green' : report.verdict.action === 'waitForSlot' ? 'yellow' : 'red';
  out.line(paint(out, color, report.verdict.message));
}

/** The ranking as a table: one row per proxy, best first; `names` maps proxy ids to node names. */
export function rankingTable(
  out: Output,
  ranking: ReadonlyArray<Omit<ScoreBreakdown, 'reason'> & { reason: string | null | undefined }>,
  names: ReadonlyMap<string, string> = new Map(),
): string {
  return table(
    ['#', 'proxy', 'rssi', 'free', 'slot bonus', 'failures', 'in-flight', 'score', 'eligible'],
    ranking.map((r, i) => [
      String(i + 1),
      sanitize(names.get(r.proxy) ?? r.proxy),
      `${r.rssi} dBm`,
      String(r.available),
      signed(r.slotBonus),
      r.failurePenalty === 0 ? '0' : `-${r.failurePenalty}`,
      r.inFlightPenalty === 0 ? '0' : `-${r.inFlightPenalty}`,
      signed(r.score),
      r.eligible ? paint(out, 'green', 'yes') : paint(out, 'red', `no: ${r.reason ?? '?'}`),
    ]),
  );
}

/** Ids of the proxies that forward advertisements only (no connections: never a candidate). */
export function advertisementOnlyProxies(pool: ProxyPool): Set<string> {
  return new Set(
    pool
      .proxies()
      .filter((p) => isAdvertisementOnly(p.features))
      .map((p) => p.id),
  );
}

/**
 * The ranking with an advertisement-only proxy's reason named as such: the scoring says only that it has no
 * connection half (reasonCode `noConnections`), whatever its wording.
 */
export function shownReasons(ranking: readonly ScoreBreakdown[], advertisementOnly: ReadonlySet<string>): ScoreBreakdown[] {
  return ranking.map((r) =>
    advertisementOnly.has(r.proxy) && r.reasonCode === 'noConnections' ? { ...r, reason: ADVERTISEMENT_ONLY_REASON } : r,
  );
}

/** How explain names the reason an advertisement-only proxy is not used. */
export const ADVERTISEMENT_ONLY_REASON = 'advertisement-only proxy (no connections)';

/** Node name of every proxy id (from its hello), where known. */
export function proxyNames(pool: ProxyPool): Map<string, string> {
  const names = new Map<string, string>();
  for (const p of pool.proxies()) if (p.name !== undefined) names.set(p.id, p.name);
  return names;
}

function signed(n: number): string {
  return n > 0 ? `+${n}` : String(n);
}
