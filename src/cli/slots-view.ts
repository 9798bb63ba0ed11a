import { formatMac } from '../bluetooth/address.js';
import { isAdvertisementOnly } from '../bluetooth/features.js';
import { type OrphanSign, slotHoldings } from '../inspect/orphan-slots.js';
import type { ProxyInspection } from '../inspect/proxy-inspector.js';
import type { SubscriberVerdict, SubscriptionHolder } from '../inspect/subscriber-verdict.js';
import type { ProxyPool } from '../pool/proxy-pool.js';
import { formatDuration } from '../util/duration.js';
import { type Output, paint, table } from './output.js';
import { sanitize } from './single-proxy.js';

/** One allocated slot as `slots --json` reports it. */
export interface SlotAllocationJson {
  mac: string;
  /** Advertised name, when heard (only with --subscribe: advertisements go to the subscriber). */
  name: string | null;
  /** True when the slot is a link of this process (only with --subscribe can there be any). */
  owned: boolean;
  /** How long our slot reports have shown it held without a break. */
  heldMs: number;
  /** Signs that no client uses it (see `slots --help`); empty when it may be a live link. */
  orphanSigns: Array<{ sign: OrphanSign; detail: string }>;
  /** Other proxies where the same device holds a slot: a hint (a ghost, or another live copy), never a sign. */
  alsoOn: string[];
}

/** One proxy as `slots --json` reports it. */
export interface SlotsProxyJson {
  id: string;
  name: string | null;
  host: string;
  port: number;
  online: boolean;
  firmware: string | null;
  apiVersion: string | null;
  model: string | null;
  manufacturer: string | null;
  features: string[];
  /** Forwards advertisements only: no connection half, no slots to read. */
  advertisementOnly: boolean;
  free: number | null;
  limit: number | null;
  allocated: SlotAllocationJson[];
  /** Who holds the Bluetooth subscription, how sure, and what that rests on. */
  subscription: SubscriberVerdict;
  /** Known only with --subscribe (the scanner state goes to the subscriber). */
  scannerMode: string | null;
  error: { code: string; message: string } | null;
}

/** The JSON of every proxy of an inspection. */
export function slotsJson(inspections: readonly ProxyInspection[]): SlotsProxyJson[] {
  const holdings = new Map(slotHoldings(inspections).map((h) => [`${h.proxy} ${h.address}`, h]));
  return inspections.map((p) => {
    const i = p.inspection;
    return {
      id: p.id,
      name: i?.name ?? p.name ?? null,
      host: p.host,
      port: p.port,
      online: p.online,
      firmware: i?.esphomeVersion || null,
      apiVersion: i?.apiVersion ?? null,
      model: i?.model || null,
      manufacturer: i?.manufacturer || null,
      features: [...(i?.featureNames ?? [])],
      advertisementOnly: i?.advertisementOnly ?? false,
      free: i?.slots?.free ?? null,
      limit: i?.slots?.limit ?? null,
      allocated: (i?.allocations ?? []).map((a) => ({
        mac: a.mac,
        name: a.name ?? null,
        owned: a.owned,
        heldMs: a.heldMs,
        orphanSigns: (holdings.get(`${p.id} ${a.address}`)?.signs ?? []).map((s) => ({ sign: s.sign, detail: s.detail })),
        alsoOn: [...(holdings.get(`${p.id} ${a.address}`)?.alsoOn ?? [])],
      })),
      subscription: i?.subscriber ?? { holder: 'unknown', sure: false, evidence: 'not connected' },
      scannerMode: i?.scannerMode ?? null,
      error: p.error === undefined ? (p.online ? null : { code: 'ESPAPI_ERR_CONNECT', message: 'not connected yet' }) : { ...p.error },
    };
  });
}

/** The human table of an inspection, with one evidence line per proxy below it. */
export function inspectionTable(out: Output, inspections: readonly ProxyInspection[]): string {
  const rows = slotsJson(inspections);
  const body = table(
    ['proxy', 'host', 'firmware', 'board', 'free/limit', 'subscription', 'allocated'],
    rows.map((p) => [
      sanitize(p.name ?? p.id),
      sanitize(`${p.host}:${p.port}`),
      sanitize(p.firmware ?? '-'),
      sanitize(p.model ?? '-'),
      slotCell(out, p),
      p.online ? holderCell(out, p.subscription) : '-',
      p.online
        ? p.error === null
          ? allocatedCell(out, p.allocated)
          : paint(out, 'red', `no answer: ${sanitize(p.error.message)}`)
        : paint(out, 'red', `offline: ${sanitize(p.error?.message ?? 'not connected')}`),
    ]),
  );
  const evidence = rows
    .filter((p) => p.online)
    .map((p) =>
      paint(out, 'dim', `  ${sanitize(p.name ?? p.id)}: ${HOLDER_TEXT[p.subscription.holder]} — ${sanitize(p.subscription.evidence)}`),
    );
  return [body, ...evidence].join('\n');
}

