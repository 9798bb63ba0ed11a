// 6. Relay: what the relay adds between a client and a proxy. The simulated proxies live in the sim host, the
// relay in its own child process, the clients here; every hop is a real loopback socket.
import { BATCH_SIZE, DEMO, le, loadDist, PSK, row, size, sleep, stats, until } from './common.mjs';
import { ChildRpc } from './sim-client.mjs';

const ours = await loadDist('index.js');

export const title = '6. relay: GATT latency added, fan-out cost per extra client, memory (relay in its own process)';

/** Reads per alternating block: direct and relayed reads interleave so load drift hits both alike. */
const BLOCK = 50;
/** Clients counts of the fan-out runs: the per-client cost is the slope from 1 to the largest. */
const FAN_OUT_CLIENTS = [1, 2, 5, 10];
const RSS_PROXIES = 20;
const RSS_CLIENTS_PER_PROXY = 10;

async function subscriber(port, psk, onBatch) {
  const api = await ours.ApiConnection.connect({ host: '127.0.0.1', port, ...(psk ? { psk } : {}), clientInfo: 'bench-relay-client' });
  if (onBatch) api.onRaw(93, onBatch);
  api.sendRaw(66, Uint8Array.of(0x08, 0x01)); // SubscribeBluetoothLEAdvertisementsRequest{flags: 1}
  return api;
}

async function gattLink(port) {
  const api = await ours.ApiConnection.connect({ host: '127.0.0.1', port, clientInfo: 'bench-relay-gatt' });
  const proxy = await ours.BluetoothProxy.attach(api);
  const link = await proxy.connect(DEMO.address, { addressType: DEMO.addressType });
  return {
    link,
    async close() {
      await link.disconnect().catch(() => {});
      await api.close();
    },
  };
}

async function latency(host) {
  const count = size(2000, 400);
  const direct = await host.proxy({ advertise: false });
  const behindChild = await host.proxy({ advertise: false });
  const behindLocal = await host.proxy({ advertise: false });
  const child = await ChildRpc.start('./relay-child.mjs');
  const local = new ours.RelayServer({ proxies: [{ host: '127.0.0.1', port: behindLocal.port }] });
  const links = [];
  try {
    const { ports } = await child.request('start', { ports: [behindChild.port] });
    const [localListening] = await local.start();
    const variants = [
      ['direct', await gattLink(direct.port)],
      ['relay process', await gattLink(ports[0])],
      ['relay in this process', await gattLink(localListening.port)],
    ];
    links.push(...variants.map(([, l]) => l));
    const times = new Map(variants.map(([name]) => [name, []]));
    for (let i = 0; i < 200; i++) for (const [, l] of variants) await l.link.read(DEMO.statusHandle);
    for (let done = 0; done < count; done += BLOCK) {
      for (const [name, l] of variants) {
        for (let i = 0; i < BLOCK; i++) {
          const started = performance.now();
          await l.link.read(DEMO.statusHandle);
          times.get(name).push((performance.now() - started) * 1000);
        }
      }
    }
    const d = stats(times.get('direct'));
    return ['relay process', 'relay in this process'].map((name) => {
      const r = stats(times.get(name));
      const own = name === 'relay process';
      return row('esphome-ble', `GATT read, added latency: ${own ? 'relay in its own process' : "relay in the client's process"}`, {
        median: r.median - d.median,
        p90: r.p90 - d.p90,
        unit: 'µs',
        n: count,
        target: le(50),
        note: `relayed median ${r.median.toFixed(0)} µs vs direct ${d.median.toFixed(0)} µs (plaintext both hops)${own ? '; two more one-way legs that each wake another process' : '; same legs, no extra process to wake'}`,
      });
    });
  } finally {
    for (const l of links) await l.close().catch(() => {});
    await local.close();
    await child.close();
    await direct.close();
    await behindChild.close();
    await behindLocal.close();
  }
}

