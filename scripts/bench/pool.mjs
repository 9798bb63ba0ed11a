// 4. ProxyPool: failover when the preferred proxy answers CONN_CANCEL (0x100), and reconnect time with and without
// the GATT cache. The simulated proxies run in this process (ms-scale latencies; the simulated radio connect time
// dominates). Each case runs with the demo peripheral's profile delay (30 ms per connect attempt) and with 0 ms,
// which leaves only protocol and library time.
import { DEMO, le, loadDist, row, size, stats, until } from './common.mjs';

const { ProxyPool, SimulatedFleet } = await loadDist('internal.js');

export const title = '4. ProxyPool failover and cached reconnect (simulated proxies in-process)';

/** ESP_GATT_CONN_CONN_CANCEL: what a proxy out of slots answers (spec §6.14). */
const CONN_CANCEL = 0x100;
/** The demo peripheral's advertisement: flags + its 128-bit service UUID. */
const DEMO_AD = Uint8Array.from(Buffer.from('0201061107004b3a2f1e0d3b9c8a4e7d5be0c2f1a3', 'hex'));
const POOL_OPTIONS = { backoff: { initialDelay: 50, maxDelay: 200 }, connectTimeout: 3000 };

/** Makes every node report the demo device right now (instead of waiting for its 250 ms advertising interval). */
function announce(fleet, rssis) {
  fleet.nodes.forEach((node, i) => {
    node.bluetooth.sendRawBatch({
      advertisements: [{ address: DEMO.address, rssi: rssis[i], addressType: DEMO.addressType, data: DEMO_AD }],
    });
  });
}

function specs(fleet) {
  return fleet.nodes.map((n, i) => ({ host: '127.0.0.1', port: n.server.address.port, name: `proxy-${i + 1}` }));
}

async function freshPool(fleet, rssis) {
  const pool = new ProxyPool(specs(fleet), POOL_OPTIONS);
  await pool.ready({ timeout: 3000 });
  announce(fleet, rssis);
  await until(() => pool.explain(DEMO.mac).length === fleet.nodes.length, 'every proxy to hear the demo device');
  return pool;
}

async function failover(radioMs, iterations) {
  const fleet = await SimulatedFleet.start([{ advertise: false }, { advertise: false }]);
  const [a, b] = fleet.nodes;
  a.bluetooth.setBehaviour(DEMO.address, { connectError: CONN_CANCEL, ...(radioMs === 0 ? { connectDelayMs: 0 } : {}) });
  if (radioMs === 0) b.bluetooth.setBehaviour(DEMO.address, { connectDelayMs: 0 });
  const totals = [];
  const afterError = [];
  try {
    for (let i = 0; i < iterations; i++) {
      // A fresh pool each time: a pool remembers A's failure and would go straight to B.
      const pool = await freshPool(fleet, [-45, -65]);
      try {
        const started = performance.now();
        const connection = await pool.establishConnection(DEMO.mac);
        const total = performance.now() - started;
        const [first, second] = connection.timeline;
        if (connection.proxy !== 'proxy-2' || first?.proxy !== 'proxy-1' || first.reason !== CONN_CANCEL || second === undefined) {
          throw new Error(`unexpected path ${JSON.stringify(connection.timeline)}`);
        }
        totals.push(total);
        // timeline[].ms is the attempt's own duration (whole ms): what follows A's failure is the failover.
        afterError.push(total - first.ms);
        await connection.disconnect();
      } finally {
        await pool.close();
      }
    }
  } finally {
    await fleet.close();
  }
  return { totals, afterError };
}

async function reconnects(radioMs, iterations) {
  const fleet = await SimulatedFleet.start([{ advertise: false }]);
  const node = fleet.nodes[0];
  if (radioMs === 0) node.bluetooth.setBehaviour(DEMO.address, { connectDelayMs: 0 });
  const pool = await freshPool(fleet, [-50]);
  const cached = [];
  const uncached = [];
  try {
    await (await pool.establishConnection(DEMO.mac)).disconnect(); // fills the GATT cache
    for (let i = 0; i < iterations; i++) {
      for (const useServicesCache of [true, false]) {
        const before = node.bluetooth.servicesRequests;
        const started = performance.now();
        const connection = await pool.establishConnection(DEMO.mac, { useServicesCache });
        const elapsed = performance.now() - started;
        if (connection.fromCache !== useServicesCache) throw new Error(`fromCache=${connection.fromCache}, expected ${useServicesCache}`);
        if (useServicesCache && node.bluetooth.servicesRequests !== before) throw new Error('a cached connect asked for services');
        (useServicesCache ? cached : uncached).push(elapsed);
        await connection.disconnect();
      }
    }
  } finally {
    await pool.close();
    await fleet.close();
  }
  return { cached, uncached };
}

export async function run() {
  const iterations = size(15, 5);
  const rows = [];
  for (const radioMs of [30, 0]) {
    const radio = `${radioMs} ms radio`;
    try {
      const { totals, afterError } = await failover(radioMs, iterations);
      rows.push(
        row('esphome-ble', `failover: A error → connected via B (${radio})`, {
          ...stats(afterError),
          unit: 'ms',
          target: le(50),
          note: 'bleak-retry-connector backs off ≥ 4 s before trying again',
        }),
      );
      rows.push(row('esphome-ble', `failover: whole establishConnection (${radio})`, { ...stats(totals), unit: 'ms' }));
    } catch (error) {
      rows.push(row('esphome-ble', `failover (${radio})`, { na: `failed: ${error.message}` }));
    }
    try {
      const { cached, uncached } = await reconnects(radioMs, iterations);
      rows.push(row('esphome-ble', `reconnect with GATT cache (${radio})`, { ...stats(cached), unit: 'ms', note: 'no GetServices sent' }));
      rows.push(
        row('esphome-ble', `reconnect, useServicesCache: false (${radio})`, {
          ...stats(uncached),
          unit: 'ms',
          note: 'simulated discovery is instant; on air it takes 100s of ms',
        }),
      );
    } catch (error) {
      rows.push(row('esphome-ble', `reconnect (${radio})`, { na: `failed: ${error.message}` }));
    }
  }
  rows.push(row('esphome-client', 'pool failover / cached reconnect', { na: 'no connector pool (single-device client)' }));
  rows.push(row('@2colors', 'pool failover / cached reconnect', { na: 'no connector pool (single-device client)' }));
  return rows;
}
