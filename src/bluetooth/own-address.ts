import { parseMac } from './address.js';

// A relay shows a client whose slots others hold all of them as one slot taken by the proxy's own Bluetooth
// address (README "Relay slot arbitration"). No link can have that address, so whoever reads slot reports drops it.

/** The node's own Bluetooth address from its DeviceInfo (its network MAC on firmware that reports none), if valid. */
export function ownBluetoothAddress(info: { readonly bluetoothMacAddress: string; readonly macAddress: string }): number | undefined {
  const mac = info.bluetoothMacAddress || info.macAddress;
  if (!mac) return undefined;
  try {
    return parseMac(mac);
  } catch {
    return undefined;
  }
}

/**
 * A slot report without the proxy's own address and without the slot it stands for (the relay's "full" marker:
 * `free 0, limit 1, allocated [own]` reads `free 0, limit 0, allocated []`, a full report that still adds up).
 */
export function withoutOwnAddress<T extends { free: number; limit: number; allocated: readonly number[] }>(
  report: T,
  own: number | undefined,
): T {
  if (own === undefined || !report.allocated.includes(own)) return report;
  const allocated = report.allocated.filter((address) => address !== own);
  const dropped = report.allocated.length - allocated.length;
  return { ...report, limit: Math.max(report.free, report.limit - dropped), allocated };
}
