// 2. Advertisement ingest: pre-built raw batches (id 93, 16 reports of 31 bytes) written as fast as the socket
// drains by a simulated proxy in a child process; timed from the first write to the last ad delivered to the
// consumer as the library's advertisement object.
import { BATCH_SIZE, le, PSK, row, size, stats, wanted } from './common.mjs';
import { esphomeClientAdapter, oursAdapter, twoColorsAdapter } from './peers.mjs';

export const title = '2. advertisement ingest (raw batches of 16 × 31 B), µs per advertisement, server in a child process';

const VARIANTS = [
  {
    library: 'esphome-ble',
    how: 'onAdvertisement',
    subscribe: (t, cb) => oursAdapter.subscribe(t, cb),
    target: { plaintext: 0.33, noise: 0.6 },
    what: 'Advertisement: AD structures walked, numeric fields set; strings, maps and raw view built on first read',
  },
  {
    library: 'esphome-ble',
    how: 'onAdvertisement, every field read',
    subscribe: (t, cb) => oursAdapter.subscribe(t, (ad) => cb(readEveryField(ad))),
    what: 'name, UUIDs, service and manufacturer data, raw view and mac all built',
  },
  { library: 'esphome-ble', how: 'advertisements() for-await', subscribe: (t, cb, n) => oursAdapter.subscribeIterator(t, cb, n) },
  {
    library: 'esphome-client',
    how: "on('bluetoothAdvertisement')",
    subscribe: (t, cb) => esphomeClientAdapter.subscribe(t, cb),
    reference: { plaintext: '~1.0', noise: '~1.4' },
    what: 'raw record (AD bytes not parsed)',
  },
  {
    library: 'esphome-client',
    how: 'advertisements() for-await',
    subscribe: (t, cb, n) => esphomeClientAdapter.subscribeIterator(t, cb, n),
  },
  {
    library: '@2colors',
    how: "on('ble')",
    subscribe: (t, cb) => twoColorsAdapter.subscribe(t, cb),
    reference: { plaintext: '~3.5', noise: '~4.1' },
    what: 'parsed object (AD structures)',
  },
];

const ads0 = (batches) => batches * BATCH_SIZE;

/** Touches every field of one of our advertisements so that all of them get built; returns it for the counter. */
function readEveryField(ad) {
  let n = ad.mac.length + ad.raw.length + ad.serviceUuids.length + (ad.localName?.length ?? 0);
  for (const bytes of ad.serviceData.values()) n += bytes.length;
  for (const bytes of ad.manufacturerData.values()) n += bytes.length;
  if (n < 0) throw new Error('unreachable');
  return ad;
}

/** A consumer stuck this long without reaching the count has lost advertisements. */
const DELIVERY_TIMEOUT_MS = 30_000;

export async function run(host) {
  // Runs of 10k reports (~470 KB) fit the loopback socket buffers, so the consumer drains them at its own pace
  // instead of waiting for the simulator process to be scheduled and refill. The optimizing compiler and the
  // young-generation sizing settle only after ~100k reports: warm up generously.
  const runBatches = 625;
  const warmups = size(12, 4);
  const repeats = size(20, 6);
  const rows = [];
  for (const mode of ['plaintext', 'noise']) {
    const psk = mode === 'noise' ? PSK : undefined;
    for (const variant of VARIANTS.filter((v) => wanted(v.library))) {
      const scenario = `${mode}, ${variant.how}`;
      const proxy = await host.proxy({ ...(psk ? { psk } : {}), advertise: false });
      let count = 0;
      let goal = 0;
      let sink = 0;
      let finished;
      let finishedCpu;
      let onDone = () => {};
      const onAd = (ad) => {
        sink += ad.rssi;
        if (++count === goal) {
          finished = performance.now();
          finishedCpu = process.cpuUsage();
          onDone();
        }
      };
      let session;
      try {
        session = await variant.subscribe({ port: proxy.port, psk, name: proxy.name }, onAd, runBatches * BATCH_SIZE);
        const perAd = [];
        const cpuPerAd = [];
        let totalAds = 0;
        let cpuTotal = 0;
        for (let r = -warmups; r < repeats; r++) {
          const { ads } = await proxy.prepare(runBatches);
          count = 0;
          goal = ads;
          finished = undefined;
          const done = new Promise((resolve) => {
            onDone = resolve;
          });
          let timer;
          const timeout = new Promise((resolve) => {
            timer = setTimeout(resolve, DELIVERY_TIMEOUT_MS);
          });
          const startedCpu = process.cpuUsage();
          const sent = proxy.go();
          await Promise.race([done, timeout]);
          clearTimeout(timer);
          const { firstWriteAt } = await sent;
          if (finished === undefined) throw new Error(`only ${count}/${goal} advertisements delivered`);
          if (r >= 0) {
            // From the simulator's first write to the last delivery, on the shared wall clock.
            perAd.push(((performance.timeOrigin + finished - firstWriteAt) * 1000) / ads);
            const cpuMicros = finishedCpu.user - startedCpu.user + finishedCpu.system - startedCpu.system;
            cpuPerAd.push(cpuMicros / ads);
            cpuTotal += cpuMicros;
            totalAds += ads;
          }
        }
        const s = stats(perAd);
        const target = variant.target ? le(variant.target[mode]) : undefined;
        // CPU per ad over all timed runs together (one run's reading is too coarse).
        const cpu = cpuTotal / totalAds;
        const notes = [
          `${(1 / s.median).toFixed(2)} M ads/s`,
          `client CPU ${cpu.toFixed(2)} µs/ad`,
          `${totalAds} ads timed after ${warmups * ads0(runBatches)} warm-up`,
        ];
        if (variant.what) notes.push(variant.what);
        if (variant.reference) notes.push(`earlier measurement ${variant.reference[mode]} µs/ad`);
        rows.push(
          row(variant.library, scenario, {
            ...s,
            n: undefined,
            unit: 'µs/ad',
            target,
            note: notes.join('; '),
            extra: { sink, cpuMicrosPerAd: cpuPerAd, wallMicrosPerAd: perAd },
          }),
        );
      } catch (error) {
        rows.push(row(variant.library, scenario, { na: `failed: ${error.message}` }));
      } finally {
        await session?.close().catch(() => {});
        await proxy.close();
      }
    }
  }
  return rows;
}