/** The line below the table: proxies online, slots free, and what this run took. */
export function summaryLine(inspections: readonly ProxyInspection[], subscribed: boolean): string {
  const online = inspections.filter((p) => p.online);
  const counted = online.filter((p) => p.inspection?.slots !== undefined);
  const free = counted.reduce((n, p) => n + (p.inspection?.slots?.free ?? 0), 0);
  const limit = counted.reduce((n, p) => n + (p.inspection?.slots?.limit ?? 0), 0);
  const advOnly = online.filter((p) => p.inspection?.advertisementOnly).length;
  const held = online.filter((p) => p.inspection?.subscriber.holder === 'thisProcess').length;
  const taken = subscribed
    ? `this process holds the Bluetooth subscription of ${held}`
    : 'nothing taken: slots read with the slot query, the Bluetooth subscription left where it is';
  const adv = advOnly > 0 ? ` (${advOnly} advertisement-only)` : '';
  return `${online.length}/${inspections.length} proxies online${adv}, ${free}/${limit} slots free; ${taken}`;
}

/** What each holder is called in the table. */
export const HOLDER_TEXT: Readonly<Record<SubscriptionHolder, string>> = {
  thisProcess: 'this process',
  otherClient: 'another client',
  nobodySeen: 'nobody seen',
  everyClient: 'every client',
  notAProxy: 'none (not a proxy)',
  unknown: 'unknown',
};

function holderCell(out: Output, verdict: SubscriberVerdict): string {
  const text = `${HOLDER_TEXT[verdict.holder]}${verdict.sure ? '' : '?'}`;
  if (verdict.holder === 'thisProcess') return paint(out, 'green', text);
  if (verdict.holder === 'otherClient') return paint(out, 'yellow', text);
  return paint(out, 'dim', text);
}

function slotCell(out: Output, p: SlotsProxyJson): string {
  if (p.advertisementOnly) return paint(out, 'dim', 'adv. only');
  if (p.online && p.features.length === 0) return paint(out, 'dim', 'not a proxy');
  return countCell(out, p.free === null || p.limit === null ? undefined : { free: p.free, limit: p.limit });
}

function countCell(out: Output, slots: { free: number; limit: number } | undefined): string {
  if (slots === undefined) return '-';
  const text = `${slots.free}/${slots.limit}`;
  if (slots.free === 0) return paint(out, 'red', `${text} FULL`);
  return paint(out, slots.free < slots.limit ? 'yellow' : 'green', text);
}

function allocatedCell(out: Output, allocated: readonly SlotAllocationJson[]): string {
  if (allocated.length === 0) return paint(out, 'dim', '-');
  return allocated
    .map((a) => {
      const mac = a.name === null ? a.mac : `${a.mac} ${sanitize(a.name)}`;
      if (a.owned) return `${mac} (${paint(out, 'green', 'ours')})`;
      const signs = a.orphanSigns.length > 0 ? `, ${paint(out, 'yellow', `orphan? ${a.orphanSigns.map((s) => s.sign).join('+')}`)}` : '';
      const also = a.alsoOn.length > 0 ? `, also on ${a.alsoOn.map((name) => sanitize(name)).join(', ')}` : '';
      return `${mac} (held ${formatDuration(a.heldMs)}${signs}${also})`;
    })
    .join(', ');
}

/** The table of a ProxyPool's proxies (the demo's, whose pool holds the subscriptions): slots, holders, scanner mode. */
export function slotsTable(out: Output, pool: ProxyPool): string {
  const names = new Map(pool.devices().map((d) => [d.address, d.name]));
  const rows = pool.proxies().map((p) => {
    const allocated = (p.slots?.allocated ?? []).map((address) => {
      const name = names.get(address);
      const holder = p.owned.includes(address) ? paint(out, 'green', 'ours') : 'other client';
      return `${formatMac(address)}${name === undefined ? '' : ` ${sanitize(name)}`} (${holder})`;
    });
    const free = p.slots === undefined ? undefined : { free: p.slots.free, limit: p.slots.limit };
    return [
      sanitize(p.name ?? p.id),
      sanitize(`${p.host}:${p.port}`),
      sanitize(p.esphomeVersion ?? '-'),
      isAdvertisementOnly(p.features) ? paint(out, 'dim', 'adv. only') : countCell(out, free),
      p.scannerMode ?? '-',
      p.online
        ? allocated.length === 0
          ? paint(out, 'dim', '-')
          : allocated.join(', ')
        : paint(out, 'red', `offline: ${sanitize(p.lastError ?? 'not connected')}`),
    ];
  });
  return table(['proxy', 'host', 'firmware', 'free/limit', 'scanner', 'allocated'], rows);
}
