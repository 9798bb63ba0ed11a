import { afterEach, describe, expect, it } from 'vitest';
import { MqttBrokerError } from '../../src/errors.js';
import { MqttGateway } from '../../src/mqtt/mqtt-gateway.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { profileWithDevices, startTestFleet } from '../helpers/fleet.js';
import { MOSQUITTO_SKIP_REASON, Mosquitto, SKIP_MOSQUITTO } from '../helpers/mosquitto.js';
import { TestClient } from '../helpers/mqtt.js';

const closers: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** Ways to let start() get a little further before close() comes. */
const DELAYS: Array<[string, () => Promise<unknown>]> = [
  ['at once', () => Promise.resolve()],
  ['after a tick', () => new Promise((resolve) => setImmediate(resolve))],
  ['after 2 ms', () => new Promise((resolve) => setTimeout(resolve, 2))],
  ['after 20 ms', () => new Promise((resolve) => setTimeout(resolve, 20))],
];

describe('mqtt gateway life cycle', () => {
  it('mqtt lifecycle - close() during start() (embedded broker) releases the broker, the client and the timers', async () => {
    for (const [, delay] of DELAYS) {
      const pool = new ProxyPool([]);
      closers.push(() => pool.close());
      const gateway = new MqttGateway({ pool, name: 'race', embeddedBroker: { port: 0 }, statsInterval: 50 });
      const started = gateway.start({ timeout: 5_000 }).then(
        () => undefined,
        (error: unknown) => error,
      );
      await delay();
      await gateway.close();
      const outcome = await started;
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

  describe.skipIf(SKIP_MOSQUITTO)(`with mosquitto${SKIP_MOSQUITTO ? ` (${MOSQUITTO_SKIP_REASON})` : ''}`, () => {
    it('mqtt lifecycle - close() during start() (user broker) ends the connection attempt and the timers', async () => {
      const broker = await Mosquitto.start();
      closers.push(() => broker.close());
      for (const [, delay] of DELAYS) {
        const pool = new ProxyPool([]);
        closers.push(() => pool.close());
        const gateway = new MqttGateway({ pool, name: 'race', broker: broker.url, statsInterval: 50 });
        const started = gateway.start({ timeout: 5_000 }).then(
          () => undefined,
          (error: unknown) => error,
        );
        await delay();
        await gateway.close();
        const outcome = await started;
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
      expect((await late.next((m) => m.topic === 'home/leaving/proxies/proxy-1/slots')).json).toEqual({ free: 0, limit: 0, allocated: [] });
      expect((await late.next((m) => m.topic === 'home/leaving/proxies/proxy-1/stats')).json).toMatchObject({ state: 'stopped' });
      // Offline first, the gateway's own offline last.
      const order = watcher.messages.map((m) => m.topic);
      expect(order.lastIndexOf('home/leaving/proxies/proxy-1/online')).toBeLessThan(order.lastIndexOf('home/leaving/LWT'));
    });
  });
});
