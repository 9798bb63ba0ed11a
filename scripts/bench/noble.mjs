// 6. noble bindings: discover events per second through createNobleBindings (and through noble's Noble on top)
// next to our own advertisement rail (pool.onAdvertisement), same pre-built raw batches from a simulated proxy in a
// child process, one ProxyPool. With allowDuplicates every report of the device's best proxy is a discover event;
// the first report of each device is held back (as noble's HCI layer does), so the warm-up runs see every device first.
import { createRequire } from 'node:module';
import { loadDist, row, size, stats } from './common.mjs';

const require = createRequire(import.meta.url);
const { ProxyPool } = await loadDist('index.js');
const { createNobleBindings } = await loadDist('noble/index.js');
const Noble = require('@stoprocent/noble/lib/noble');

export const title = '6. noble bindings: discover events vs our advertisement rail (raw batches of 16 × 31 B, one proxy)';

/** A consumer stuck this long without reaching the count has lost events. */
const DELIVERY_TIMEOUT_MS = 30_000;

const VARIANTS = [
  {
    how: 'pool.onAdvertisement (our rail)',
    attach: (pool, onEvent) => ({ off: pool.onAdvertisement(onEvent), close: async () => {} }),
  },
  {
    how: "bindings.on('discover')",
    attach: async (pool, onEvent) => {
      const bindings = createNobleBindings(pool);
      bindings.on('discover', onEvent);
      bindings.start();
      bindings.startScanning([], true);
      return { close: () => bindings.close() };
    },
    what: 'AD bytes folded as noble’s HCI GAP layer does, best-proxy choice',
  },
  {
    how: "new Noble(bindings).on('discover')",
    attach: async (pool, onEvent) => {
      const bindings = createNobleBindings(pool);
      const noble = new Noble(bindings);
      noble.on('discover', onEvent);
      await noble.waitForPoweredOnAsync(5000);
      await noble.startScanningAsync([], true);
      return { close: () => bindings.close() };
    },
    what: 'plus noble’s own per-event work (peripheral lookup, advertisement merge)',
  },
];

export async function run(host) {
  const runBatches = 625;
  const warmups = size(8, 3);
  const repeats = size(15, 5);
  const rows = [];
  const medians = [];
  for (const variant of VARIANTS) {
    const proxy = await host.proxy({ advertise: false });
    const pool = new ProxyPool([`127.0.0.1:${proxy.port}`], { backoff: { initialDelay: 50 } });
    let count = 0;
    let goal = 0;
    let finished;
    let onDone = () => {};
    const onEvent = () => {
      if (++count === goal) {
        finished = performance.now();
        onDone();
      }
    };
    let session;
    try {
      await pool.ready({ timeout: 5000 });
      session = await variant.attach(pool, onEvent);
      const perEvent = [];
      for (let r = -warmups; r < repeats; r++) {
        const { ads } = await proxy.prepare(runBatches);
        count = 0;
        // Warm-up runs hold back each device's first report; timed runs must deliver every one.
        goal = r < 0 ? Number.POSITIVE_INFINITY : ads;
        finished = undefined;
        const done = new Promise((resolve) => {
          onDone = resolve;
        });
        let timer;
        const timeout = new Promise((resolve) => {
          timer = setTimeout(resolve, r < 0 ? 1_000 : DELIVERY_TIMEOUT_MS);
        });
        const sent = proxy.go();
        await Promise.race([done, timeout]);
        clearTimeout(timer);
        const { firstWriteAt } = await sent;
        if (r < 0) continue;
        if (finished === undefined) throw new Error(`only ${count}/${goal} events delivered`);
        perEvent.push(((performance.timeOrigin + finished - firstWriteAt) * 1000) / ads);
      }
      const s = stats(perEvent);
      medians.push(s.median);
      const notes = [`${(1 / s.median).toFixed(2)} M events/s`];
      if (medians.length > 1) notes.push(`${(s.median / medians[0]).toFixed(2)}× the rail's time per report`);
      if (variant.what) notes.push(variant.what);
      rows.push(row('esphome-ble', variant.how, { ...s, n: undefined, unit: 'µs/event', note: notes.join('; ') }));
    } catch (error) {
      rows.push(row('esphome-ble', variant.how, { na: `failed: ${error.message}` }));
    } finally {
      await session?.close().catch(() => {});
      session?.off?.();
      await pool.close();
      await proxy.close();
    }
  }
  return rows;
}
