import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The committed `fixtures/` folder (provenance and licences: fixtures/README.md). */
export const FIXTURES_DIR = fileURLToPath(new URL('../../fixtures/', import.meta.url));

/** One record of fixtures/data/ble-advertisements.json (fields: fixtures/data/README.md). */
export interface RecordedAdvertisement {
  id: string;
  family: string;
  address: string;
  address_type: number | null;
  rssi: number | null;
  local_name: string | null;
  manufacturer_data: Record<string, string>;
  service_data: Record<string, string>;
  service_uuids: string[];
  tx_power: number | null;
  raw_ad_hex: string;
  raw_parts_hex?: string[];
}

/** Parses a JSON file under fixtures/ (a missing file fails the test that reads it, by name). */
export function readFixtureJson<T>(relativePath: string): T {
  return JSON.parse(readFileSync(join(FIXTURES_DIR, relativePath), 'utf8')) as T;
}

/** Every advertisement of fixtures/data/ble-advertisements.json, in file order. */
export function recordedAdvertisements(): RecordedAdvertisement[] {
  return readFixtureJson<{ advertisements: RecordedAdvertisement[] }>('data/ble-advertisements.json').advertisements;
}
