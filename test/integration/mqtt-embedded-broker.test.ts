import { connect } from 'node:net';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.js';
import { MqttGateway } from '../../src/mqtt/mqtt-gateway.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { profileWithDevices, startTestFleet } from '../helpers/fleet.js';
import { TestClient } from '../helpers/mqtt.js';

const closers: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function embedded(options: Parameters<typeof EmbeddedBroker.start>[0] = {}): Promise<EmbeddedBroker> {
  const broker = await EmbeddedBroker.start({ port: 0, ...options });
  closers.push(() => broker.close());
  return broker;
}

async function client(url: string, topics: string[] = [], options: mqtt.IClientOptions = {}): Promise<TestClient> {
  const c = await TestClient.connect(url, topics, options);
  closers.push(() => c.close());
  return c;
}

describe('embedded broker limits', () => {
  it('embedded broker - persistent sessions are refused: nothing is queued for a client that is away', async () => {
    const broker = await embedded();
    const connect = (clean: boolean) =>
      mqtt.connectAsync(broker.url, { clientId: 'victim', clean, reconnectPeriod: 0, connectTimeout: 3_000 }).then((c) => {
        closers.push(() => c.endAsync(true));
        return c;
      });
    // A persistent session would keep its subscriptions and store every QoS 1 message for as long as it is away.
    expect(await connect(false).catch((error: { code?: number }) => error)).toMatchObject({ code: 5 });

    const victim = await connect(true);
    expect((await victim.subscribeAsync('#', { qos: 1 })).map((g) => g.qos)).toEqual([1]);
    await victim.endAsync();
    const publisher = await client(broker.url);
    const payload = Buffer.alloc(16 * 1024, 0x61);
    for (let i = 0; i < 20; i++) await publisher.client.publishAsync(`junk/${i}`, payload, { qos: 1 });
    // Back with the same id: no session, nothing was held for it.
    const back = await connect(true);
    let delivered = 0;
    back.on('message', () => delivered++);
    await back.subscribeAsync('nothing/else', { qos: 1 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(delivered).toBe(0);
    expect(await connect(false).catch((error: { code?: number }) => error)).toMatchObject({ code: 5 });
  });
  it('embedded broker - maxSubscriptionsPerClient counts the filters held now: unsubscribed ones give their place back, one too many is refused in the SUBACK', async () => {
    const broker = await embedded({ maxSubscriptionsPerClient: 3 });
    const c = await client(broker.url);
    let closed = false;
    c.client.on('close', () => {
      closed = true;
    });
    // Many more subscribe/unsubscribe rounds than the limit: never more than one held at a time.
    for (let i = 0; i < 300; i++) {
      expect((await c.client.subscribeAsync('a/b', { qos: 0 })).map((g) => g.qos)).toEqual([0]);
      await c.client.unsubscribeAsync('a/b');
    }
    const granted = await c.client.subscribeAsync(['t/1', 't/2', 't/3'], { qos: 0 });
    expect(granted.map((g) => g.qos)).toEqual([0, 0, 0]);
    // The fourth distinct filter is refused (0x80); the connection and the three others stay.
    const refused = await c.client.subscribeAsync('t/4', { qos: 0 }).catch((error: { packet?: { granted?: number[] } }) => error);
    expect(refused).toMatchObject({ packet: { granted: [128] } });
    // A filter already held is not a new one.
    expect((await c.client.subscribeAsync('t/2', { qos: 0 })).map((g) => g.qos)).toEqual([0]);
    await c.client.publishAsync('t/3', 'still here');
    expect((await c.next((m) => m.topic === 't/3')).text).toBe('still here');
    await c.client.unsubscribeAsync('t/1');
    expect((await c.client.subscribeAsync('t/4', { qos: 0 })).map((g) => g.qos)).toEqual([0]);
    expect(closed).toBe(false);
  });
  it('embedded broker - a connection that sends no CONNECT is closed after connectTimeout and gives its maxClients place back', async () => {
    const broker = await embedded({ connectTimeout: 300, maxClients: 1 });
    const socket = connect(broker.address.port, '127.0.0.1');
    socket.on('error', () => {});
    closers.push(() => socket.destroy());
    const started = Date.now();
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // aedes' own default would have held it 30 s.
    expect(Date.now() - started).toBeLessThan(3_000);
    // The only place is free again.
    const c = await client(broker.url, ['x']);
    await c.publish('x', 'in');
    expect((await c.next((m) => m.topic === 'x')).text).toBe('in');
  });
  it('embedded broker - clients filling maxRetained and maxClients cannot push the gateway off its own broker', async () => {
    const fleet = await startTestFleet(1, await profileWithDevices(0));
    let fleetClosed = false;
    closers.push(() => (fleetClosed ? undefined : fleet.close()));
    const pool = new ProxyPool(fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })));
    closers.push(() => pool.close());
    const gateway = new MqttGateway({ pool, name: 'crowded', embeddedBroker: { port: 0, maxRetained: 3, maxClients: 2 } });
    closers.push(() => gateway.close());
    await gateway.start({ timeout: 5_000 });
    await pool.ready({ timeout: 3_000 });
    const url = gateway.brokerUrl!;

    // A client fills the retained store; one more retained publish closes its connection.
    const filler = mqtt.connect(url, { reconnectPeriod: 0 });
    closers.push(() => filler.endAsync(true));
    await new Promise<void>((resolve) => filler.once('connect', () => resolve()));
    const fillerClosed = new Promise<void>((resolve) => filler.once('close', () => resolve()));
    for (let i = 0; i < 3; i++) await filler.publishAsync(`junk/${i}`, 'x', { retain: true, qos: 1 });
    filler.publish('junk/3', 'x', { retain: true, qos: 0 });
    await fillerClosed;

    // Two TCP clients fill maxClients; the gateway is connected in process and holds no place.
    const watcher = await client(url, ['home/crowded/#', 'junk/#']);
    const second = await client(url);
    await expect(TestClient.connect(url)).rejects.toThrow();
    expect(second.client.connected).toBe(true);

    // With the store full the gateway still retains its state: its proxy going away is announced and kept.
    await fleet.close();
    fleetClosed = true;
    const offline = await watcher.after((m) => m.topic === 'home/crowded/proxies/proxy-1/online' && m.text === 'offline', 5_000);
    expect(offline.text).toBe('offline');
    await watcher.close();
    const late = await client(url, ['home/crowded/LWT', 'home/crowded/proxies/+/online', 'junk/#']);
    expect((await late.next((m) => m.topic === 'home/crowded/LWT')).text).toBe('online');
    expect(await late.next((m) => m.topic === 'home/crowded/proxies/proxy-1/online')).toMatchObject({ text: 'offline', retain: true });
    await late.next((m) => m.topic === 'junk/2');
    expect(late.messages.some((m) => m.topic === 'junk/3')).toBe(false);
    expect(gateway.stats()).toMatchObject({ brokerConnected: true, brokerDisconnects: 0 });
  });
});