/** Least-squares slope of y over x. */
function slope(points) {
  const mx = points.reduce((n, [x]) => n + x, 0) / points.length;
  const my = points.reduce((n, [, y]) => n + y, 0) / points.length;
  const num = points.reduce((n, [x, y]) => n + (x - mx) * (y - my), 0);
  const den = points.reduce((n, [x]) => n + (x - mx) ** 2, 0);
  return num / den;
}

async function fanOut(host, downstreamPsk) {
  const runBatches = size(625, 200);
  const warmups = size(3, 1);
  const repeats = size(8, 3);
  const proxy = await host.proxy({ advertise: false });
  const relay = await ChildRpc.start('./relay-child.mjs');
  const clients = [];
  const perAd = new Map();
  try {
    const { ports } = await relay.request('start', { ports: [proxy.port], ...(downstreamPsk ? { downstreamPsk } : {}) });
    let received = 0;
    const onBatch = () => {
      received++;
    };
    for (const n of FAN_OUT_CLIENTS) {
      while (clients.length < n) clients.push(await subscriber(ports[0], downstreamPsk, onBatch));
      // Wait until the relay counts every client as subscribed.
      for (let [subscribed] = await relay.request('clients'); subscribed !== n; [subscribed] = await relay.request('clients'))
        await sleep(5);
      const samples = [];
      for (let r = -warmups; r < repeats; r++) {
        const { ads } = await proxy.prepare(runBatches);
        received = 0;
        await relay.request('cpuStart');
        await proxy.go();
        // Until every client has every batch: the relay's writes are done, not just queued.
        await until(() => received >= runBatches * n, 'every client to receive every batch', 30_000);
        const { cpuMicros } = await relay.request('cpuEnd');
        if (r >= 0) samples.push(cpuMicros / ads);
      }
      perAd.set(n, stats(samples).median);
    }
    const mode = downstreamPsk ? 'Noise downstream' : 'plaintext downstream';
    return [
      row('esphome-ble', `fan-out, ${mode}: cost per ad per extra client`, {
        median: slope([...perAd]),
        unit: 'µs/ad',
        target: downstreamPsk ? undefined : le(0.1),
        note: `slope of relay CPU per ad over ${FAN_OUT_CLIENTS.map((n) => `${n}: ${perAd.get(n).toFixed(3)}`).join(', ')} clients; batches of ${BATCH_SIZE}${downstreamPsk ? '; each client has its own cipher, so every batch is encrypted once per client' : '; one frame per batch for all clients, one write per client per upstream read'}`,
      }),
    ];
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    await relay.close();
    await proxy.close();
  }
}

async function memory(host) {
  const proxies = [];
  const relay = await ChildRpc.start('./relay-child.mjs', ['--expose-gc']);
  const clients = [];
  try {
    for (let i = 0; i < RSS_PROXIES; i++) proxies.push(await host.proxy({ psk: PSK }));
    const { ports } = await relay.request('start', { ports: proxies.map((p) => p.port), psk: PSK });
    for (const port of ports) for (let c = 0; c < RSS_CLIENTS_PER_PROXY; c++) clients.push(await subscriber(port, undefined));
    await new Promise((r) => setTimeout(r, size(2000, 500)));
    const m = await relay.request('memory');
    return [
      row('esphome-ble', `RSS: ${RSS_CLIENTS_PER_PROXY} clients × ${RSS_PROXIES} Noise proxies`, {
        median: m.rssMB,
        unit: 'MB',
        note: `relay process; ${m.clients} downstream sessions, V8 heap ${m.heapUsedMB.toFixed(1)} MB used, external ${m.externalMB.toFixed(1)} MB; proxies advertising (default profile)`,
      }),
    ];
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    await relay.close();
    for (const p of proxies) await p.close();
  }
}

export async function run(host) {
  const rows = [];
  for (const [name, scenario] of [
    ['latency', () => latency(host)],
    ['fan-out plaintext', () => fanOut(host, undefined)],
    ['fan-out Noise', () => fanOut(host, PSK)],
    ['memory', () => memory(host)],
  ]) {
    try {
      rows.push(...(await scenario()));
    } catch (error) {
      rows.push(row('esphome-ble', name, { na: `failed: ${error.message}` }));
    }
  }
  return rows;
}
