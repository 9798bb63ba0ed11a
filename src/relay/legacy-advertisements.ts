import { parseAdvertisementData } from '../bluetooth/advertisement.js';
import { decodeRawAdvertisements } from '../bluetooth/raw-advertisements.js';
import { BASE_UUID_SUFFIX } from '../bluetooth/uuid.js';
import { BluetoothLEAdvertisementResponse } from '../gen/api_pb.js';

const utf8 = new TextEncoder();

/**
 * Converts one raw advertisement batch (message 93) into the legacy parsed form (message 67 payloads, one
 * per report), as pre-2025.8 firmware sent to subscribers that did not ask for raw advertisements. UUIDs on
 * the Bluetooth base UUID are written in the short `0xXXXX` form and manufacturer ids as `0x%04X`, like the
 * firmware's `ESPBTUUID::to_string()`.
 */
export function toLegacyAdvertisements(batch: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  decodeRawAdvertisements(batch, (address, rssi, addressType, bytes, start, end) => {
    const data = parseAdvertisementData(bytes.subarray(start, end));
    const message = BluetoothLEAdvertisementResponse.create({
      address,
      rssi,
      addressType,
      name: data.localName === undefined ? new Uint8Array(0) : utf8.encode(data.localName),
      serviceUuids: data.serviceUuids.map(legacyUuidText),
      serviceData: [...data.serviceData].map(([uuid, value]) => ({ uuid: legacyUuidText(uuid), legacyData: [], data: value })),
      manufacturerData: [...data.manufacturerData].map(([company, value]) => ({
        uuid: `0x${company.toString(16).toUpperCase().padStart(4, '0')}`,
        legacyData: [],
        data: value,
      })),
    });
    out.push(BluetoothLEAdvertisementResponse.toBinary(message));
  });
  return out;
}

/** `0xXXXX` for 16-bit UUIDs on the base UUID, the full form otherwise. */
function legacyUuidText(uuid: string): string {
  if (uuid.endsWith(BASE_UUID_SUFFIX) && uuid.startsWith('0000')) return `0x${uuid.slice(4, 8).toUpperCase()}`;
  return uuid;
}
