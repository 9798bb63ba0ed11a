// 5. Fleet: 200 simulated Noise proxies, each sending 100 ads/s in raw batches, and one ProxyPool connected to all.
// Measured twice in fresh processes: everything in one process (the target's definition), then simulator and pool
// in separate processes to separate the client's share.
import { le, PSK, row, size } from './common.mjs';
import { ChildRpc } from './sim-client.mjs';

const PROXIES = 200;
const ADS_PER_SECOND = 100;

export const title = `5. fleet: ${PROXIES} simulated Noise proxies × ${ADS_PER_SECOND} ads/s + one ProxyPool (fresh processes)`;

function resultRows(label, sample, withTargets, traffic) {
  return [
    row('esphome-ble', `${label}: CPU`, {
      median: sample.cpuPercent,
      unit: '% core',
      target: withTargets ? le(25) : undefined,
      note: traffic,
    }),
    row('esphome-ble', `${label}: RSS`, {
      median: sample.rssMaxMB,
      unit: 'MB',
      target: withTargets ? le(150) : undefined,
      note: `peak; V8 heap ${sample.heapUsedMB.toFixed(0)} used / ${sample.heapTotalMB.toFixed(0)} MB, external ${sample.externalMB.toFixed(0)} MB`,
    }),
  ];
}

const received = (sample, windowS) => `${(sample.adsPerSecond / 1000).toFixed(1)} k ads/s delivered to the pool; ${windowS} s window`;

export async function run() {
  const warmupMs = size(2000, 1000);
  const windowMs = size(10_000, 3000);
  const windowS = windowMs / 1000;
  const rows = [];

  // One process: fleet + pool together.
  const both = await ChildRpc.start('./fleet-child.mjs');
  try {
    const { ports, names } = await both.request('startSim', { count: PROXIES, psk: PSK });
    const { online } = await both.request('startPool', { ports, names, psk: PSK });
    if (online !== PROXIES) throw new Error(`only ${online}/${PROXIES} proxies online`);
    await both.request('startTraffic', { adsPerSecond: ADS_PER_SECOND });
    await new Promise((r) => setTimeout(r, warmupMs));
    const sample = await both.request('sample', { ms: windowMs });
    rows.push(...resultRows('one process (pool + simulator)', sample, true, received(sample, windowS)));
    await both.request('stop');
  } catch (error) {
    rows.push(row('esphome-ble', 'one process (pool + simulator)', { na: `failed: ${error.message}` }));
  } finally {
    await both.close();
  }

  // Split: simulator and pool each in their own process.
  const sim = await ChildRpc.start('./fleet-child.mjs');
  const client = await ChildRpc.start('./fleet-child.mjs');
  try {
    const { ports, names } = await sim.request('startSim', { count: PROXIES, psk: PSK });
    const { online } = await client.request('startPool', { ports, names, psk: PSK });
    if (online !== PROXIES) throw new Error(`only ${online}/${PROXIES} proxies online`);
    await sim.request('startTraffic', { adsPerSecond: ADS_PER_SECOND });
    await new Promise((r) => setTimeout(r, warmupMs));
    const [clientSample, simSample] = await Promise.all([
      client.request('sample', { ms: windowMs }),
      sim.request('sample', { ms: windowMs }),
    ]);
    rows.push(...resultRows('pool process only (client share)', clientSample, true, received(clientSample, windowS)));
    rows.push(
      ...resultRows('simulator process only', simSample, false, `${(simSample.batchesPerSecond / 1000).toFixed(1)} k batches/s sent`),
    );
    await client.request('stop');
    await sim.request('stop');
  } catch (error) {
    rows.push(row('esphome-ble', 'split processes', { na: `failed: ${error.message}` }));
  } finally {
    await client.close();
    await sim.close();
  }
  rows.push(row('esphome-client', 'fleet', { na: 'no pool; one client per device (not compared)' }));
  rows.push(row('@2colors', 'fleet', { na: 'no pool; one client per device (not compared)' }));
  return rows;
}
