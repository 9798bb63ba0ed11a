import type { ProxyInspection } from './proxy-inspector.js';
import type { SubscriptionHolder } from './subscriber-verdict.js';

/**
 * A sign that nobody uses a slot: `unclaimed` (we hold the subscription and the link is not ours, so its events
 * reach no other client — see SlotAllocation.unclaimed) or `duplicate` (the device holds a slot on several proxies).
 */
export type OrphanSign = 'unclaimed' | 'duplicate';

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
  /** Signs of an orphan; empty when the slot may be the live link of whoever holds the subscription. */
  readonly signs: ReadonlyArray<{ readonly sign: OrphanSign; readonly detail: string }>;
}

/**
 * Every allocated slot of the online proxies that is not a link of this process, with its orphan signs. Without
 * the subscription a client cannot tell another client's live link from an orphan: the firmware reports both the
 * same, and carries out a DISCONNECT from anyone. What it can see is the same device holding slots on several
 * proxies (a ghost of an unfinished disconnect, home-assistant/core#176516) — most devices accept one connection at
 * a time, so at most one of those is live. With the subscription ours, a link that is not ours is shown unclaimed.
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
      const signs: Array<{ sign: OrphanSign; detail: string }> = [];
      if (a.unclaimed !== undefined) signs.push({ sign: 'unclaimed', detail: a.unclaimed });
      const elsewhere = (where.get(a.address) ?? []).filter((other) => other.id !== proxy.id);
      if (elsewhere.length > 0) {
        signs.push({
          sign: 'duplicate',
          detail: `also holds a slot on ${elsewhere.map((other) => other.label).join(', ')}: most devices accept one connection at a time, so at most one of these is live`,
        });
      }
      holdings.push({
        proxy: proxy.id,
        proxyName: proxy.name,
        address: a.address,
        mac: a.mac,
        heldMs: a.heldMs,
        holder: inspection.subscriber.holder,
        signs,
      });
    }
  }
  return holdings;
}
