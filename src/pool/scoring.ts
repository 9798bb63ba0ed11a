import type { ProxyMember } from './proxy-member.js';

/** Each free slot is worth 2 dB (up to 3 slots): among equally good radios, prefer the less loaded proxy. */
export const SLOT_BONUS_DB = 2;
const SLOT_BONUS_MAX_SLOTS = 3;
/** One recent path failure costs 10 dB; capped at 30 dB so a failing but close proxy is not banished forever. */
export const FAILURE_PENALTY_DB = 10;
export const FAILURE_PENALTY_CAP_DB = 30;
/** Each of our own in-flight connects on a proxy costs 3 dB: its controller is busy scanning-for-connect. */
export const IN_FLIGHT_PENALTY_DB = 3;
/** A proxy named in `prefer` wins ties up to 10 dB. */
export const PREFER_BONUS_DB = 10;
/** A device not heard for 2 minutes is treated as gone for that proxy (habluetooth uses ~3 min). */
export const DEVICE_STALE_MS = 120_000;

/** Why a proxy scored what it did for one device. */
export interface ScoreBreakdown {
  readonly proxy: string;
  readonly rssi: number;
  readonly slotBonus: number;
  readonly failurePenalty: number;
  readonly inFlightPenalty: number;
  readonly preferBonus: number;
  readonly score: number;
  /** Free slots minus our in-flight connects. */
  readonly available: number;
  readonly failures: number;
  /** Usable right now (online, capable, slot free, not backing off). */
  readonly eligible: boolean;
  /** Why it is not eligible. */
  readonly reason: string | undefined;
  /** `reason` as a code, for callers that act on it (the wording may change). */
  readonly reasonCode?: IneligibleReason | undefined;
}

/** Why a proxy is not eligible: offline, no connection half (ACTIVE_CONNECTIONS), no free slot, backing off. */
export type IneligibleReason = 'offline' | 'noConnections' | 'noFreeSlot' | 'backingOff';

/** Filters applied to candidate proxies. */
export interface ProxySelection {
  prefer?: readonly string[] | undefined;
  require?: readonly string[] | undefined;
  exclude?: readonly string[] | undefined;
  staleMs?: number | undefined;
}

/** Scores every proxy that hears `address`, best first (eligible ones before the rest). */
export function rankProxies(
  proxies: Iterable<ProxyMember>,
  address: number,
  selection: ProxySelection = {},
  now = Date.now(),
): ScoreBreakdown[] {
  const out: ScoreBreakdown[] = [];
  const staleMs = selection.staleMs ?? DEVICE_STALE_MS;
  for (const proxy of proxies) {
    // An empty `require` (its names matched no proxy) allows none: never read as "no restriction".
    if (selection.require !== undefined && !selection.require.includes(proxy.id)) continue;
    if (selection.exclude?.includes(proxy.id)) continue;
    const heard = proxy.heard.get(address);
    if (heard === undefined || now - heard.lastSeen > staleMs) continue;
    const available = proxy.available;
    const failures = proxy.failureScore(now);
    const slotBonus = Math.min(available, SLOT_BONUS_MAX_SLOTS) * SLOT_BONUS_DB;
    const failurePenalty = Math.min(failures * FAILURE_PENALTY_DB, FAILURE_PENALTY_CAP_DB);
    const inFlightPenalty = proxy.leases * IN_FLIGHT_PENALTY_DB;
    const preferBonus = selection.prefer?.includes(proxy.id) ? PREFER_BONUS_DB : 0;
    const backoff = proxy.backoffUntil.get(address) ?? 0;
    let reason: string | undefined;
    let reasonCode: IneligibleReason | undefined;
    if (!proxy.online) [reason, reasonCode] = ['offline', 'offline'];
    else if (!proxy.canConnect) [reason, reasonCode] = ['no active connections', 'noConnections'];
    else if (available <= 0) [reason, reasonCode] = ['no free slot', 'noFreeSlot'];
    else if (backoff > now) [reason, reasonCode] = [`backing off ${backoff - now} ms`, 'backingOff'];
    out.push({
      proxy: proxy.id,
      rssi: Math.round(heard.rssi * 10) / 10,
      slotBonus,
      failurePenalty: Math.round(failurePenalty * 10) / 10,
      inFlightPenalty,
      preferBonus,
      score: Math.round((heard.rssi + slotBonus - failurePenalty - inFlightPenalty + preferBonus) * 10) / 10,
      available,
      failures: Math.round(failures * 100) / 100,
      eligible: reason === undefined,
      reason,
      reasonCode,
    });
  }
  return out.sort((a, b) => Number(b.eligible) - Number(a.eligible) || b.score - a.score);
}
