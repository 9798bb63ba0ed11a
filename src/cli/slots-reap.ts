import { formatMac } from '../bluetooth/address.js';
import { type SlotHolding, slotHoldings } from '../inspect/orphan-slots.js';
import type { ProxyInspection, ProxyInspector } from '../inspect/proxy-inspector.js';
import type { SubscriptionHolder } from '../inspect/subscriber-verdict.js';
import { formatDuration } from '../util/duration.js';
import type { CommandContext } from './command.js';
import { EXIT, type Output, paint, table } from './output.js';
import { type Prompter, requireConsent } from './real-home.js';
import { sanitize } from './single-proxy.js';
import { HOLDER_TEXT } from './slots-view.js';

/** A proxy confirms a released slot within ~100 ms; one that keeps it for 2 s will not let go (slots go one by one). */
export const REAP_SLOT_TIMEOUT_MS = 2_000;

/**
 * What `slots --reap` did (or would do) with one slot. `needsProxy`: named by MAC alone but held on several proxies;
 * `gone`: freed by someone else while the user was asked; `changed`: its sign no longer showed (or the proxy could
 * not be asked) after the question, so it was left alone.
 */
export type ReapResult = 'released' | 'stillAllocated' | 'wouldRelease' | 'kept' | 'notAllocated' | 'needsProxy' | 'gone' | 'changed';

/** One slot of `slots --reap --json`. */
export interface ReapSlotJson {
  proxy: string | null;
  proxyName: string | null;
  mac: string;
  holder: SubscriptionHolder | null;
  /** Whether `holder` is sure or a guess (null with no holder). */
  holderSure: boolean | null;
  heldMs: number | null;
  signs: Array<{ sign: string; detail: string }>;
  /** Other proxies where the device holds a slot (a hint, never a reason to release). */
  alsoOn: string[];
  /** Named on the command line. */
  named: boolean;
  result: ReapResult;
}

/** A slot named on the command line: `MAC`, or `MAC@PROXY` (the proxy's id or node name) for one copy. */
export interface ReapTarget {
  readonly address: number;
  readonly proxy: string | undefined;
}

/** How `slots --reap` was asked. */
export interface ReapRequest {
  /** Slots named on the command line: only these are released. */
  readonly named: readonly ReapTarget[];
  readonly dryRun: boolean;
  /** --yes: release the slots that look orphaned without asking. */
  readonly yes: boolean;
  readonly json: boolean;
}

/**
 * `slots --reap`: frees only slots it can show are orphaned. Without the subscription no client can tell another
 * client's live link from an orphan, and the firmware carries out a DISCONNECT from anyone — so the user decides:
 * named slots are released (a MAC held on several proxies must name its proxy too: `MAC@proxy`, since two clients
 * may each hold the device through a different one); otherwise only slots with an orphan sign of their own
 * (`unclaimed`, which needs --subscribe) are listed first and released after a yes on a terminal, or with --yes. A
 * device holding slots on several proxies is shown, never freed for that alone.
 */
