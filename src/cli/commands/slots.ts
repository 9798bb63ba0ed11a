import { formatMac } from '../../bluetooth/address.js';
import { featureNames } from '../../bluetooth/features.js';
import { NoProxyAvailableError } from '../../errors.js';
import type { ProxyDiagnostics, ProxyErrorRecord } from '../../pool/proxy-health.js';
import type { OrphanSlot, ProxyPool, ProxySnapshot } from '../../pool/proxy-pool.js';
import { type Command, type CommandContext, flag, UsageError } from '../command.js';
import { EXIT, exitCodeFor, type Output, paint, Spinner, table } from '../output.js';
import { openPool, POOL_HELP, POOL_OPTIONS, waitForPool } from '../pool-options.js';
import { sanitize, secondsOption } from '../single-proxy.js';

/** A proxy confirms a released slot within ~100 ms; one that keeps it for 2 s will not let go (reaping goes slot by slot). */
const REAP_SLOT_TIMEOUT_MS = 2_000;
/** Slot pushes come in bursts (connect, then connected, then free): redraw at most this often. */
const REDRAW_COALESCE_MS = 100;

/** One allocated slot as `slots` reports it. */
export interface SlotAllocationJson {
  mac: string;
  /** Advertised name when some proxy heard the device. */
  name: string | null;
  /** True when the slot is a link of this process. */
  owned: boolean;
}

/** One proxy as `slots --json` reports it. */
export interface SlotsProxyJson {
  id: string;
  name: string | null;
  host: string;
  port: number;
  online: boolean;
  firmware: string | null;
  features: string[];
  free: number | null;
  limit: number | null;
  allocated: SlotAllocationJson[];
  scannerMode: string | null;
  error: string | null;
  /** ProxyPool.diagnostics() for this proxy, times in ms since the epoch. */
  diagnostics: {
    state: ProxyDiagnostics['state'];
    since: number;
    apiVersion: string | null;
    subscription: ProxyDiagnostics['subscription'];
    adsPerSecond: number;
    devicesHeard: number;
    /** Connects of this process in flight. */
    leases: number;
    lastErrors: ProxyErrorRecord[];
  };
}

/** `esphome-ble slots`: connection slots of every proxy (once, live, or reaping orphans). */
export const slotsCommand: Command = {
  name: 'slots',
  summary: 'Show the connection slots of every proxy (who holds them), live with --watch; --reap frees orphans',
  usage:
    'esphome-ble slots [--proxy host[:port]]... [--config FILE] [--psk B64] [--watch [--duration s]] [--reap [--dry-run]] [--timeout ms] [--json]',
  options: {
    ...POOL_OPTIONS,
    watch: { type: 'boolean' },
    duration: { type: 'string' },
    reap: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
  },
  help: [
    'Per proxy: node name, host, firmware, free/limit slots, the devices holding a slot (MAC, advertised name',
    'when heard, "ours" when this process holds the link, else another client) and the scanner mode.',
    '--json prints ONE JSON array: [{"id","name","host","port","online","firmware","features":[...],"free","limit",',
    '"allocated":[{"mac","name"|null,"owned"}],"scannerMode","error","diagnostics":{"state","since","apiVersion",',
    '"subscription":{"state","since","confirmed"},"adsPerSecond","devicesHeard","leases","lastErrors":[{"code","message","at"}]}}]',
    '(unknown values are null; times are ms since the epoch).',
    '--watch redraws whenever a proxy pushes new slot counts (clears the screen on a terminal, appends a',
    'time-stamped snapshot otherwise; with --json one array per line) until Ctrl-C or --duration seconds.',
    '--reap releases every allocated slot that is not a link of this process (left over after a crash) by',
    'sending a disconnect for it; --dry-run only lists them. CAUTION: slots held by other clients (e.g. Home',
    'Assistant) are not ours either. --json: {"dryRun","orphans":[{"proxy","mac","released"}]}.',
    'Exit 1 when no proxy could be reached (the table still shows why).',
    POOL_HELP,
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const watch = flag(args, 'watch');
    const reap = flag(args, 'reap');
    const dryRun = flag(args, 'dry-run');
    const json = flag(args, 'json');
    const durationMs = secondsOption(args, 'duration');
    if (dryRun && !reap) throw new UsageError('--dry-run only goes with --reap');
    if (watch && reap) throw new UsageError('--watch and --reap cannot be combined');
    if (durationMs !== undefined && !watch) throw new UsageError('--duration only goes with --watch');
    const cli = await openPool(args);
    const spinner = new Spinner(out);
    try {
      spinner.update(cli.discovery ? 'looking for proxies (mDNS)' : 'connecting to the proxies');
      // Every proxy refusing us for good (key, identity) is still a table worth printing; it decides the exit code.
      let verdict: NoProxyAvailableError | undefined;
      await waitForPool(cli, signal).catch((error: unknown) => {
        if (!(error instanceof NoProxyAvailableError) || signal.aborted) throw error;
        verdict = error;
      });
      spinner.stop();
      if (reap) return await reapOrphans(cli.pool, out, dryRun, json);
      if (!watch) {
        printSnapshot(out, cli.pool, json);
        if (cli.pool.proxies().some((p) => p.online)) return 0;
        return verdict === undefined ? EXIT.failure : exitCodeFor(verdict);
      }
      // Ctrl-C ends a watch normally (exit 0); the last picture stays on screen.
      await watchSlots(cli.pool, ctx, json, durationMs);
      return 0;
    } finally {
      spinner.stop();
      await cli.close();
    }
  },
};

