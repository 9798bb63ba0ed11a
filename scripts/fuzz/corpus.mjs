// The seed corpus of `npm run fuzz`: real advertisements and GATT tables (fixtures/data) and the recorded
// fixture sessions (fixtures/recordings/*.jsonl), turned into the bytes each target decodes.
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadDist, ROOT } from './common.mjs';

const { parseTranscript } = await loadDist('internal.js');
const { entryToWire } = await loadDist('fixture-server/transcript.js');
const { encodePlaintextFrame } = await loadDist('frame/plaintext.js');
const { uuidToWords } = await loadDist('bluetooth/uuid.js');
const pb = await loadDist('gen/api_pb.js');

/** The committed real advertisements and GATT tables. */
const DATA_DIR = resolve(ROOT, 'fixtures/data');
/** The firmware flushes its advertisement queue at 16 reports. */
const BATCH_REPORTS = 16;

function readJson(name) {
  return JSON.parse(readFileSync(resolve(DATA_DIR, name), 'utf8'));
}

function hexBytes(hex) {
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

function loadMessages() {
  const dir = resolve(ROOT, 'fixtures/recordings');
  const messages = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl'))) {
    const transcript = parseTranscript(readFileSync(resolve(dir, file), 'utf8'), file);
    for (const entry of transcript.entries) messages.push({ dir: entry.dir, ...entryToWire(entry) });
  }
  return messages;
}

function loadAdvertisements() {
  const ads = readJson('ble-advertisements.json').advertisements;
  return ads
    .filter((ad) => typeof ad.raw_ad_hex === 'string')
    .map((ad) => ({
      address: Number.parseInt(ad.address.replaceAll(':', ''), 16),
      addressType: ad.address_type ?? 0,
      rssi: ad.rssi ?? -60,
      data: hexBytes(ad.raw_ad_hex),
    }));
}

function serviceMessage(service) {
  const words = (uuid) => [...uuidToWords(uuid)];
  return {
    uuid: words(service.uuid),
    handle: service.handle ?? 0,
    characteristics: (service.characteristics ?? []).map((c) => ({
      uuid: words(c.uuid),
      handle: c.handle ?? 0,
      properties: c.properties_mask ?? 0,
      descriptors: (c.descriptors ?? []).map((d) => ({ uuid: words(d.uuid), handle: d.handle ?? 0 })),
    })),
  };
}

function loadGattTables() {
  const devices = readJson('gatt-services.json').devices;
  return devices.map((device) =>
    pb.BluetoothGATTGetServicesResponse.toBinary(
      pb.BluetoothGATTGetServicesResponse.create({ address: device.address_int ?? 0, services: device.services.map(serviceMessage) }),
    ),
  );
}

/** Every corpus the targets draw on. */
export function loadCorpus() {
  const messages = loadMessages();
  const ads = loadAdvertisements();
  const batches = [];
  for (let i = 0; i < ads.length; i += BATCH_REPORTS) {
    const advertisements = ads.slice(i, i + BATCH_REPORTS).map((ad) => ({ ...ad }));
    batches.push(pb.BluetoothLERawAdvertisementsResponse.toBinary(pb.BluetoothLERawAdvertisementsResponse.create({ advertisements })));
  }
  for (const m of messages) if (m.id === 93) batches.push(m.payload);
  const gattTables = loadGattTables();
  const d2c = messages.filter((m) => m.dir === 'd2c');
  for (const payload of gattTables) d2c.push({ dir: 'd2c', id: 71, payload });
  for (const payload of batches) d2c.push({ dir: 'd2c', id: 93, payload });
  const c2d = messages.filter((m) => m.dir === 'c2d');
  const frames = messages.map((m) => encodePlaintextFrame(m.id, m.payload));
  return {
    /** Device → client messages (recordings, GATT tables, advertisement batches). */
    d2c,
    /** Client → device requests from the recordings. */
    c2d,
    /** Plaintext frames of every recorded message. */
    frames,
    /** AD payloads (advertisement + scan response bytes). */
    adData: ads.map((ad) => ad.data),
    /** BluetoothLERawAdvertisementsResponse payloads of up to 16 reports. */
    batches,
    /** Every payload, for splicing. */
    payloads: [...messages.map((m) => m.payload), ...gattTables, ...batches, ...ads.map((ad) => ad.data)].filter((p) => p.length > 0),
  };
}
