// Shared helpers of `npm run bench`: run-size knobs, loopback-only guard, statistics, workloads, table rows.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The build under test: ../dist (run `npm run build` first), or BENCH_DIST=<dir> to compare another build. */
export const DIST = resolve(process.env.BENCH_DIST ?? resolve(ROOT, 'dist'));
/** Imports `index.js` or `internal.js` of the build under test. */
export const loadDist = (file) => import(pathToFileURL(resolve(DIST, file)).href);
/** BENCH_QUICK=1 shrinks every iteration count and duration (a smoke run, not for numbers). */
export const QUICK = process.env.BENCH_QUICK === '1' || process.env.BENCH_QUICK === 'true';
/** Test key, base64 of bytes 0x00..0x1f (spec Appendix A). */
export const PSK = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
/** The default profile's connectable demo peripheral (fixtures/profiles/README.md). */
export const DEMO = { mac: 'C0:FF:EE:00:00:01', address: 0xc0ffee000001, addressType: 1, statusHandle: 12 };
/** Reports per raw advertisement message, as the firmware flushes them (spec §6.4). */
export const BATCH_SIZE = 16;
/** Legacy advertising PDU payload size used by the ingest workload. */
export const AD_BYTES = 31;

/** BENCH_LIBS=esphome-ble,… limits the compared libraries (handy with `node --cpu-prof`). */
const LIBS = process.env.BENCH_LIBS ? new Set(process.env.BENCH_LIBS.split(',').map((s) => s.trim())) : undefined;
export const wanted = (library) => LIBS === undefined || LIBS.has(library);

/** Picks the full or the BENCH_QUICK value. */
export const size = (full, quick) => (QUICK ? quick : full);

