import { formatMac } from '../bluetooth/address.js';
import { type SlotHolding, slotHoldings } from '../inspect/orphan-slots.js';
import type { ProxyInspection, ProxyInspector } from '../inspect/proxy-inspector.js';
import type { SubscriptionHolder } from '../inspect/subscriber-verdict.js';
import { formatDuration } from '../util/duration.js';
import type { CommandContext } from './command.js';
import { EXIT, paint, table } from './output.js';
import { type Prompter, requireConsent } from './real-home.js';
import { sanitize } from './single-proxy.js';
import { HOLDER_TEXT } from './slots-view.js';

/** A proxy confirms a released slot within ~100 ms; one that keeps it for 2 s will not let go (slots go one by one). */
export const REAP_SLOT_TIMEOUT_MS = 2_000;

/** What `slots --reap` did (or would do) with one slot. */
export type ReapResult = 'released' | 'stillAllocated' | 'wouldRelease' | 'kept' | 'notAllocated';

/** One slot of `slots --reap --json`. */
export interface ReapSlotJson {
  proxy: string | null;
  proxyName: string | null;
  mac: string;
  holder: SubscriptionHolder | null;
  heldMs: number | null;
  signs: Array<{ sign: string; detail: string }>;
  /** Named on the command line. */
  named: boolean;
  result: ReapResult;
}

/** How `slots --reap` was asked. */
export interface ReapRequest {
  /** Addresses named on the command line: only these are released, wherever they hold a slot. */
  readonly named: readonly number[];
  readonly dryRun: boolean;
  /** --yes: release the slots that look orphaned without asking. */
  readonly yes: boolean;
  readonly json: boolean;
}

/**
 * `slots --reap`: frees only slots it can show are orphaned. Without the subscription no client can tell another
 * client's live link from an orphan, and the firmware carries out a DISCONNECT from anyone — so the user decides:
 * the slots of addresses named on the command line are released; otherwise the slots with an orphan sign (the same
 * device on several proxies; with --subscribe, a link nobody else receives) are listed first and released after a
 * yes on a terminal, or with --yes. A slot without a sign may be another client's live link and is only ever freed
 * when named.
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
  const named = new Set(request.named);
  const chosen = (h: SlotHolding): boolean => (named.size > 0 ? named.has(h.address) : h.signs.length > 0);
  const plan: ReapSlotJson[] = holdings.map((h) => ({
    proxy: h.proxy,
    proxyName: h.proxyName ?? null,
    mac: h.mac,
    holder: h.holder,
    heldMs: h.heldMs,
    signs: h.signs.map((s) => ({ sign: s.sign, detail: s.detail })),
    named: named.has(h.address),
    result: chosen(h) ? 'wouldRelease' : 'kept',
  }));
  for (const address of named) {
    if (holdings.some((h) => h.address === address)) continue;
    plan.push({
      proxy: null,
      proxyName: null,
      mac: formatMac(address),
      holder: null,
      heldMs: null,
      signs: [],
      named: true,
      result: 'notAllocated',
    });
  }
  const toRelease = holdings.filter(chosen);
  if (request.dryRun || toRelease.length === 0) {
    print(ctx, plan, request.dryRun ? 'dryRun' : 'done', request.json);
    return EXIT.ok;
  }
  if (named.size === 0) {
    // The signs are inferences: show the list before anything happens, and release only on a yes or --yes.
    if (!request.json) print(ctx, plan, 'plan', false);
    const action = `release ${toRelease.length} slot${toRelease.length === 1 ? '' : 's'} that look${toRelease.length === 1 ? 's' : ''} orphaned (this ends whatever link holds ${toRelease.length === 1 ? 'it' : 'them'})`;
    const consent = await requireConsent(ctx, { action, flag: '--yes', given: request.yes }, prompter);
    if (!consent) {
      out.line('Nothing released.');
      return EXIT.ok;
    }
  }
  // One slot after the other on each proxy (its controller tears links down one at a time), the proxies side by side.
  const byProxy = new Map<string, SlotHolding[]>();
  for (const h of toRelease) byProxy.set(h.proxy, [...(byProxy.get(h.proxy) ?? []), h]);
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

/** `plan`: listed before asking; `dryRun`: --dry-run; `done`: after releasing (or with nothing to release). */
function print(ctx: CommandContext, plan: readonly ReapSlotJson[], phase: 'plan' | 'dryRun' | 'done', json: boolean): void {
  const { out } = ctx;
  if (json) {
    out.json({ dryRun: phase !== 'done', slots: plan });
    return;
  }
  if (plan.length === 0) {
    out.line('No slot is held by anything but this process (or none is allocated): nothing to release.');
    return;
  }
  out.line(
    table(
      ['proxy', 'mac', 'held', 'subscription', 'orphan signs', 'result'],
      plan.map((r) => [
        sanitize(r.proxyName ?? r.proxy ?? '-'),
        r.mac,
        r.heldMs === null ? '-' : formatDuration(r.heldMs),
        r.holder === null ? '-' : HOLDER_TEXT[r.holder],
        r.signs.length === 0 ? '-' : r.signs.map((s) => s.sign).join('+'),
        resultText(r),
      ]),
    ),
  );
  for (const r of plan)
    for (const s of r.signs)
      out.line(paint(out, 'dim', `  ${r.mac} on ${sanitize(r.proxyName ?? r.proxy ?? '-')}: ${s.sign} — ${s.detail}`));
  const released = plan.filter((r) => r.result === 'released').length;
  const kept = plan.filter((r) => r.result === 'kept').length;
  const would = plan.filter((r) => r.result === 'wouldRelease').length;
  const parts =
    phase === 'done' ? [`${released} released`] : [`${would} would be released${phase === 'dryRun' ? ' (dry run: nothing changed)' : ''}`];
  if (kept > 0) parts.push(`${kept} kept: no sign they are orphaned, they may be another client's live links (name a MAC to release it)`);
  out.line(paint(out, 'dim', parts.join('; ')));
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
      return 'not allocated on any proxy';
  }
}
