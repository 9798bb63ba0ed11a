// Child process of the fleet benchmark. It can host the simulated fleet, the ProxyPool, or both (then it is the
// "one process" case); the parent drives it over IPC and it measures its own CPU and RSS.
import { BATCH_SIZE, buildBatches, encodeRawBatch, guardNetwork, loadDist } from './common.mjs';
import { serveRpc } from './sim-client.mjs';

guardNetwork();

const { ProxyPool, SimulatedFleet } = await loadDist('internal.js');

/** Sender tick: each node sends on one tick in TICKS_PER_FLUSH, spreading the fleet's writes over the 100 ms flush period. */
const TICK_MS = 10;
const TICKS_PER_FLUSH = 10;
/** Distinct pre-encoded batches the nodes cycle through. */
const DISTINCT_BATCHES = 64;
/** Devices around the fleet: each proxy hears every one of them over time. */
const DEVICES = 200;

let fleet;
let pool;
let trafficTimer;
let adsReceived = 0;
let batchesSent = 0;

const handlers = {
  async startSim({ count, psk }) {
    fleet = await SimulatedFleet.start(Array.from({ length: count }, () => ({ advertise: false, ...(psk ? { psk } : {}) })));
    return { ports: fleet.nodes.map((n) => n.server.address.port), names: fleet.nodes.map((n) => n.server.name) };
  },

  /** Every node sends a raw batch each 100 ms (the firmware's flush period) sized for `adsPerSecond`. */
  async startTraffic({ adsPerSecond }) {
    const flushesPerSecond = 1000 / (TICK_MS * TICKS_PER_FLUSH);
    const perBatch = Math.max(1, Math.round(adsPerSecond / flushesPerSecond));
    if (perBatch > BATCH_SIZE) throw new Error(`${perBatch} reports per batch exceeds the firmware's ${BATCH_SIZE}`);
    const payloads = buildBatches(DISTINCT_BATCHES, { perBatch, devices: DEVICES }).map(encodeRawBatch);
    const started = performance.now();
    let tick = 0;
    // Catch up on ticks a busy event loop delayed, so the offered load stays at the nominal rate.
    trafficTimer = setInterval(() => {
      const due = Math.floor((performance.now() - started) / TICK_MS);
      const nodes = fleet.nodes;
      for (; tick <= due; tick++) {
        for (let i = tick % TICKS_PER_FLUSH; i < nodes.length; i += TICKS_PER_FLUSH) {
          const session = nodes[i].bluetooth.subscriber;
          if (session === undefined) continue;
          session.sendRaw(93, payloads[(i + tick) % DISTINCT_BATCHES]);
          batchesSent++;
        }
      }
    }, TICK_MS);
    return { perBatch };
  },

  async startPool({ ports, names, psk }) {
    pool = new ProxyPool(
      ports.map((port, i) => ({ host: '127.0.0.1', port, name: names[i], ...(psk ? { psk } : {}) })),
      { connectTimeout: 20_000 },
    );
    pool.onAdvertisement(() => {
      adsReceived++;
    });
    const snapshots = await pool.ready({ timeout: 30_000 });
    return { online: snapshots.filter((s) => s.online).length };
  },

  /** CPU (% of one core, all threads) and RSS over a window of `ms`. */
  async sample({ ms }) {
    const ads0 = adsReceived;
    const batches0 = batchesSent;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let rssMax = process.memoryUsage.rss();
    const sampler = setInterval(() => {
      rssMax = Math.max(rssMax, process.memoryUsage.rss());
    }, 250);
    await new Promise((resolve) => setTimeout(resolve, ms));
    clearInterval(sampler);
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const memory = process.memoryUsage();
    rssMax = Math.max(rssMax, memory.rss);
    return {
      cpuPercent: ((cpu.user + cpu.system) / 1000 / wall) * 100,
      rssMaxMB: rssMax / 2 ** 20,
      rssEndMB: memory.rss / 2 ** 20,
      heapUsedMB: memory.heapUsed / 2 ** 20,
      heapTotalMB: memory.heapTotal / 2 ** 20,
      externalMB: memory.external / 2 ** 20,
      adsPerSecond: ((adsReceived - ads0) * 1000) / wall,
      batchesPerSecond: ((batchesSent - batches0) * 1000) / wall,
      onlineProxies: pool ? pool.proxies().filter((p) => p.online).length : undefined,
    };
  },

  async stop() {
    clearInterval(trafficTimer);
    await pool?.close();
    await fleet?.close();
    return null;
  },
};

serveRpc(handlers);