/** esphome-client 2.x calls Promise.withResolvers (Node 22); Node 20 lacks it. */
export function installPolyfills() {
  if (typeof Promise.withResolvers === 'function') return;
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value() {
      let resolve;
      let reject;
      const promise = new this((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', undefined, null, '']);

/**
 * Refuses UDP sockets (mDNS/multicast) and TCP connects to anything but loopback, in this process.
 * The peer libraries only touch multicast-dns/bonjour when asked to discover, which we never do; this makes sure.
 */
export function guardNetwork() {
  dgram.createSocket = () => {
    throw new Error('bench network guard: UDP sockets (mDNS/multicast) are not allowed');
  };
  syncBuiltinESMExports();
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function guardedConnect(...args) {
    const first = Array.isArray(args[0]) ? args[0][0] : args[0];
    const host = typeof first === 'object' && first !== null ? (first.path !== undefined ? 'localhost' : first.host) : args[1];
    if (typeof first !== 'string' && !LOOPBACK.has(typeof host === 'string' ? host : undefined)) {
      throw new Error(`bench network guard: refusing to connect to ${host}`);
    }
    return connect.apply(this, args);
  };
}

/** Sorted-copy percentile with linear interpolation (p in 0..100). */
export function percentile(values, p) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** median and p90 of a sample. */
export function stats(values) {
  return { median: percentile(values, 50), p90: percentile(values, 90), n: values.length };
}

/**
 * One table row. `target` is { op: '<=' | '>=', value } or undefined; `ok` is computed from the median.
 * `na` replaces the numbers with "n/a" and the reason.
 */
export function row(library, scenario, { median, p90, unit, target, n, na, note, extra } = {}) {
  const ok =
    target === undefined || median === undefined || na ? undefined : target.op === '<=' ? median <= target.value : median >= target.value;
  return { library, scenario, median, p90, unit, n, target, ok, na, note, ...(extra ? { extra } : {}) };
}

export const le = (value) => ({ op: '<=', value });
export const ge = (value) => ({ op: '>=', value });

/** Resolves after `ms`. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `every` ms until it is truthy or `timeoutMs` passes (then throws `what`). */
export async function until(check, what, timeoutMs = 5000, every = 2) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

// ---- advertisement workload -------------------------------------------------------------------------------------

/**
 * Real advertising payloads from fixtures/profiles/*.json, cut to whole AD structures that fit 31 bytes and
 * zero-padded to exactly 31 (what a legacy PDU holds), with each peripheral's address type.
 */
export function loadAdPayloads() {
  const out = [];
  for (const name of ['default', 'kitchen', 'living-room', 'garage']) {
    const profile = JSON.parse(readFileSync(resolve(ROOT, 'fixtures/profiles', `${name}.json`), 'utf8'));
    for (const p of profile.peripherals) {
      for (const hex of p.advertisements) {
        const bytes = Buffer.from(hex, 'hex');
        let cut = 0;
        while (cut < bytes.length && bytes[cut] !== 0 && cut + 1 + bytes[cut] <= AD_BYTES) cut += 1 + bytes[cut];
        if (cut === 0) continue;
        const data = new Uint8Array(AD_BYTES);
        data.set(bytes.subarray(0, cut));
        out.push({ data, addressType: p.addressType ?? 0, rssi: p.rssi ?? -70 });
      }
    }
  }
  return out;
}

/** `count` distinct batches of BATCH_SIZE reports with varied addresses, RSSI and payloads. */
export function buildBatches(count, { perBatch = BATCH_SIZE, devices = 4096, seed = 1 } = {}) {
  const payloads = loadAdPayloads();
  const batches = [];
  let k = seed;
  for (let b = 0; b < count; b++) {
    const reports = [];
    for (let i = 0; i < perBatch; i++, k++) {
      const p = payloads[k % payloads.length];
      // Addresses spread over the 48-bit space (top octet 0xC? = random static), a few thousand devices.
      const device = (Math.imul(k, 0x9e3779b1) >>> 0) % devices;
      const address = 0xc0_00_00_00_00_00 + device * 0x01_00_01;
      reports.push({ address, rssi: p.rssi - (k % 13) + 6, addressType: p.addressType, data: p.data });
    }
    batches.push(reports);
  }
  return batches;
}

function pushVarint(out, n) {
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/** Protobuf BluetoothLERawAdvertisementsResponse (id 93), fields in the firmware's order; sint32 RSSI. */
export function encodeRawBatch(reports) {
  const out = [];
  for (const r of reports) {
    const body = [0x08];
    pushVarint(body, r.address);
    body.push(0x10);
    pushVarint(body, r.rssi < 0 ? -2 * r.rssi - 1 : 2 * r.rssi);
    if (r.addressType) {
      body.push(0x18);
      pushVarint(body, r.addressType);
    }
    body.push(0x22);
    pushVarint(body, r.data.length);
    for (const b of r.data) body.push(b);
    out.push(0x0a);
    pushVarint(out, body.length);
    for (const b of body) out.push(b);
  }
  return Uint8Array.from(out);
}

// ---- output ---------------------------------------------------------------------------------------------------------

function fmt(value, unit) {
  if (value === undefined || Number.isNaN(value)) return '';
  const abs = Math.abs(value);
  if (unit === 'ads/s') return `${(value / 1e6).toFixed(2)} M`;
  if (abs >= 1000) return value.toFixed(0);
  if (abs >= 100) return value.toFixed(1);
  if (abs >= 10) return value.toFixed(2);
  return value.toFixed(3);
}

function fmtTarget(target, unit) {
  if (target === undefined) return '';
  return `${target.op === '<=' ? '≤' : '≥'} ${unit === 'ads/s' ? `${target.value / 1e6} M` : target.value}`;
}

/** Prints rows as an aligned table (library | scenario | median | p90 | unit | target | ✓/✗ | n/notes). */
export function printTable(title, rows) {
  const header = ['library', 'scenario', 'median', 'p90', 'unit', 'target', '', 'notes'];
  const lines = rows.map((r) => [
    r.library,
    r.scenario,
    r.na ? 'n/a' : fmt(r.median, r.unit),
    r.na ? '' : fmt(r.p90, r.unit),
    r.unit ?? '',
    fmtTarget(r.target, r.unit),
    r.ok === undefined ? '' : r.ok ? '✓' : '✗',
    [r.na ?? '', r.n !== undefined ? `n=${r.n}` : '', r.note ?? ''].filter(Boolean).join('; '),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const right = new Set([2, 3]);
  const render = (cells) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join(' │ ')
      .trimEnd();
  console.log(`\n${title}`);
  console.log(render(header));
  console.log(widths.map((w, i) => '─'.repeat(i === widths.length - 1 ? Math.max(5, w) : w)).join('─┼─'));
  for (const l of lines) console.log(render(l));
}
