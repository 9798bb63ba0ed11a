import { addressTypeName } from '../bluetooth/address.js';
import type { MergedDevice } from '../bluetooth/advertisement.js';
import { type Output, paint } from './output.js';
import { hexOf, sanitize, shortUuid } from './single-proxy.js';

/** Resolves after `ms` or on Ctrl-C (a normal way to stop a scan), whichever comes first. */
export async function scanWindow(ms: number | undefined, signal: AbortSignal): Promise<undefined> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort = (): void => {};
  try {
    return await new Promise<undefined>((resolve) => {
      if (ms !== undefined) timer = setTimeout(() => resolve(undefined), ms);
      onAbort = () => resolve(undefined);
      if (signal.aborted) resolve(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

/** Columns of the scan table (the pool adds "proxies"). */
export const TABLE_HEADERS = ['mac', 'type', 'rssi', 'name', 'services', 'manufacturer', 'count'];

/** One table row of a device. */
export function deviceCells(out: Output, d: MergedDevice, rssi: number, count: number): string[] {
  return [
    d.mac,
    addressTypeName(d.addressType),
    String(rssi),
    d.localName === undefined ? paint(out, 'dim', '-') : sanitize(d.localName),
    d.serviceUuids.map(shortUuid).join(',') || '-',
    [...d.manufacturerData.keys()].map(companyId).join(',') || '-',
    String(count),
  ];
}

/** `3 proxies`, or `2 of 3 proxies (1 not in use, see below)`: the proxies that really served. */
export function viaText(tally: { asked: number; used: number; failed: readonly string[] }): string {
  const plural = (n: number): string => `prox${n === 1 ? 'y' : 'ies'}`;
  if (tally.failed.length === 0) return `${tally.used} ${plural(tally.used)}`;
  return `${tally.used} of ${tally.asked} ${plural(tally.asked)} (${tally.failed.length} not in use, see below)`;
}

/** The JSON object of a device (scan --json, one per device; scan --follow, one per report). */
export function deviceJson(d: MergedDevice, count: number): Record<string, unknown> {
  return {
    mac: d.mac,
    addressType: addressTypeName(d.addressType),
    name: d.localName ?? null,
    rssi: d.rssi,
    txPower: d.txPower ?? null,
    serviceUuids: d.serviceUuids,
    manufacturerIds: [...d.manufacturerData.keys()].map(companyId),
    manufacturerData: Object.fromEntries([...d.manufacturerData].map(([id, data]) => [companyId(id), hexOf(data)])),
    serviceData: Object.fromEntries([...d.serviceData].map(([uuid, data]) => [uuid, hexOf(data)])),
    count,
    lastSeen: new Date(d.timestamp).toISOString(),
  };
}

/** `0x004c` form of a Bluetooth SIG company identifier. */
function companyId(id: number): string {
  return `0x${id.toString(16).padStart(4, '0')}`;
}