export async function reapSlots(
  ctx: CommandContext,
  inspector: ProxyInspector,
  inspections: readonly ProxyInspection[],
  request: ReapRequest,
  prompter?: Prompter,
): Promise<number> {
  const { out, signal } = ctx;
  const holdings = slotHoldings(inspections);
  const matches = (t: ReapTarget, h: SlotHolding): boolean =>
    t.address === h.address && (t.proxy === undefined || t.proxy === h.proxy || t.proxy === h.proxyName);
  const isNamed = (h: SlotHolding): boolean => request.named.some((t) => matches(t, h));
  // A MAC named alone that holds slots on several proxies: which copy is live only its owner knows, so each copy
  // has to be named with its proxy.
  const ambiguous = (h: SlotHolding): boolean =>
    request.named.some((t) => t.address === h.address && t.proxy === undefined) &&
    !request.named.some((t) => t.proxy !== undefined && matches(t, h)) &&
    holdings.filter((other) => other.address === h.address).length > 1;
  const chosen = (h: SlotHolding): boolean => (request.named.length > 0 ? isNamed(h) && !ambiguous(h) : h.signs.length > 0);
  const plan: ReapSlotJson[] = holdings.map((h) => ({
    proxy: h.proxy,
    proxyName: h.proxyName ?? null,
    mac: h.mac,
    holder: h.holder,
    holderSure: h.holderSure,
    heldMs: h.heldMs,
    signs: h.signs.map((s) => ({ sign: s.sign, detail: s.detail })),
    alsoOn: [...h.alsoOn],
    named: isNamed(h),
    result: ambiguous(h) ? 'needsProxy' : chosen(h) ? 'wouldRelease' : 'kept',
  }));
  for (const target of request.named) {
    if (holdings.some((h) => matches(target, h))) continue;
    plan.push({
      proxy: target.proxy ?? null,
      proxyName: null,
      mac: formatMac(target.address),
      holder: null,
      holderSure: null,
      heldMs: null,
      signs: [],
      alsoOn: [],
      named: true,
      result: 'notAllocated',
    });
  }
  if (plan.some((r) => r.result === 'needsProxy')) {
    print(ctx, plan, 'dryRun', request.json);
    for (const mac of new Set(plan.filter((r) => r.result === 'needsProxy').map((r) => r.mac))) {
      const where = plan.filter((r) => r.mac === mac && r.result === 'needsProxy').map((r) => sanitize(r.proxyName ?? r.proxy ?? '-'));
      out.error(
        `${mac} holds slots on ${where.join(', ')}: name the copy to free as ${mac}@${where[0]} (two clients may each hold it through a different proxy; nothing was changed)`,
      );
    }
    return EXIT.usage;
  }
  const toRelease = holdings.filter(chosen);
  if (request.dryRun || toRelease.length === 0) {
    print(ctx, plan, request.dryRun ? 'dryRun' : 'done', request.json);
    return EXIT.ok;
  }
  if (request.named.length === 0) {
    // The signs are inferences: show the list before anything happens (on stderr, beside the question: stdout
    // carries the outcome, one JSON document with --json), and release only on a yes or --yes.
    if (!request.yes) printTable(out, plan, 'plan', (text) => out.error(text));
    const action = `release ${toRelease.length} slot${toRelease.length === 1 ? '' : 's'} that look${toRelease.length === 1 ? 's' : ''} orphaned (this ends whatever link holds ${toRelease.length === 1 ? 'it' : 'them'})`;
    const consent = await requireConsent(ctx, { action, flag: '--yes', given: request.yes }, prompter);
    if (!consent) {
      if (request.json) out.json(reapJson(plan, 'dryRun', true));
      else out.line('Nothing released: declined.');
      return EXIT.ok;
    }
  }
  // The answer may have taken minutes: release only what a fresh look still shows with the same sign.
  const current = request.named.length === 0 ? await stillOrphaned(inspector, toRelease, plan, signal) : toRelease;
  // One slot after the other on each proxy (its controller tears links down one at a time), the proxies side by side.
  const byProxy = new Map<string, SlotHolding[]>();
  for (const h of current) byProxy.set(h.proxy, [...(byProxy.get(h.proxy) ?? []), h]);
  await Promise.all(
    [...byProxy.values()].map(async (holdings) => {
      for (const holding of holdings) {
        const row = plan.find((r) => r.proxy === holding.proxy && r.mac === holding.mac)!;
        try {
          const released = await inspector.release(holding.proxy, holding.address, { signal, timeout: REAP_SLOT_TIMEOUT_MS });
          row.result = released ? 'released' : 'stillAllocated';
        } catch (error) {
          // The proxy went away meanwhile (it drops the slots of a gone subscriber itself); Ctrl-C stops the reap.
          if (signal.aborted) throw error;
          row.result = 'stillAllocated';
        }
      }
    }),
  );
  print(ctx, plan, 'done', request.json);
  return plan.some((r) => r.result === 'stillAllocated') ? EXIT.failure : EXIT.ok;
}

/**
 * Asks every proxy again and keeps the slots of `chosen` that are still allocated with the same signs; marks the
 * others in `plan` (`gone` when a fresh report no longer lists them, `changed` otherwise).
 */
async function stillOrphaned(
  inspector: ProxyInspector,
  chosen: readonly SlotHolding[],
  plan: ReapSlotJson[],
  signal: AbortSignal,
): Promise<SlotHolding[]> {
  const fresh = await inspector.poll({ signal, timeout: REAP_SLOT_TIMEOUT_MS });
  const now = new Map(slotHoldings(fresh).map((h) => [`${h.proxy} ${h.address}`, h]));
  const kept: SlotHolding[] = [];
  for (const before of chosen) {
    const after = now.get(`${before.proxy} ${before.address}`);
    // A proxy whose fresh query failed still shows its old report: that is no fresh look.
    const proxy = fresh.find((p) => p.id === before.proxy);
    const readAgain = proxy?.online === true && proxy.error === undefined && proxy.inspection?.slots !== undefined;
    if (readAgain && after !== undefined && signsOf(after) === signsOf(before)) {
      kept.push(after);
      continue;
    }
    const row = plan.find((r) => r.proxy === before.proxy && r.mac === before.mac)!;
    row.result = readAgain && after === undefined ? 'gone' : 'changed';
  }
  return kept;
}

