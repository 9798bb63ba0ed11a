// `npm run bench`: speed and memory of esphome-ble next to esphome-client and @2colors/esphome-native-api,
// all against our simulated proxies on 127.0.0.1, in one run. Targets are reported (✓/✗), not asserted.
//
//   BENCH_QUICK=1          smaller counts and shorter windows (smoke run; numbers are noisier)
//   BENCH_ONLY=ads,pool    run only these groups (connect, ads, gatt, pool, fleet, relay, noble, mqtt, matter)
//   BENCH_LIBS=esphome-ble only these libraries (esphome-ble, esphome-client, @2colors) in groups 1-3
//   BENCH_DIST=<dir>       benchmark another build of this package (default: dist/, so `npm run build` first)
//
// Results: tables on stdout, JSON in .bench/results.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { DIST, guardNetwork, installPolyfills, printTable, QUICK, ROOT } from './bench/common.mjs';

installPolyfills();
guardNetwork();

const { SimHost } = await import('./bench/sim-client.mjs');
const GROUPS = {
  connect: () => import('./bench/connect.mjs'),
  ads: () => import('./bench/ads.mjs'),
  gatt: () => import('./bench/gatt.mjs'),
  pool: () => import('./bench/pool.mjs'),
  fleet: () => import('./bench/fleet.mjs'),
  relay: () => import('./bench/relay.mjs'),
  noble: () => import('./bench/noble.mjs'),
  mqtt: () => import('./bench/mqtt.mjs'),
  matter: () => import('./bench/matter.mjs'),
};
const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : undefined;
const selected = Object.keys(GROUPS).filter((name) => only === undefined || only.has(name));

const started = performance.now();
const cpu = os.cpus();
const meta = {
  date: new Date().toISOString(),
  node: process.version,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  cpu: `${cpu.length} × ${cpu[0]?.model ?? 'unknown'}`,
  quick: QUICK,
  dist: DIST,
  loadavg: os.loadavg().map((n) => Math.round(n * 100) / 100),
};
console.log(`esphome-ble bench — node ${meta.node}, ${meta.cpu}, load ${meta.loadavg.join(' ')}${QUICK ? ', BENCH_QUICK' : ''}`);
if (meta.loadavg[0] > cpu.length * 0.5)
  console.log('warning: the machine is busy (1-min load above half the cores): expect slower, noisier numbers');

const host = await SimHost.start();
const results = [];
try {
  for (const name of selected) {
    const group = await GROUPS[name]();
    const groupStarted = performance.now();
    let rows;
    try {
      rows = await group.run(host);
    } catch (error) {
      console.error(`group ${name} failed:`, error);
      rows = [{ library: '-', scenario: name, na: `group failed: ${error.message}` }];
    }
    const seconds = (performance.now() - groupStarted) / 1000;
    printTable(`${group.title}  (${seconds.toFixed(1)} s)`, rows);
    results.push({ group: name, title: group.title, seconds, rows });
  }
} finally {
  await host.close();
}

const checked = results.flatMap((g) => g.rows.filter((r) => r.ok !== undefined).map((r) => ({ ...r, group: g.group })));
const missed = checked.filter((r) => !r.ok);
console.log(
  `\nSummary: ${checked.length - missed.length}/${checked.length} targets met in ${((performance.now() - started) / 1000).toFixed(1)} s`,
);
for (const r of checked) {
  const sign = r.target.op === '<=' ? '≤' : '≥';
  console.log(`  ${r.ok ? '✓' : '✗'} ${r.library} ${r.scenario}: ${r.median.toPrecision(3)} ${r.unit} (target ${sign} ${r.target.value})`);
}

const out = resolve(ROOT, '.bench');
mkdirSync(out, { recursive: true });
writeFileSync(resolve(out, 'results.json'), `${JSON.stringify({ meta, groups: results }, null, 2)}\n`);
console.log(`\nJSON: .bench/results.json`);
