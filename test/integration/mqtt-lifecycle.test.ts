import { connect, createServer, Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { MqttBrokerError } from '../../src/errors.js';
import { MqttGateway, type MqttGatewayOptions } from '../../src/mqtt/mqtt-gateway.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { useClosers } from '../helpers/closers.js';
import { DEMO_MAC, profileWithDevices, startTestFleet, waitHeard } from '../helpers/fleet.js';
import { MOSQUITTO_SKIP_REASON, Mosquitto, SKIP_MOSQUITTO } from '../helpers/mosquitto.js';
import { TestClient } from '../helpers/mqtt.js';
import { AT_ONCE_MS } from '../helpers/wait.js';

const STATUS_SERVICE = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00';
const COUNTER_CHAR = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b04';
const closers = useClosers();

/** Ways to let start() get a little further before close() comes. */
const DELAYS: Array<[string, () => Promise<unknown>]> = [
  ['at once', () => Promise.resolve()],
  ['after a tick', () => new Promise((resolve) => setImmediate(resolve))],
  ['after 2 ms', () => new Promise((resolve) => setTimeout(resolve, 2))],
  ['after 20 ms', () => new Promise((resolve) => setTimeout(resolve, 20))],
];

/**
 * A broker of our own making: CONNACK, SUBACK and PUBACK for what it reads, `onPublish` for each PUBLISH (return
 * 'stop' to stop reading from then on, as a broker that hangs), `send` to push a PUBLISH to the client.
 */
async function fakeBroker(onPublish: (topic: string, payload: string) => 'stop' | undefined = () => undefined) {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        let length = 0;
        let at = 1;
        let byte = 0x80;
        for (let shift = 0; byte & 0x80; shift += 7) {
          if (at >= buffer.length) return;
          byte = buffer[at++]!;
          length += (byte & 0x7f) << shift;
        }
        if (buffer.length < at + length) return;
        const type = buffer[0]! >> 4;
        const qos = (buffer[0]! >> 1) & 3;
        const body = buffer.subarray(at, at + length);
        buffer = buffer.subarray(at + length);
        if (type === 1) socket.write(Buffer.from([0x20, 2, 0, 0]));
        else if (type === 12) socket.write(Buffer.from([0xd0, 0]));
        else if (type === 8) {
          let filters = 0;
          for (let p = 2; p < body.length; p += 3 + body.readUInt16BE(p)) filters++;
          socket.write(Buffer.from([0x90, 2 + filters, body[0]!, body[1]!, ...Array(filters).fill(0)]));
        } else if (type === 3) {
          const topicLength = body.readUInt16BE(0);
          let p = 2 + topicLength;
          if (qos > 0) {
            socket.write(Buffer.from([0x40, 2, body[p]!, body[p + 1]!]));
            p += 2;
          }
          if (onPublish(body.subarray(2, 2 + topicLength).toString(), body.subarray(p).toString()) === 'stop') {
            socket.pause();
            return;
          }
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  closers.push(() => {
    for (const s of sockets) s.destroy();
  });
  return {
    url: `mqtt://127.0.0.1:${port}`,
    /** Our sockets to it that are still open. */
    openClientSockets: () =>
      (process as unknown as { _getActiveHandles(): unknown[] })
        ._getActiveHandles()
        .filter((h): h is Socket => h instanceof Socket && h.remotePort === port && !h.destroyed),
    send(topic: string, payload: string): void {
      const t = Buffer.from(topic);
      const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, Buffer.from(payload)]);
      for (const s of sockets) s.write(Buffer.concat([Buffer.from([0x30, (body.length & 0x7f) | 0x80, body.length >> 7]), body]));
    },
  };
}

