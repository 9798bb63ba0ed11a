import { parseMac } from '../bluetooth/address.js';
import type { MergedDevice } from '../bluetooth/advertisement.js';
import { normalizeUuid } from '../bluetooth/uuid.js';
import { type CommandArgs, num, str, UsageError } from './command.js';
import { strings } from './secret-options.js';

/** Which devices `scan` shows: every filter given must match (a repeated --mac or --service matches any of its values). */
export interface ScanFilter {
  readonly macs: ReadonlySet<number>;
  /** Lower-case text the advertised name must contain. */
  readonly name: string | undefined;
  readonly services: readonly string[];
  /** dBm; reports at this strength or weaker are left out (as mqtt's --min-rssi). */
  readonly minRssi: number | undefined;
}

/** The filter of the command line (--mac, --name-contains, --service, --min-rssi). */
export function scanFilterOf(args: CommandArgs): ScanFilter {
  const macs = new Set(
    strings(args, 'mac').map((text) => {
      try {
        return parseMac(text.trim());
      } catch (error) {
        throw new UsageError(`--mac: ${(error as Error).message}`);
      }
    }),
  );
  const services = strings(args, 'service').map((text) => {
    try {
      return normalizeUuid(text);
    } catch (error) {
      throw new UsageError(`--service: ${(error as Error).message}`);
    }
  });
  const rssi = num(args, 'min-rssi');
  // By magnitude, as mqtt's --min-rssi and OpenMQTTGateway's minrssi: 90 and -90 both mean -90 dBm.
  const name = str(args, 'name-contains');
  return { macs, name: name?.toLowerCase(), services, minRssi: rssi === undefined ? undefined : -Math.abs(rssi) };
}

/** True when no filter is set. */
export function isOpen(filter: ScanFilter): boolean {
  return filter.macs.size === 0 && filter.name === undefined && filter.services.length === 0 && filter.minRssi === undefined;
}

/** Whether `device` (merged so far, heard at `rssi`) passes the filter. */
export function matches(filter: ScanFilter, device: MergedDevice, rssi: number): boolean {
  if (filter.macs.size > 0 && !filter.macs.has(device.address)) return false;
  if (filter.minRssi !== undefined && rssi <= filter.minRssi) return false;
  if (filter.name !== undefined && !(device.localName ?? '').toLowerCase().includes(filter.name)) return false;
  if (filter.services.length > 0) {
    const advertised = new Set([...device.serviceUuids, ...device.serviceData.keys()]);
    if (!filter.services.some((uuid) => advertised.has(uuid))) return false;
  }
  return true;
}
