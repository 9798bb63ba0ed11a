// Child process running a RelayServer for the relay benchmarks, so the relay owns its core and event loop as on
// a real host between the proxies and their clients. Driven over IPC by ChildRpc in sim-client.mjs.
import { guardNetwork, loadDist, sleep } from './common.mjs';
import { serveRpc } from './sim-client.mjs';

guardNetwork();

const { RelayServer } = await loadDist('index.js');

let relay;
let cpuMark;

const handlers = {
  async start({ ports, psk, downstreamPsk }) {
    relay = new RelayServer({
      proxies: ports.map((port) => ({ host: '127.0.0.1', port, ...(psk ? { psk } : {}) })),
      // The memory run puts ten clients on each listener (the default allows eight).
      maxClients: 16,
      ...(downstreamPsk ? { downstreamPsk } : {}),
    });
    const listening = await relay.start({ timeout: 30_000 });
    return { ports: listening.map((l) => l.port) };
  },

  /** Starts a CPU measurement of this process. */
  async cpuStart() {
    cpuMark = process.cpuUsage();
    return null;
  },

  /** CPU (µs) this process used since cpuStart, and the advertisements its first upstream received. */
  async cpuEnd() {
    const used = process.cpuUsage(cpuMark);
    return { cpuMicros: used.user + used.system, advertisements: relay.proxies[0].advertisements };
  },

  async memory() {
    globalThis.gc?.();
    await sleep(50);
    const m = process.memoryUsage();
    const clients = relay.snapshot().proxies.reduce((n, p) => n + p.clients.length, 0);
    return { rssMB: m.rss / 2 ** 20, heapUsedMB: m.heapUsed / 2 ** 20, externalMB: m.external / 2 ** 20, clients };
  },

  async clients() {
    return relay.snapshot().proxies.map((p) => p.clients.filter((c) => c.subscribed).length);
  },

  async stop() {
    await relay?.close();
    relay = undefined;
    return null;
  },
};

serveRpc(handlers, () => relay?.close());