/** JSON form of every proxy's slots. */
export function slotsJson(pool: ProxyPool): SlotsProxyJson[] {
  const names = new Map(pool.devices().map((d) => [d.address, d.name]));
  const diagnostics = new Map(pool.diagnostics().map((d) => [d.id, d]));
  return pool.proxies().map((p) => ({
    id: p.id,
    name: p.name ?? null,
    host: p.host,
    port: p.port,
    online: p.online,
    firmware: p.esphomeVersion ?? null,
    features: featureNames(p.features),
    free: p.slots?.free ?? null,
    limit: p.slots?.limit ?? null,
    allocated: (p.slots?.allocated ?? []).map((address) => ({
      mac: formatMac(address),
      name: names.get(address) ?? null,
      owned: p.owned.includes(address),
    })),
    scannerMode: p.scannerMode ?? null,
    error: p.online ? null : (p.lastError ?? 'not connected'),
    diagnostics: diagnosticsJson(diagnostics.get(p.id)),
  }));
}

function diagnosticsJson(d: ProxyDiagnostics | undefined): SlotsProxyJson['diagnostics'] {
  return {
    state: d?.state ?? 'connecting',
    since: d?.since ?? Date.now(),
    apiVersion: d?.apiVersion ?? null,
    subscription: d?.subscription ?? { state: 'none', since: Date.now(), confirmed: false },
    adsPerSecond: d?.adsPerSecond ?? 0,
    devicesHeard: d?.devicesHeard ?? 0,
    leases: d?.slots?.leases ?? 0,
    lastErrors: [...(d?.lastErrors ?? [])],
  };
}

/** The human table of every proxy's slots. */
export function slotsTable(out: Output, pool: ProxyPool): string {
  const rows = slotsJson(pool).map((p) => [
    sanitize(p.name ?? p.id),
    `${p.host}:${p.port}`,
    p.firmware ?? '-',
    slotCell(out, p),
    p.scannerMode ?? '-',
    p.online ? allocatedCell(out, p.allocated) : paint(out, 'red', `offline: ${sanitize(p.error ?? 'not connected')}`),
  ]);
  return table(['proxy', 'host', 'firmware', 'free/limit', 'scanner', 'allocated'], rows);
}

