// Child process that hosts simulated proxies for the benchmarks, so the measured client owns its core and
// event loop (as with a real device on the network). Driven over IPC by SimHost in sim-client.mjs.
import { guardNetwork, loadDist } from './common.mjs';
import { serveRpc } from './sim-client.mjs';

guardNetwork();

const { startSimulatedProxy } = await loadDist('internal.js');
const { BATCH_SIZE, buildBatches, encodeRawBatch, sleep, until } = await import('./common.mjs');

/** Frames per socket write during a blast: ~40 KB, so the client sees full reads as when it lags a real proxy. */
const FRAMES_PER_WRITE = 64;
/** Bytes a blast may queue in the socket before it waits for 'drain'. */
const MAX_QUEUED_BYTES = 1 << 20;
/** Distinct batches cycled through by a blast. */
const DISTINCT_BATCHES = 256;

const nodes = new Map();
let payloads;

function batchPayloads() {
  payloads ??= buildBatches(DISTINCT_BATCHES).map(encodeRawBatch);
  return payloads;
}

const handlers = {
  async start({ id, options }) {
    // A blast queues up to MAX_QUEUED_BYTES behind the session's back, and the connect runs open sessions faster
    // than their closes land: the benchmark's device must neither close a session for its backlog nor refuse one.
    const node = await startSimulatedProxy({ maxConnections: 1_000, backlog: { closeAt: 64 * MAX_QUEUED_BYTES }, ...options });
    nodes.set(id, { node, blast: undefined });
    return { port: node.server.address.port, name: node.server.name };
  },

  /**
   * Encodes (and for Noise encrypts) `batches` raw advertisement frames for the current subscriber, ahead of time.
   * Anything else the session sends meanwhile is held back until the blast is written, keeping Noise nonces in order.
   */
  async prepare({ id, batches }) {
    const entry = nodes.get(id);
    const bluetooth = entry.node.bluetooth;
    await until(() => bluetooth.subscriber, 'the advertisement subscriber');
    await sleep(30); // let the subscribe replies (scanner state, slots) go out first
    const session = bluetooth.subscriber;
    const list = batchPayloads();
    const frames = [];
    session.writeRaw = (bytes) => frames.push(bytes);
    for (let i = 0; i < batches; i++) session.sendRaw(93, list[i % list.length]);
    const deferred = [];
    session.writeRaw = (bytes) => deferred.push(bytes);
    const chunks = [];
    for (let i = 0; i < frames.length; i += FRAMES_PER_WRITE) chunks.push(Buffer.concat(frames.slice(i, i + FRAMES_PER_WRITE)));
    entry.blast = { session, chunks, deferred };
    return { ads: batches * BATCH_SIZE, bytes: chunks.reduce((n, c) => n + c.length, 0) };
  },

  /** Writes the prepared frames as fast as the socket drains, then releases whatever was held back. */
  async go({ id }) {
    const entry = nodes.get(id);
    const { session, chunks, deferred } = entry.blast;
    entry.blast = undefined;
    const socket = session.socket;
    // Wall-clock time (ms since the epoch, sub-ms precision) of the first write, comparable across processes.
    const firstWriteAt = performance.timeOrigin + performance.now();
    const started = performance.now();
    const cpu = process.cpuUsage();
    for (const chunk of chunks) {
      if (socket.destroyed) break;
      socket.write(chunk);
      // Backpressure with a deep queue: libuv keeps writing from it without a JS round trip per chunk.
      if (socket.writableLength > MAX_QUEUED_BYTES) await new Promise((resolve) => socket.once('drain', resolve));
    }
    delete session.writeRaw;
    for (const bytes of deferred) session.writeRaw(bytes);
    const used = process.cpuUsage(cpu);
    return { firstWriteAt, writeMs: performance.now() - started, cpuMs: (used.user + used.system) / 1000 };
  },

  /**
   * Connects to the proxy `connects` times from inside this process, so that its server code is compiled and
   * optimized before the measured clients arrive: a device answers at the same speed from its first connection
   * on, and every library then meets an equally warm server.
   */
  async warm({ id, connects, psk }) {
    const { ApiConnection } = await loadDist('index.js');
    const { node } = nodes.get(id);
    const port = node.server.address.port;
    for (let i = 0; i < connects; i++) {
      const api = await ApiConnection.connect({ host: '127.0.0.1', port, ...(psk ? { psk } : {}), clientInfo: 'bench-warm-up' });
      await api.close();
    }
    return null;
  },

  /**
   * Starts a proxy whose only peripheral has the Matter GATT service of fixtures/profiles/matter.json with no
   * device behind it: every C1 write is indicated back on C2 (a BTP segment and its answer, no matter.js CPU).
   */
  async startBtpEcho({ id }) {
    const { loadProfile, resolveProfilePath } = await loadDist('fixture-server/profile.js');
    const { MATTER_UUIDS } = await loadDist('fixture-server/matter/matter-peers.js');
    const profile = await loadProfile(resolveProfilePath('matter'));
    const { matter: _device, ...peripheral } = profile.peripherals.find((p) => p.matter !== undefined);
    const node = await startSimulatedProxy({ name: `bench-${id}`, profile: { ...profile, peripherals: [peripheral] } });
    const echo = node.bluetooth.peripherals[0];
    echo.program(MATTER_UUIDS.c1, {
      onWrite: (data) => {
        // Sent from the hook, the indication would wait the simulator's modelled reaction time (5 ms, the next
        // connection event); queued past the hook it follows the write's reply at once: the proxy path alone.
        queueMicrotask(() => echo.indicate(MATTER_UUIDS.c2, data).catch(() => {}));
        return undefined;
      },
    });
    nodes.set(id, { node, blast: undefined });
    return { port: node.server.address.port, name: node.server.name, mac: echo.mac };
  },

  async call({ id, target, method, args }) {
    const { node } = nodes.get(id);
    const object = target === 'server' ? node.server : node.bluetooth;
    const result = await object[method](...(args ?? []));
    return result === undefined ? null : JSON.parse(JSON.stringify(result));
  },

  async close({ id }) {
    const entry = nodes.get(id);
    nodes.delete(id);
    await entry?.node.server.close();
    return null;
  },
};

serveRpc(handlers, () => Promise.allSettled([...nodes.values()].map((e) => e.node.server.close())));
