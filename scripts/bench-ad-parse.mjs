// Micro-benchmark of the AD-structure parser on the real payloads in fixtures/data.
// Usage: node scripts/bench-ad-parse.mjs [rounds]
// Compiles the Bluetooth modules to a temp dir (no full build needed), then reports ns per advertisement for
// parsing alone, parsing plus reading `mac`, and (when src/bluetooth/raw-advertisements.ts exists) batch decoding plus parsing.
// Timings are wall-clock minima; on a shared machine run it a few times.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dataPath = resolve(root, 'fixtures/data/ble-advertisements.json');
if (!existsSync(dataPath)) {
  console.error(`missing ${dataPath}`);
  process.exit(1);
}
const rounds = Number(process.argv[2] ?? 2000);
const BATCH = 16; // the proxy sends up to 16 reports per message (§6.4)

const varint = (n) => {
  const out = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
};

/** Hand-encoded BluetoothLERawAdvertisementsResponse, field order as the firmware writes it. */
function encodeBatch(reports) {
  const bytes = [];
  for (const r of reports) {
    const body = [0x08, ...varint(r.address), 0x10, ...varint(r.rssi < 0 ? -2 * r.rssi - 1 : 2 * r.rssi)];
    if (r.addressType) body.push(0x18, ...varint(r.addressType));
    body.push(0x22, ...varint(r.data.length), ...r.data);
    bytes.push(0x0a, ...varint(body.length), ...body);
  }
  return Uint8Array.from(bytes);
}

const out = mkdtempSync(join(tmpdir(), 'bench-ad-'));
try {
  const sources = ['advertisement.ts', 'raw-advertisements.ts'].map((f) => join(root, 'src/bluetooth', f)).filter((f) => existsSync(f));
  const tscArgs = [
    '--noCheck',
    '--outDir',
    out,
    '--rootDir',
    join(root, 'src'),
    '--module',
    'nodenext',
    '--target',
    'es2022',
    '--skipLibCheck',
  ];
  execFileSync(join(root, 'node_modules/.bin/tsc'), [...tscArgs, ...sources], { stdio: 'inherit' });
  const load = (file) => import(pathToFileURL(join(out, 'bluetooth', file)).href);
  const { parseRawAdvertisement } = await load('advertisement.js');
  const batchDecoder = sources.length > 1 ? (await load('raw-advertisements.js')).decodeRawAdvertisements : undefined;

  const ads = JSON.parse(readFileSync(dataPath, 'utf8')).advertisements;
  const reports = ads.map((a, i) => ({
    address: 0xf2fabe000000 + i,
    rssi: a.rssi ?? -60,
    addressType: a.address_type ?? 1,
    data: Uint8Array.from(Buffer.from(a.raw_ad_hex, 'hex')),
  }));
  const batches = [];
  for (let i = 0; i < reports.length; i += BATCH) batches.push(encodeBatch(reports.slice(i, i + BATCH)));
  const avgLen = reports.reduce((n, r) => n + r.data.length, 0) / reports.length;

  let sink = 0;
  const time = (count, body) => {
    body(Math.max(1, count >> 2)); // warm-up so the optimizing compiler has run
    let best = Number.POSITIVE_INFINITY;
    for (let k = 0; k < 5; k++) {
      const start = process.hrtime.bigint();
      body(count);
      best = Math.min(best, Number(process.hrtime.bigint() - start) / (count * reports.length));
    }
    return best.toFixed(1);
  };
  const parseOnly = (count) => {
    for (let n = 0; n < count; n++) {
      for (const r of reports) {
        const ad = parseRawAdvertisement(r.address, r.rssi, r.addressType, r.data, 1_700_000_000_000);
        sink += ad.serviceUuids.length + ad.manufacturerData.size + ad.serviceData.size;
      }
    }
  };
  const parseWithMac = (count) => {
    for (let n = 0; n < count; n++) {
      for (const r of reports) sink += parseRawAdvertisement(r.address, r.rssi, r.addressType, r.data, 1_700_000_000_000).mac.length;
    }
  };
  const onReport = (address, rssi, addressType, data) => {
    sink += parseRawAdvertisement(address, rssi, addressType, data, 1_700_000_000_000).serviceData.size;
  };
  const decodeAndParse = (count) => {
    for (let n = 0; n < count; n++) for (const b of batches) batchDecoder(b, onReport);
  };

  console.log(`${reports.length} real payloads, mean ${avgLen.toFixed(1)} bytes; ns per advertisement (best of 5, ${rounds} rounds):`);
  console.log(`  parseRawAdvertisement              ${time(rounds, parseOnly)}`);
  console.log(`  parseRawAdvertisement + .mac       ${time(rounds, parseWithMac)}`);
  if (batchDecoder) console.log(`  decodeRawAdvertisements + parse    ${time(rounds, decodeAndParse)}  (batches of ${BATCH})`);
  if (sink === 0) console.log('(nothing parsed?)');
} finally {
  rmSync(out, { recursive: true, force: true });
}
