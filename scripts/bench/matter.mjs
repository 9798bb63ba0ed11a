// 8. Matter over BLE through a proxy: what a BTP segment's round trip costs on the proxy path (C1 write with
// response → C2 indication back, as BTP sends a segment and gets its answer), next to the radio's own connection
// interval, which is what the same exchange costs on the air between the proxy and the device.
import { fork } from 'node:child_process';
import { loadDist, row, size, stats } from './common.mjs';

const { ProxyPool } = await loadDist('index.js');
const { MATTER_UUIDS } = await loadDist('fixture-server/matter/matter-peers.js');

export const title = '8. Matter over BLE: BTP segment round trip through a proxy (simulated, no radio delay) vs the air';

/**
 * ESPHome's BLE client runs links at 8.75-11.25 ms (esp32_ble_client MEDIUM_*_CONN_INTERVAL, 7.5 ms while it
 * discovers services). A write with response and the indication it triggers take at least two connection events.
 */
const AIR_INTERVAL_MS = { min: 8.75, max: 11.25 };

export async function run(host) {
  const warmup = size(200, 50);
  const count = size(2000, 300);
  const rows = [];
  const proxy = await host.btpEcho();
  const pool = new ProxyPool([`127.0.0.1:${proxy.port}`]);
  try {
    const link = await pool.establishConnection(proxy.mac, { timeout: 10_000 });
    let answered = () => {};
    const stop = await link.startNotify(MATTER_UUIDS.c2, () => answered());
    // A BTP segment of the smallest ATT MTU (20 bytes) and a full one at the proxy's MTU 247 (244 bytes).
    for (const bytes of [20, 244]) {
      const segment = new Uint8Array(bytes).fill(0x05);
      const roundTrip = async () => {
        const indicated = new Promise((resolve) => (answered = resolve));
        const started = performance.now();
        await link.write(MATTER_UUIDS.c1, segment);
        await indicated;
        return performance.now() - started;
      };
      for (let i = 0; i < warmup; i++) await roundTrip();
      const times = [];
      for (let i = 0; i < count; i++) times.push(await roundTrip());
      rows.push(row('esphome-ble', `BTP segment ${bytes} B: C1 write → C2 indication`, { ...stats(times), unit: 'ms' }));
    }
    await stop();
    await link.disconnect();
  } finally {
    await pool.close();
    await proxy.close();
  }
  rows.push(...(await commissioning(size(3, 1))));
  rows.push(
    row('(the air)', 'same exchange between proxy and device', {
      na: `≥ 2 connection events: ≥ ${2 * AIR_INTERVAL_MS.min}-${2 * AIR_INTERVAL_MS.max} ms at ESPHome's ${AIR_INTERVAL_MS.min}-${AIR_INTERVAL_MS.max} ms interval`,
    }),
  );
  return rows;
}

/**
 * Full BLE commissionings, matter.js on both sides, each in a fresh child process (matter.js needs UDP, and noble's
 * default instance takes our bindings once per process), phase by phase.
 */
async function commissioning(runs) {
  const results = [];
  for (let i = 0; i < runs; i++) {
    const child = fork(new URL('./matter-child.mjs', import.meta.url), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    results.push(
      await new Promise((resolve, reject) => {
        child.once('message', resolve);
        child.once('exit', (code) => reject(new Error(`the commissioning child exited with ${code}`)));
      }),
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.disconnect();
    await exited;
  }
  const phases = [
    ['discoveryMs', 'commissioning: controller started → device discovered through the proxy'],
    ['paseMs', 'commissioning: → BTP session and PASE done (first step)'],
    ['bleStepsMs', 'commissioning: steps over BLE (fail-safe … network)'],
    ['caseMs', 'commissioning: CASE over loopback UDP (mDNS lookup + handshake)'],
    ['totalMs', 'commissioning: total, controller started → commissioned'],
  ];
  const segments = stats(results.map((r) => r.segments)).median;
  return [
    ...phases.map(([key, scenario]) => row('esphome-ble + matter.js', scenario, { ...stats(results.map((r) => r[key])), unit: 'ms' })),
    row('esphome-ble + matter.js', 'commissioning: BTP segments over BLE (C1 writes + C2 indications)', {
      median: segments,
      unit: 'segments',
      note: `on the air ≈ ${((segments * AIR_INTERVAL_MS.min) / 1000).toFixed(1)}-${((segments * 2 * AIR_INTERVAL_MS.max) / 1000).toFixed(1)} s at one or two connection events each`,
    }),
  ];
}