/** A TCP relay in front of a proxy that can freeze: from then on nothing passes either way (a proxy that hung). */
async function freezable(target: number) {
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((inbound) => {
    const outbound = connect(target, '127.0.0.1');
    const pair: [Socket, Socket] = [inbound, outbound];
    pairs.add(pair);
    for (const s of pair) {
      s.on('error', () => {});
      s.on('close', () => {
        pairs.delete(pair);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    freeze(): void {
      for (const [a, b] of pairs) {
        a.unpipe();
        b.unpipe();
        a.pause();
        b.pause();
      }
    },
    async destroy(): Promise<void> {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A gateway (of an empty pool) whose close() comes `delay` into its start(): the gateway, and how start() ended
 * (undefined when it won the race, else its error).
 */
async function closeDuringStart(
  broker: Pick<MqttGatewayOptions, 'broker' | 'embeddedBroker'>,
  delay: () => Promise<unknown>,
): Promise<{ gateway: MqttGateway; outcome: unknown }> {
  const pool = new ProxyPool([]);
  closers.push(() => pool.close());
  const gateway = new MqttGateway({ pool, name: 'race', statsInterval: 50, ...broker });
  const started = gateway.start({ timeout: 5_000 }).then(
    () => undefined,
    (error: unknown) => error,
  );
  await delay();
  await gateway.close();
  return { gateway, outcome: await started };
}

describe('mqtt gateway life cycle', () => {
  it('mqtt lifecycle - close() during start() (embedded broker) releases the broker, the client and the timers', async () => {
    for (const [, delay] of DELAYS) {
      const { gateway, outcome } = await closeDuringStart({ embeddedBroker: { port: 0 } }, delay);
      // Either start won the race and close undid it, or start was cut short with a typed error.
      if (outcome !== undefined) expect(outcome).toBeInstanceOf(MqttBrokerError);
      expect(await gateway.closed()).toBeUndefined();
      expect(gateway.stats().brokerConnected).toBe(false);
      await expect(gateway.start()).rejects.toBeInstanceOf(MqttBrokerError);
    }
    // The leak guard (test/helpers/setup.ts) fails the test on a listener, socket or timer left open.
  });

  it('mqtt lifecycle - a proxy removed from the pool has its retained topics (and discovery configs) cleared', async () => {
    const fleet = await startTestFleet(2, await profileWithDevices(0));
    closers.push(() => fleet.close());
    const pool = new ProxyPool(fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })));
    closers.push(() => pool.close());
    const gateway = new MqttGateway({ pool, name: 'shrink', embeddedBroker: { port: 0 }, discovery: true, statsInterval: 100 });
    closers.push(() => gateway.close());
    await gateway.start({ timeout: 5_000 });
    await pool.ready({ timeout: 3_000 });
    const watcher = await TestClient.connect(gateway.brokerUrl!, ['home/shrink/proxies/#', 'homeassistant/#']);
    closers.push(() => watcher.close());
    await watcher.next((m) => m.topic === 'home/shrink/proxies/proxy-2/online' && m.text === 'online', 3_000);
    await pool.removeProxy('proxy-2');
    await watcher.after((m) => m.topic === 'home/shrink/proxies/proxy-2/online' && m.text === '', 3_000, 'proxy-2 cleared');
    // A consumer arriving now sees proxy-1 only.
    const late = await TestClient.connect(gateway.brokerUrl!, ['home/shrink/proxies/#', 'homeassistant/#']);
    closers.push(() => late.close());
    await late.next((m) => m.topic === 'home/shrink/proxies/proxy-1/online', 3_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(late.messages.filter((m) => m.retain && m.topic.includes('proxy-2'))).toEqual([]);
    expect(late.messages.some((m) => m.topic === 'homeassistant/sensor/esphome_ble_shrink/proxy-1_free_slots/config')).toBe(true);
  });

  it('mqtt lifecycle - close({ timeout }) is one deadline for all of it, a notification link on a proxy that froze included', async () => {
    const fleet = await startTestFleet(1, await profileWithDevices(0));
    closers.push(() => fleet.close());
    const relay = await freezable(fleet.nodes[0]!.server.address.port);
    const pool = new ProxyPool([{ host: '127.0.0.1', port: relay.port, name: 'proxy-1' }]);
    closers.push(() => pool.close({ timeout: 500 }));
    // Runs before pool.close: the frozen proxy's connection goes, so nothing waits on it after the test.
    closers.push(() => relay.destroy());
    const answers: string[] = [];
    const broker = await fakeBroker((topic, payload) => {
      if (topic === 'home/bounded/BTtoMQTT/C0FFEE000001' && payload.includes('"subscribed"')) answers.push(payload);
      return undefined;
    });
    const gateway = new MqttGateway({ pool, name: 'bounded', broker: broker.url, commands: { allowRead: ['*'] } });
    closers.push(() => gateway.close());
    await gateway.start({ timeout: 5_000 });
    await waitHeard(pool, DEMO_MAC, 1);
    broker.send(
      'home/bounded/commands/MQTTtoBT',
      JSON.stringify({ ble_notify_address: DEMO_MAC, ble_notify_service: STATUS_SERVICE, ble_notify_char: COUNTER_CHAR }),
    );
    await expect.poll(() => answers.some((a) => a.includes('"subscribed":true')), { timeout: 5_000 }).toBe(true);
    // The proxy stops answering: ending the notification and its link would wait out their own timeouts.
    relay.freeze();
    const started = Date.now();
    await gateway.close({ timeout: 500 });
    expect(Date.now() - started).toBeLessThan(500 + AT_ONCE_MS);
    expect(broker.openClientSockets()).toEqual([]);
  });

  it('mqtt lifecycle - close() drops the socket of a broker that stopped reading after it acknowledged our goodbye', async () => {
    const broker = await fakeBroker((topic, payload) => (topic === 'home/hung/LWT' && payload === 'offline' ? 'stop' : undefined));
    const pool = new ProxyPool([]);
    closers.push(() => pool.close());
    const gateway = new MqttGateway({ pool, name: 'hung', broker: broker.url });
    closers.push(() => gateway.close());
    await gateway.start({ timeout: 5_000 });
    expect(broker.openClientSockets()).toHaveLength(1);
    const started = Date.now();
    // The DISCONNECT and our half-close wait behind data the broker never reads: past the deadline the socket goes.
    await gateway.close({ timeout: 300 });
    expect(Date.now() - started).toBeLessThan(300 + AT_ONCE_MS);
    await new Promise((resolve) => setImmediate(resolve));
    expect(broker.openClientSockets()).toEqual([]);
  });

  describe.skipIf(SKIP_MOSQUITTO /* waits for mosquitto (apt-get install mosquitto) */)(
    `with mosquitto${SKIP_MOSQUITTO ? ` (${MOSQUITTO_SKIP_REASON})` : ''}`,
    () => {
      it('mqtt lifecycle - close() during start() (user broker) ends the connection attempt and the timers', async () => {
        const broker = await Mosquitto.start();
        closers.push(() => broker.close());
        for (const [, delay] of DELAYS) {
          const { gateway, outcome } = await closeDuringStart({ broker: broker.url }, delay);
          if (outcome !== undefined) expect(outcome).toBeInstanceOf(MqttBrokerError);
          expect(gateway.stats().brokerConnected).toBe(false);
        }
      });
      it('mqtt lifecycle - on close every proxy is announced offline (retained) before the gateway itself', async () => {
        const broker = await Mosquitto.start();
        closers.push(() => broker.close());
        const fleet = await startTestFleet(1, await profileWithDevices(0));
        closers.push(() => fleet.close());
        const pool = new ProxyPool(fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })));
        closers.push(() => pool.close());
        const gateway = new MqttGateway({ pool, name: 'leaving', broker: broker.url });
        closers.push(() => gateway.close());
        await gateway.start({ timeout: 5_000 });
        await pool.ready({ timeout: 3_000 });
        const watcher = await TestClient.connect(broker.url, ['home/leaving/#']);
        closers.push(() => watcher.close());
        await watcher.next((m) => m.topic === 'home/leaving/proxies/proxy-1/subscription' && m.text === 'subscribed', 3_000);
        const gone = watcher.after((m) => m.topic === 'home/leaving/LWT' && m.text === 'offline', 3_000);
        await gateway.close();
        await gone;
        // Retained: a consumer arriving after the gateway left is not told the proxy is online and subscribed.
        const late = await TestClient.connect(broker.url, ['home/leaving/#']);
        closers.push(() => late.close());
        expect((await late.next((m) => m.topic === 'home/leaving/LWT')).text).toBe('offline');
        expect((await late.next((m) => m.topic === 'home/leaving/proxies/proxy-1/online')).text).toBe('offline');
        expect((await late.next((m) => m.topic === 'home/leaving/proxies/proxy-1/subscription')).text).toBe('none');
        expect((await late.next((m) => m.topic === 'home/leaving/proxies/proxy-1/slots')).json).toEqual({
          free: 0,
          limit: 0,
          allocated: [],
        });
        expect((await late.next((m) => m.topic === 'home/leaving/proxies/proxy-1/stats')).json).toMatchObject({ state: 'stopped' });
        // Offline first, the gateway's own offline last.
        const order = watcher.messages.map((m) => m.topic);
        expect(order.lastIndexOf('home/leaving/proxies/proxy-1/online')).toBeLessThan(order.lastIndexOf('home/leaving/LWT'));
      });
    },
  );
});
