import { createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { MqttBrokerError } from '../../src/errors.js';
import { MqttGateway } from '../../src/mqtt/mqtt-gateway.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { useClosers } from '../helpers/closers.js';
import { DEMO_MAC, profileWithDevices, startTestFleet } from '../helpers/fleet.js';
import { Mosquitto, requireTools } from '../helpers/mosquitto.js';
import { TestClient } from '../helpers/mqtt.js';

/** The credentials test hashes its password file with mosquitto_passwd. */
const TOOLS = requireTools(['mosquitto', 'mosquitto_passwd']);
const closers = useClosers();

async function fleetAndPool(count = 1): Promise<{ pool: ProxyPool; fleet: Awaited<ReturnType<typeof startTestFleet>> }> {
  const fleet = await startTestFleet(count, await profileWithDevices(0));
  closers.push(() => fleet.close());
  const pool = new ProxyPool(
    fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })),
    { backoff: { initialDelay: 20, jitter: 0 } },
  );
  closers.push(() => pool.close());
  return { pool, fleet };
}

describe.skipIf(TOOLS.skip /* waits for the tools TOOLS names (apt-get install mosquitto mosquitto-clients openssl) */)(
  `mqtt gateway resilience with mosquitto${TOOLS.label}`,
  () => {
    it('mqtt resilience - survives a broker restart: advertisements dropped and counted meanwhile, LWT and state republished', async () => {
      const broker = await Mosquitto.start();
      closers.push(() => broker.close());
      const { pool } = await fleetAndPool();
      const gateway = new MqttGateway({
        pool,
        name: 'restart',
        broker: { url: broker.url, backoff: { initialDelay: 50, maxDelay: 200, jitter: 0 } },
      });
      closers.push(() => gateway.close());
      const events: string[] = [];
      const watching = (async () => {
        for await (const e of gateway.status()) events.push(e.type);
      })();
      await gateway.start({ timeout: 5_000 });
      await expect.poll(() => gateway.stats().advertisementsPublished, { timeout: 3_000 }).toBeGreaterThan(0);

      await broker.stop();
      await expect.poll(() => gateway.stats().brokerConnected, { timeout: 3_000 }).toBe(false);
      const dropped = gateway.stats().droppedBrokerAway;
      await expect.poll(() => gateway.stats().droppedBrokerAway, { timeout: 3_000 }).toBeGreaterThan(dropped);
      await broker.restart();
      await expect.poll(() => gateway.stats().brokerConnected, { timeout: 5_000 }).toBe(true);

      // Mosquitto kept nothing (persistence off): availability and fleet state are there again because we republished them.
      const client = await TestClient.connect(broker.url, ['home/restart/LWT', 'home/restart/proxies/+/online', 'home/restart/BTtoMQTT/#']);
      closers.push(() => client.close());
      expect((await client.next((m) => m.topic === 'home/restart/LWT')).text).toBe('online');
      expect((await client.next((m) => m.topic === 'home/restart/proxies/proxy-1/online')).text).toBe('online');
      await client.next((m) => m.topic === 'home/restart/BTtoMQTT/C0FFEE000001', 3_000, 'advertisements after the restart');
      expect(gateway.stats().brokerDisconnects).toBeGreaterThanOrEqual(1);
      await gateway.close();
      await watching;
      expect(events).toContain('brokerDisconnected');
      expect(events.filter((e) => e === 'brokerConnected').length).toBeGreaterThanOrEqual(2);
    });

    it('mqtt resilience - two gateways with different proxies on one broker: each publishes under its own name and carries out its own commands', async () => {
      const broker = await Mosquitto.start();
      closers.push(() => broker.close());
      const demo = await profileWithDevices(0);
      // proxy-1 hears only the real advertisers of the default profile; proxy-2 also hears the demo device.
      const fleet = await startTestFleet(2, demo, [
        { profile: { ...demo, peripherals: demo.peripherals.filter((p) => p.mac !== DEMO_MAC) } },
      ]);
      closers.push(() => fleet.close());
      const gateways: MqttGateway[] = [];
      for (const [i, node] of fleet.nodes.entries()) {
        const pool = new ProxyPool([{ host: '127.0.0.1', port: node.server.address.port, name: node.server.name }]);
        closers.push(() => pool.close());
        const gateway = new MqttGateway({ pool, name: `host-${i + 1}`, broker: broker.url, commands: { allowRead: ['*'] } });
        closers.push(() => gateway.close());
        await gateway.start({ timeout: 5_000 });
        gateways.push(gateway);
      }
      const client = await TestClient.connect(broker.url, ['home/+/BTtoMQTT/#', 'home/+/proxies/+/online']);
      closers.push(() => client.close());
      await client.next((m) => m.topic === 'home/host-1/proxies/proxy-1/online' && m.text === 'online', 3_000);
      await client.next((m) => m.topic === 'home/host-2/proxies/proxy-2/online' && m.text === 'online', 3_000);
      await client.next((m) => m.topic === 'home/host-2/BTtoMQTT/C0FFEE000001', 3_000);
      expect(client.messages.some((m) => m.topic.startsWith('home/host-1/') && m.json?.proxy === 'proxy-2')).toBe(false);

      const read = { ble_read_address: DEMO_MAC, ble_read_service: '1800', ble_read_char: '2a00', ttl: 1 };
      await client.publish('home/host-2/commands/MQTTtoBT', JSON.stringify(read));
      const answer = await client.after((m) => m.json?.read !== undefined || m.json?.success === false, 10_000);
      expect(answer.topic).toBe('home/host-2/BTtoMQTT/C0FFEE000001');
      expect(answer.json).toMatchObject({ read: 'esphome-ble-demo', success: true, proxy: 'proxy-2' });
      expect(gateways[0]!.stats().commandsSucceeded + gateways[0]!.stats().commandsFailed).toBe(0);
      // Addressed to host-1, whose proxy does not hear the device: host-1 answers, host-2 does nothing.
      await client.publish('home/host-1/commands/MQTTtoBT', JSON.stringify(read));
      const missing = await client.after((m) => m.json?.success === false, 10_000);
      expect(missing.topic).toBe('home/host-1/BTtoMQTT/C0FFEE000001');
      expect(missing.json).toMatchObject({ error: 'ESPAPI_ERR_DEVICE_NOT_FOUND' });
      expect(gateways[1]!.stats().commandsSucceeded + gateways[1]!.stats().commandsFailed).toBe(1);
    });

    it('mqtt resilience - a broker that refuses our credentials fails start with ESPAPI_ERR_MQTT_AUTH and never shows the password', async () => {
      const broker = await Mosquitto.start({ users: { gateway: 's3cret-pass' } });
      closers.push(() => broker.close());
      const { pool } = await fleetAndPool();
      const wrong = new MqttGateway({ pool, broker: { url: broker.url, username: 'gateway', password: 'wrong-password' } });
      closers.push(() => wrong.close());
      const error = await wrong.start({ timeout: 5_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MqttBrokerError);
      expect((error as MqttBrokerError).code).toBe('ESPAPI_ERR_MQTT_AUTH');
      expect(String((error as Error).message)).not.toContain('wrong-password');
      expect(await wrong.closed()).toBe(error);

      const right = new MqttGateway({ pool, name: 'authed', broker: { url: broker.url, username: 'gateway', password: 's3cret-pass' } });
      closers.push(() => right.close());
      await right.start({ timeout: 5_000 });
      const client = await TestClient.connect(broker.url, ['home/authed/LWT'], { username: 'gateway', password: 's3cret-pass' });
      closers.push(() => client.close());
      expect((await client.next((m) => m.topic === 'home/authed/LWT')).text).toBe('online');
    });
  },
);

describe('mqtt gateway and a slow broker', () => {
  it('mqtt resilience - a broker that stops reading never stalls the pool: advertisements are dropped and counted, memory stays bounded', async () => {
    // A broker that accepts, says CONNACK, then reads nothing more.
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.once('data', () => {
        socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]));
        socket.pause();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    closers.push(() => {
      for (const s of sockets) s.destroy();
    });
    const port = (server.address() as { port: number }).port;
    const { pool, fleet } = await fleetAndPool();
    const maxBufferedBytes = 64 * 1024;
    const gateway = new MqttGateway({ pool, broker: { url: `mqtt://127.0.0.1:${port}`, maxBufferedBytes, keepalive: 0 } });
    closers.push(() => gateway.close({ timeout: 500 }));
    await gateway.start({ timeout: 5_000 });
    await pool.ready({ timeout: 3_000 });
    let heard = 0;
    const off = pool.onAdvertisement(() => heard++);
    closers.push(off);
    const data = Buffer.from('0201061aff4c000215a495bb10c5b14b44b5121370f02d74de004403f8c5', 'hex');
    const batch = {
      advertisements: Array.from({ length: 16 }, (_, i) => ({ address: 0x0a0000000000 + i, rssi: -60, addressType: 0, data })),
    };
    let sent = 0;
    const deadline = Date.now() + 8_000;
    // Until the gateway has had to drop (the kernel's socket buffers hold a few MB first), bounded in time.
    while (gateway.stats().droppedSlowBroker < 1_000 && Date.now() < deadline) {
      for (let i = 0; i < 64; i++) fleet.nodes[0]!.bluetooth.sendRawBatch(batch);
      sent += 64 * 16;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const stats = gateway.stats();
    expect(stats.droppedSlowBroker).toBeGreaterThanOrEqual(1_000);
    // What waits in our socket stays at the bound (plus the messages of one advertisement written before the check).
    expect(stats.brokerBufferedBytes).toBeLessThan(maxBufferedBytes + 4_096);
    // The pool got every advertisement the proxy sent: the broker never held it up.
    await expect.poll(() => heard, { timeout: 3_000 }).toBeGreaterThanOrEqual(sent);
  });
});