function printSnapshot(out: Output, pool: ProxyPool, json: boolean): void {
  if (json) {
    out.json(slotsJson(pool));
    return;
  }
  out.line(slotsTable(out, pool));
  const proxies = pool.proxies();
  if (proxies.length === 0) out.line(paint(out, 'yellow', 'No proxy found.'));
  else out.line(paint(out, 'dim', summaryLine(proxies)));
}

function summaryLine(proxies: readonly ProxySnapshot[]): string {
  const online = proxies.filter((p) => p.online);
  const free = online.reduce((n, p) => n + (p.slots?.free ?? 0), 0);
  const limit = online.reduce((n, p) => n + (p.slots?.limit ?? 0), 0);
  return `${online.length}/${proxies.length} proxies online, ${free}/${limit} slots free`;
}

function slotCell(out: Output, p: SlotsProxyJson): string {
  if (p.free === null || p.limit === null) return '-';
  const text = `${p.free}/${p.limit}`;
  if (p.free === 0) return paint(out, 'red', `${text} FULL`);
  return paint(out, p.free < p.limit ? 'yellow' : 'green', text);
}

function allocatedCell(out: Output, allocated: readonly SlotAllocationJson[]): string {
  if (allocated.length === 0) return paint(out, 'dim', '-');
  return allocated
    .map((a) => `${a.mac}${a.name === null ? '' : ` ${sanitize(a.name)}`} (${a.owned ? paint(out, 'green', 'ours') : 'other client'})`)
    .join(', ');
}

async function reapOrphans(pool: ProxyPool, out: Output, dryRun: boolean, json: boolean): Promise<number> {
  const orphans: OrphanSlot[] = await pool.reapOrphans({ dryRun, timeout: REAP_SLOT_TIMEOUT_MS });
  if (json) {
    out.json({ dryRun, orphans: orphans.map((o) => ({ proxy: o.proxy, mac: o.mac, released: o.released })) });
    return 0;
  }
  if (orphans.length === 0) {
    out.line('No orphan slots: every allocated slot is a link of this process (or none is allocated).');
    return 0;
  }
  out.line(
    table(
      ['proxy', 'mac', 'result'],
      orphans.map((o) => [
        sanitize(o.proxy),
        o.mac,
        dryRun
          ? 'would release'
          : o.released
            ? paint(out, 'green', 'released')
            : paint(out, 'yellow', 'still allocated after the disconnect'),
      ]),
    ),
  );
  const released = orphans.filter((o) => o.released).length;
  out.line(
    paint(
      out,
      'dim',
      dryRun
        ? `${orphans.length} orphan slot${orphans.length === 1 ? '' : 's'} (dry run: nothing released)`
        : `${released}/${orphans.length} orphan slot${orphans.length === 1 ? '' : 's'} released`,
    ),
  );
  return 0;
}

/** Redraws on every pool event until Ctrl-C or the duration. */
async function watchSlots(pool: ProxyPool, ctx: CommandContext, json: boolean, durationMs: number | undefined): Promise<void> {
  const { out, signal } = ctx;
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  const timer = durationMs === undefined ? undefined : setTimeout(() => stop.abort(), durationMs);
  let redraw: NodeJS.Timeout | undefined;
  const draw = (): void => {
    redraw = undefined;
    if (json) {
      out.json(slotsJson(pool));
      return;
    }
    if (out.isTty) out.line('\u001b[2J\u001b[H' + paint(out, 'bold', `esphome-ble slots — ${clock()} (Ctrl-C stops)`));
    else out.line(`--- ${new Date().toISOString()}`);
    out.line(slotsTable(out, pool));
  };
  try {
    draw();
    for await (const event of pool.status({ signal: stop.signal })) {
      if (event.type !== 'slots' && event.type !== 'proxyUp' && event.type !== 'proxyDown' && event.type !== 'subscription') continue;
      redraw ??= setTimeout(draw, REDRAW_COALESCE_MS);
    }
  } finally {
    clearTimeout(timer);
    clearTimeout(redraw);
    signal.removeEventListener('abort', onAbort);
  }
}

function clock(): string {
  return new Date().toTimeString().slice(0, 8);
}
