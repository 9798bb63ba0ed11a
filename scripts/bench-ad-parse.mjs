// Micro-benchmark of the AD-structure parser on the real payloads in shared/data.
// Usage: node scripts/bench-ad-parse.mjs [rounds]
// Compiles the Bluetooth model modules to a temp dir (no full build needed), then times parseRawAdvertisement.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dataPath = resolve(root, '../shared/data/ble-advertisements.json');
if (!existsSync(dataPath)) {
  console.error(`missing ${dataPath}`);
  process.exit(1);
}
const rounds = Number(process.argv[2] ?? 2000);

const out = mkdtempSync(join(tmpdir(), 'bench-ad-'));
try {
  execFileSync(
    join(root, 'node_modules/.bin/tsc'),
    [
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
      join(root, 'src/bluetooth/advertisement.ts'),
    ],
    { stdio: 'inherit' },
  );
  const { parseRawAdvertisement } = await import(pathToFileURL(join(out, 'bluetooth/advertisement.js')).href);

  const ads = JSON.parse(readFileSync(dataPath, 'utf8')).advertisements;
  const payloads = ads.map((a) => Uint8Array.from(Buffer.from(a.raw_ad_hex, 'hex')));
  const avgLen = payloads.reduce((n, p) => n + p.length, 0) / payloads.length;

  let sink = 0;
  const run = (count) => {
    const start = process.hrtime.bigint();
    for (let r = 0; r < count; r++) {
      for (let i = 0; i < payloads.length; i++) {
        const ad = parseRawAdvertisement(0xaabbccddeeff + i, -60, 1, payloads[i], 1_700_000_000_000);
        sink += ad.serviceUuids.length + ad.manufacturerData.size + ad.serviceData.size;
      }
    }
    return Number(process.hrtime.bigint() - start) / (count * payloads.length);
  };
  run(Math.max(1, rounds >> 2)); // warm-up so the optimizing compiler has run
  const ns = Math.min(run(rounds), run(rounds), run(rounds));
  console.log(
    `${payloads.length} payloads, mean ${avgLen.toFixed(1)} bytes: ${ns.toFixed(1)} ns per advertisement (best of 3, ${rounds} rounds) [${sink}]`,
  );
} finally {
  rmSync(out, { recursive: true, force: true });
}
