import type { ProxyInspection } from './proxy-inspector.js';
import type { SubscriptionHolder } from './subscriber-verdict.js';

/**
 * A sign, shown for this very slot, that nobody uses it: `unclaimed` (we hold the subscription and the link is not
 * ours, so its events reach no other client — see SlotAllocation.unclaimed). The only sign enough to free a slot
 * without naming it.
 */
export type OrphanSign = 'unclaimed';

/** One allocated slot that is not a link of this process, with what speaks for it being an orphan. */
export interface SlotHolding {
  /** Id of the proxy (ProxyInspection.id). */
  readonly proxy: string;
  readonly proxyName: string | undefined;
  readonly address: number;
  readonly mac: string;
  readonly heldMs: number;
  /** Who holds the proxy's subscription (and so, unless a sign says otherwise, probably this link). */
  readonly holder: SubscriptionHolder;
  /** Whether `holder` is sure (SubscriberVerdict.sure) or a guess. */
  readonly holderSure: boolean;
  /** Signs of an orphan; empty when the slot may be the live link of whoever holds the subscription. */
  readonly signs: ReadonlyArray<{ readonly sign: OrphanSign; readonly detail: string }>;
  /**
   * The other proxies (names, else ids) where the same device holds a slot. A hint, never a sign: a ghost of an
   * unfinished disconnect looks like this (home-assistant/core#176516), but so does a device that accepts several
   * centrals, or two clients each holding it through a different proxy — nothing tells which copy is live.
   */
  readonly alsoOn: readonly string[];
}

/**
 * Every allocated slot of the online proxies that is not a link of this process, with its orphan signs. Without
 * the subscription a client cannot tell another client's live link from an orphan: the firmware reports both the
 * same, and carries out a DISCONNECT from anyone. With the subscription ours, a link that is not ours and whose
 * events only we receive is shown `unclaimed`. A device holding slots on several proxies is listed in `alsoOn`.
 */
export function slotHoldings(inspections: readonly ProxyInspection[]): SlotHolding[] {
  const where = new Map<number, Array<{ id: string; label: string }>>();
  for (const proxy of inspections) {
    for (const a of proxy.inspection?.allocations ?? []) {
      if (!a.owned) where.set(a.address, [...(where.get(a.address) ?? []), { id: proxy.id, label: proxy.name ?? proxy.id }]);
    }
  }
  const holdings: SlotHolding[] = [];
  for (const proxy of inspections) {
    const inspection = proxy.inspection;
    if (inspection === undefined) continue;
    for (const a of inspection.allocations) {
      if (a.owned) continue;
      holdings.push({
        proxy: proxy.id,
        proxyName: proxy.name,
        address: a.address,
        mac: a.mac,
        heldMs: a.heldMs,
        holder: inspection.subscriber.holder,
        holderSure: inspection.subscriber.sure,
        signs: a.unclaimed === undefined ? [] : [{ sign: 'unclaimed', detail: a.unclaimed }],
        alsoOn: (where.get(a.address) ?? []).filter((other) => other.id !== proxy.id).map((other) => other.label),
      });
    }
  }
  return holdings;
}