function signsOf(holding: SlotHolding): string {
  return holding.signs
    .map((s) => s.sign)
    .sort()
    .join('+');
}

/** What `slots --reap --json` prints: `dryRun` when nothing was changed, `declined` when the user said no. */
export interface ReapJson {
  dryRun: boolean;
  declined: boolean;
  slots: ReapSlotJson[];
  /** The earlier shape, kept for scripts: the slots released, tried or (dry run) to be released. */
  orphans: Array<{ proxy: string; mac: string; released: boolean }>;
}

function reapJson(plan: readonly ReapSlotJson[], phase: 'plan' | 'dryRun' | 'done', declined = false): ReapJson {
  const acted = plan.filter(
    (r): r is ReapSlotJson & { proxy: string } =>
      r.proxy !== null && (r.result === 'released' || r.result === 'stillAllocated' || r.result === 'wouldRelease'),
  );
  return {
    dryRun: phase !== 'done',
    declined,
    slots: [...plan],
    orphans: acted.map((r) => ({ proxy: r.proxy, mac: r.mac, released: r.result === 'released' })),
  };
}

/** `plan`: listed before asking; `dryRun`: --dry-run; `done`: after releasing (or with nothing to release). */
function print(ctx: CommandContext, plan: readonly ReapSlotJson[], phase: 'plan' | 'dryRun' | 'done', json: boolean): void {
  const { out } = ctx;
  if (json) out.json(reapJson(plan, phase));
  else printTable(out, plan, phase, (text) => out.line(text));
}

/** The plan as a table with its notes, each line through `write` (stdout, or stderr before a question). */
function printTable(out: Output, plan: readonly ReapSlotJson[], phase: 'plan' | 'dryRun' | 'done', write: (text: string) => void): void {
  if (plan.length === 0) {
    write('No slot is held by anything but this process (or none is allocated): nothing to release.');
    return;
  }
  write(
    table(
      ['proxy', 'mac', 'held', 'subscription', 'orphan signs', 'also on', 'result'],
      plan.map((r) => [
        sanitize(r.proxyName ?? r.proxy ?? '-'),
        r.mac,
        r.heldMs === null ? '-' : formatDuration(r.heldMs),
        r.holder === null ? '-' : `${HOLDER_TEXT[r.holder]}${r.holderSure === false ? '?' : ''}`,
        r.signs.length === 0 ? '-' : r.signs.map((s) => s.sign).join('+'),
        r.alsoOn.length === 0 ? '-' : r.alsoOn.map((name) => sanitize(name)).join(', '),
        resultText(r),
      ]),
    ),
  );
  for (const r of plan)
    for (const s of r.signs) write(paint(out, 'dim', `  ${r.mac} on ${sanitize(r.proxyName ?? r.proxy ?? '-')}: ${s.sign} — ${s.detail}`));
  const spread = new Set(plan.filter((r) => r.alsoOn.length > 0 && r.result === 'kept').map((r) => r.mac));
  for (const mac of spread) {
    const where = plan.filter((r) => r.mac === mac).map((r) => sanitize(r.proxyName ?? r.proxy ?? '-'));
    write(
      paint(
        out,
        'dim',
        `  ${mac} holds slots on ${where.join(', ')}: a ghost of an unfinished disconnect, or a device more than one client holds (some accept several centrals); to free one copy name it: --reap ${mac}@${where[0]}`,
      ),
    );
  }
  const released = plan.filter((r) => r.result === 'released').length;
  const kept = plan.filter((r) => r.result === 'kept').length;
  const would = plan.filter((r) => r.result === 'wouldRelease').length;
  const parts =
    phase === 'done' ? [`${released} released`] : [`${would} would be released${phase === 'dryRun' ? ' (dry run: nothing changed)' : ''}`];
  if (kept > 0) parts.push(`${kept} kept: no sign they are orphaned, they may be another client's live links (name a MAC to release it)`);
  write(paint(out, 'dim', parts.join('; ')));
}

function resultText(r: ReapSlotJson): string {
  switch (r.result) {
    case 'released':
      return 'released';
    case 'stillAllocated':
      return 'still allocated after the disconnect';
    case 'wouldRelease':
      return 'would release';
    case 'kept':
      return 'kept';
    case 'notAllocated':
      return r.proxy === null ? 'not allocated on any proxy' : 'not allocated on that proxy';
    case 'needsProxy':
      return 'held on several proxies: name MAC@proxy';
    case 'gone':
      return 'freed meanwhile';
    case 'changed':
      return 'left alone: no longer looked orphaned';
  }
}
