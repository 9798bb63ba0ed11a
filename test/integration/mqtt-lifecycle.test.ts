import { afterEach, describe, expect, it } from 'vitest';
import { MqttBrokerError } from '../../src/errors.js';
import { MqttGateway } from '../../src/mqtt/mqtt-gateway.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { MOSQUITTO_SKIP_REASON, Mosquitto, SKIP_MOSQUITTO } from '../helpers/mosquitto.js';

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
  });
});
