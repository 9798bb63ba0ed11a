// 8. MQTT gateway: advertisements per second it publishes and its CPU per advertisement, next to the pool alone, and
// the pool's ingest while the broker has stopped reading. One simulated proxy in this process sends prepared raw
// batches to the pool's session; the broker is a real Mosquitto in its own process when installed (else the embedded
// aedes broker, in this process, which then counts in the CPU). CPU is this process's user+system time per
// advertisement, so the gateway's own cost is the difference between the two rows.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BATCH_SIZE, buildBatches, encodeRawBatch, loadDist, row, size, sleep, until } from './common.mjs';

const { ProxyPool, SimulatedFleet } = await loadDist('internal.js');
const { MqttGateway } = await loadDist('mqtt/index.js');

export const title = '8. MQTT gateway: advertisements published per second and CPU per advertisement, next to the pool alone';

/** Batches written per turn of the event loop: enough to keep the pool busy, few enough to let its socket drain. */
const BATCHES_PER_TURN = 32;

function mosquittoPath() {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin']) {
    try {
      accessSync(join(dir, 'mosquitto'), constants.X_OK);
      return join(dir, 'mosquitto');
    } catch {}
  }
  return undefined;
}

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startMosquitto(path) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'esphome-ble-bench-mosquitto-'));
  const config = join(dir, 'mosquitto.conf');
  writeFileSync(config, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n`);
  const child = spawn(path, ['-c', config], { stdio: 'ignore' });
  const accepts = () =>
    new Promise((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  const deadline = Date.now() + 5000;
  while (!(await accepts())) {
    if (Date.now() > deadline) throw new Error('mosquitto did not start');
    await sleep(25);
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    async close() {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A broker that says CONNACK and then reads nothing: the slow-broker case. */
async function startStalledBroker() {
  const sockets = new Set();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => {
      socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]));
      socket.pause();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `mqtt://127.0.0.1:${server.address().port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Sends `batches` raw batches to the pool's session and measures until the pool has them all. */
async function blast(fleet, pool, frames, batches) {
  const session = fleet.nodes[0].bluetooth.subscriber;
  let heard = 0;
  const off = pool.onAdvertisement(() => heard++);
  const expected = batches * BATCH_SIZE;
  const cpu = process.cpuUsage();
  const started = performance.now();
  try {
    for (let sent = 0; sent < batches; ) {
      for (let i = 0; i < BATCHES_PER_TURN && sent < batches; i++, sent++) session.sendRaw(93, frames[sent % frames.length]);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await until(() => heard >= expected, 'the pool to receive every advertisement', 30_000, 1);
  } finally {
    off();
  }
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  return { adsPerSecond: expected / seconds, cpuUsPerAd: (used.user + used.system) / expected, ads: expected };
}

/** Batches sent per round while filling a stalled broker's socket: about 1 MB of MQTT messages. */
const FILL_BATCHES = 200;

async function scenario(brokerUrl, batches, frames, withGateway, gatewayOptions = {}, untilDropping = false) {
  const fleet = await SimulatedFleet.start([{ advertise: false }]);
  const pool = new ProxyPool([{ host: '127.0.0.1', port: fleet.nodes[0].server.address.port, name: 'proxy-1' }]);
  let gateway;
  try {
    await pool.ready({ timeout: 3000 });
    await until(() => fleet.nodes[0].bluetooth.subscriber, 'the subscriber');
    if (withGateway) {
      gateway = new MqttGateway({
        pool,
        name: 'bench',
        ...(brokerUrl ? { broker: brokerUrl } : { embeddedBroker: { port: 0 } }),
        ...gatewayOptions,
      });
      await gateway.start({ timeout: 5000 });
    }
    await blast(fleet, pool, frames, Math.min(batches, 200)); // warm-up
    if (untilDropping) {
      // The kernel's socket buffers take a few MB before our bound is reached: measure only once the gateway drops,
      // or a short (BENCH_QUICK) run would time a broker that is merely slow to read.
      for (let round = 0; gateway.stats().droppedSlowBroker === 0; round++) {
        if (round >= 100) throw new Error('the stalled broker never made the gateway drop');
        await blast(fleet, pool, frames, FILL_BATCHES);
      }
    }
    const before = gateway?.stats();
    const result = await blast(fleet, pool, frames, batches);
    const after = gateway?.stats();
    if (after !== undefined && before !== undefined) {
      result.published = after.advertisementsPublished - before.advertisementsPublished;
      result.dropped = after.droppedSlowBroker - before.droppedSlowBroker + (after.droppedBrokerAway - before.droppedBrokerAway);
      result.buffered = after.brokerBufferedBytes;
    }
    return result;
  } finally {
    await gateway?.close({ timeout: 500 });
    await pool.close();
    await fleet.close();
  }
}

export async function run() {
  const batches = size(4000, 600);
  const frames = buildBatches(256).map(encodeRawBatch);
  const path = mosquittoPath();
  const broker = path === undefined ? undefined : await startMosquitto(path);
  const where = broker === undefined ? 'embedded aedes broker, in-process' : 'Mosquitto, own process';
  const rows = [];
  try {
    const alone = await scenario(undefined, batches, frames, false);
    rows.push(
      row('esphome-ble', 'pool alone: advertisement ingest', {
        median: alone.cpuUsPerAd,
        unit: 'µs/ad',
        note: `${Math.round(alone.adsPerSecond)} ads/s`,
      }),
    );
    const mqtt = await scenario(broker?.url, batches, frames, true);
    rows.push(
      row('esphome-ble', `pool + MQTT gateway (${where})`, {
        median: mqtt.cpuUsPerAd,
        unit: 'µs/ad',
        note: `${Math.round(mqtt.adsPerSecond)} ads/s in, ${Math.round((mqtt.published / mqtt.ads) * mqtt.adsPerSecond)} published/s, ${mqtt.dropped} dropped`,
      }),
    );
    rows.push(
      row('esphome-ble', "MQTT gateway's own CPU per advertisement (difference)", {
        median: mqtt.cpuUsPerAd - alone.cpuUsPerAd,
        unit: 'µs/ad',
      }),
    );
    const stalled = await startStalledBroker();
    try {
      const slow = await scenario(stalled.url, batches, frames, true, {}, true);
      rows.push(
        row('esphome-ble', 'pool + gateway, broker stopped reading (measured while dropping)', {
          median: slow.cpuUsPerAd,
          unit: 'µs/ad',
          note: `${Math.round(slow.adsPerSecond)} ads/s still reach the pool; ${slow.dropped} of ${slow.ads} dropped and counted, ${Math.round(slow.buffered / 1024)} KiB queued (bound 1024 KiB)`,
        }),
      );
    } finally {
      await stalled.close();
    }
  } finally {
    await broker?.close();
  }
  rows.push(row('esphome-client', 'MQTT gateway', { na: 'no MQTT gateway' }));
  rows.push(row('@2colors', 'MQTT gateway', { na: 'no MQTT gateway' }));
  await sleep(10);
  return rows;
}
