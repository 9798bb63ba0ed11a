import { DEFAULT_WATCH_INTERVAL_MS, type ProxyInspection, type ProxyInspector } from '../../inspect/proxy-inspector.js';
import { HOLD_EVIDENCE_MS, SURE_HOLD_MS } from '../../inspect/subscriber-verdict.js';
import { formatDuration } from '../../util/duration.js';
import { type Command, type CommandContext, durationOption, flag, UsageError } from '../command.js';
import { announceHeld, lookAtInspection, offlineExit, openInspection, waitForInspection } from '../inspect-options.js';
import { EXIT, paint, Spinner } from '../output.js';
import { DEFAULT_POOL_READY_MS, POOL_HELP, POOL_OPTIONS } from '../pool-options.js';
import { parseAddressArg } from '../single-proxy.js';
import { type ReapTarget, reapSlots } from '../slots-reap.js';
import { inspectionTable, slotsJson, summaryLine } from '../slots-view.js';
import { option } from '../vocabulary.js';

export type { SlotAllocationJson, SlotsProxyJson } from '../slots-view.js';
export { slotsJson, slotsTable } from '../slots-view.js';

/** `esphome-ble slots`: connection slots of every proxy (once, live, or reaping orphans), taking nothing by default. */
export const slotsCommand: Command = {
  name: 'slots',
  summary: 'Show the connection slots of every proxy and who holds them, without taking anything; --watch live; --reap frees orphans',
  usage: 'esphome-ble slots [--proxy host[:port]...] [--watch | --reap [MAC[@proxy]...]] [options]',
  options: {
    ...POOL_OPTIONS,
    timeout: option('timeout', {
      description: 'Deadline of the whole look (connect, slot queries, second look); with --watch of each poll; bare: ms',
      default: formatDuration(DEFAULT_POOL_READY_MS),
    }),
    watch: option('watch', { default: 'off: one look' }),
    interval: option('interval', {
      description: 'Time between two polls of --watch; a bare number is seconds',
      default: formatDuration(DEFAULT_WATCH_INTERVAL_MS),
    }),
    duration: option('duration', { description: 'Stop --watch after this long; a bare number is seconds', default: 'until Ctrl-C' }),
    reap: option('reap', { default: 'off' }),
    'dry-run': option('dry-run', { description: 'With --reap: only list what would be released', default: 'off' }),
    yes: option('yes', { description: 'With --reap: release without asking', default: 'off: ask on a terminal' }),
    subscribe: option('subscribe', { default: 'off: take nothing' }),
  },
  examples: [
    'esphome-ble slots --proxy 192.168.1.40 --proxy 192.168.1.41',
    'esphome-ble slots --watch --interval 2s',
    'esphome-ble slots --proxy 192.168.1.40 --reap A4:C1:38:00:00:01',
  ],
  help: [
    'Reads each proxy with the slot query only, which the firmware answers to any client: no advertisement',
    'subscribe (on ESPHome 2026.7+ that would take the subscription from Home Assistant) and no subscriber probe.',
    'Per proxy: node name, host, firmware, board, free/limit ("adv. only" for a proxy that forwards advertisements',
    'only), who holds the Bluetooth subscription and the devices holding a slot, then one line per proxy with the',
    'evidence. The subscription column reads: "this process"; "another client" (a slot of another client held',
    `over ${HOLD_EVIDENCE_MS / 1000} s, which the firmware allows only while somebody is subscribed; the run asks twice to see it. Still`,
    'a "?": a link to a peer that stopped answering can outlive its subscriber by its supervision timeout, up to 32 s;',
    `--watch drops the "?" after ${SURE_HOLD_MS / 1000} s); "nobody seen" (no slot held: an idle Home Assistant looks the same, hence the`,
    '"?"); "every client" (firmware before 2023.6); "none (not a proxy)" (feature flags 0); "unknown". A "?" marks a',
    'guess.',
    '--json prints ONE JSON array: [{"id","name","host","port","online","firmware","apiVersion","model","manufacturer",',
    '"features":[...],"advertisementOnly","free","limit",',
    '"allocated":[{"mac","name"(advertised, heard only with --subscribe),"owned","heldMs","orphanSigns":[{"sign","detail"}],',
    '"alsoOn":[...]}],',
    '"subscription":{"holder":"thisProcess|otherClient|nobodySeen|everyClient|notAProxy|unknown","sure","evidence"},"scannerMode",',
    '"error":{"code","message"}|null}] (unknown values are null). Changed from the pool-based slots: "error" was a string,',
    'and "diagnostics" is gone (ProxyPool.diagnostics(), the relay\'s stats events); see README, CLI changes.',
    '--watch asks every --interval and redraws when something changed (clears the screen on a terminal, appends a',
    'time-stamped snapshot otherwise; with --json one array per line) until Ctrl-C or --duration. Slot pushes go to',
    'the subscriber only, hence the polling.',
    "--reap frees slots that are orphaned. Without the subscription nobody can tell another client's live link from",
    'an orphan, and the firmware obeys a disconnect from anyone, so: slots named after --reap are released, as MAC',
    '(its one slot) or MAC@proxy (proxy id or node name; needed when the device holds slots on several proxies, since',
    'two clients may each hold it through a different one: exit 2, nothing changed). Otherwise only slots with an',
    'orphan sign of their own are offered (with --subscribe: "unclaimed", a link whose events reach no other client),',
    'listed first on stderr, then released after a yes on a terminal (stdin and stderr) or with --yes (without a',
    'terminal and without --yes: exit 2, nothing changed). A device holding slots on several proxies is shown ("also',
    'on"), never released for that alone: a ghost of an unfinished disconnect looks the same as a device two clients',
    'hold. Other slots are kept. --dry-run only lists. --json: {"dryRun" (nothing changed),"declined" (answered no),',
    '"orphans":[{"proxy","mac","released"}] (the earlier shape: slots released, tried or to be released),',
    '"slots":[{"proxy","proxyName","mac","holder","holderSure","heldMs","signs":[...],"alsoOn",',
    '"named","result":"released|stillAllocated|wouldRelease|kept|notAllocated|needsProxy|gone|changed"}]}. After a',
    'yes the proxies are asked again: a slot freed meanwhile ("gone") or no longer showing its sign ("changed") is',
    'left alone. Exit 1 when a slot stayed allocated.',
    "--subscribe takes each proxy's Bluetooth subscription for the run (for the scanner mode and proof of orphans):",
    'on ESPHome 2026.7+ that takes it from Home Assistant: the events of its open links come to us while the run',
    "lasts, and when it ends the proxy has no subscriber and drops every link, Home Assistant's included; Home",
    'Assistant gets no advertisements until it subscribes again. On older firmware it is refused where Home Assistant',
    'holds it. It never sends the subscriber probe and never takes the subscription back. A note on stderr says which.',
    'Exit 1 when no proxy could be reached (the table still shows why).',
    POOL_HELP,
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    const watch = flag(args, 'watch');
    const reap = flag(args, 'reap');
    const dryRun = flag(args, 'dry-run');
    const yes = flag(args, 'yes');
    const json = flag(args, 'json');
    const subscribe = flag(args, 'subscribe');
    const intervalMs = durationOption(args, 'interval');
    const durationMs = durationOption(args, 'duration');
    if (args.positionals.length > 0 && !reap)
      throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])} (MACs go after --reap)`);
    const named = args.positionals.map((text) => reapTarget(text));
    if ((dryRun || yes) && !reap) throw new UsageError(`--${dryRun ? 'dry-run' : 'yes'} only goes with --reap`);
    if (dryRun && yes) throw new UsageError('--dry-run and --yes cannot be combined');
    if (watch && reap) throw new UsageError('--watch and --reap cannot be combined');
    if ((durationMs !== undefined || intervalMs !== undefined) && !watch) {
      throw new UsageError(`--${durationMs !== undefined ? 'duration' : 'interval'} only goes with --watch`);
    }
    const cli = await openInspection(args, { subscribe, clientInfo: 'esphome-ble slots' });
    const spinner = new Spinner(out);
    try {
      spinner.update(cli.discovery ? 'looking for proxies (mDNS)' : 'connecting to the proxies');
      const inspector = cli.inspector;
      if (watch) {
        await waitForInspection(cli, signal);
        spinner.update('reading the slots');
        await watchSlots(inspector, ctx, { json, subscribe, intervalMs, durationMs, timeout: cli.timeout });
        return EXIT.ok;
      }
      const inspections = await lookAtInspection(cli, signal);
      spinner.stop();
      if (subscribe) announceHeld(out, inspections);
      if (reap) return await reapSlots(ctx, inspector, inspections, { named, dryRun, yes, json });
      if (json) out.json(slotsJson(inspections));
      else {
        out.line(inspectionTable(out, inspections));
        out.line(
          inspections.length === 0 ? paint(out, 'yellow', 'No proxy found.') : paint(out, 'dim', summaryLine(inspections, subscribe)),
        );
      }
      return inspections.some((p) => p.online) ? EXIT.ok : offlineExit(inspections);
    } finally {
      spinner.stop();
      await cli.close();
    }
  },
};

/** Polls and redraws on change until Ctrl-C or the duration. */
async function watchSlots(
  inspector: ProxyInspector,
  ctx: CommandContext,
  options: { json: boolean; subscribe: boolean; intervalMs: number | undefined; durationMs: number | undefined; timeout: number },
): Promise<void> {
  const { out, signal } = ctx;
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  const timer = options.durationMs === undefined ? undefined : setTimeout(() => stop.abort(), options.durationMs);
  let last = '';
  let announced = false;
  try {
    for await (const inspections of inspector.watch({ interval: options.intervalMs, signal: stop.signal, timeout: options.timeout })) {
      if (options.subscribe && !announced && inspections.some((p) => p.inspection !== undefined)) {
        announced = true;
        announceHeld(out, inspections);
      }
      const key = changeKey(inspections);
      if (key === last) continue;
      last = key;
      if (options.json) out.json(slotsJson(inspections));
      else {
        if (out.isTty) out.line(`\u001b[2J\u001b[H${paint(out, 'bold', `esphome-ble slots — ${clock()} (Ctrl-C stops)`)}`);
        else out.line(`--- ${new Date().toISOString()}`);
        out.line(inspectionTable(out, inspections));
        out.line(paint(out, 'dim', summaryLine(inspections, options.subscribe)));
      }
    }
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

/** What a redraw depends on: everything but the ever-growing hold times and the evidence wording. */
function changeKey(inspections: readonly ProxyInspection[]): string {
  return JSON.stringify(
    slotsJson(inspections).map((p) => ({
      ...p,
      allocated: p.allocated.map((a) => ({ mac: a.mac, owned: a.owned, signs: a.orphanSigns.map((s) => s.sign), alsoOn: a.alsoOn })),
      subscription: { holder: p.subscription.holder, sure: p.subscription.sure },
    })),
  );
}

/** `MAC` or `MAC@proxy` after --reap. */
function reapTarget(text: string): ReapTarget {
  const at = text.indexOf('@');
  if (at < 0) return { address: parseAddressArg(text), proxy: undefined };
  const proxy = text.slice(at + 1);
  if (proxy === '') throw new UsageError(`--reap ${JSON.stringify(text)}: name the proxy after @ (its id or node name)`);
  return { address: parseAddressArg(text.slice(0, at)), proxy };
}

function clock(): string {
  return new Date().toTimeString().slice(0, 8);
}
