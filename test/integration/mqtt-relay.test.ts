import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { InsecureListenerError } from '../../src/errors.js';
import { startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.js';
import { MqttGateway } from '../../src/mqtt/mqtt-gateway.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import { DEMO_MAC, profileWithDevices, startTestFleet } from '../helpers/fleet.js';
import { TestClient } from '../helpers/mqtt.js';

const closers: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe('mqtt gateway beside Home Assistant (relay sessions) and the embedded broker', () => {
  it("mqtt relay - the gateway runs on the relay's upstream sessions: one subscription upstream, a relay client and MQTT both served", async () => {
    const node = await startSimulatedProxy({ name: 'shared-proxy', profile: await profileWithDevices(0) });
    closers.push(() => node.server.close());
    const relay = new RelayServer({
      proxies: [{ host: '127.0.0.1', port: node.server.address.port }],
      backoff: { initialDelay: 20, jitter: 0 },
    });
    closers.push(() => relay.close());
    const [listening] = await relay.start({ timeout: 3_000 });
    const pool = new ProxyPool();
    closers.push(() => pool.close());
    for (const proxy of relay.proxies) pool.addSession(proxy);
    const id = relay.proxies[0]!.id;
    const gateway = new MqttGateway({ pool, name: 'beside-ha', embeddedBroker: { port: 0 }, commands: { allowRead: [DEMO_MAC] } });
    closers.push(() => gateway.close());
    await gateway.start({ timeout: 3_000 });

    // Home Assistant's place: a native API client of the relay, which still gets the advertisements.
    const api = await ApiConnection.connect({ host: '127.0.0.1', port: listening!.port, timeout: 3_000 });
    closers.push(() => api.destroy());
    const ha = await BluetoothProxy.attach(api, { timeout: 3_000 });
    const haHeard = new Promise<void>((resolve) => {
      const off = ha.onAdvertisement((ad) => {
        if (ad.mac === DEMO_MAC) {
          off();
          resolve();
        }
      });
    });

    const client = await TestClient.connect(gateway.brokerUrl!, ['home/beside-ha/#']);
    closers.push(() => client.close());
    const ad = await client.next((m) => m.topic === 'home/beside-ha/BTtoMQTT/C0FFEE000001', 3_000);
    expect(ad.json).toMatchObject({ id: DEMO_MAC, proxy: id });
    await haHeard;
    await client.publish(
      'home/beside-ha/commands/MQTTtoBT',
      JSON.stringify({ ble_read_address: DEMO_MAC, ble_read_service: '1800', ble_read_char: '2a00' }),
    );
    const read = await client.after((m) => m.json?.read !== undefined, 5_000, 'the read answer');
    expect(read.json).toMatchObject({ read: 'esphome-ble-demo', success: true, proxy: id });
    // One API session on the proxy: the relay's. The gateway added no second subscription.
    expect(node.server.sessions.size).toBe(1);
    expect((await client.next((m) => m.topic === `home/beside-ha/proxies/${id}/online`)).text).toBe('online');
  });

  it('mqtt relay - Home Assistant discovery (opt-in) describes each proxy: online, free slots, ads/s', async () => {
    const fleet = await startTestFleet(1, await profileWithDevices(0));
    closers.push(() => fleet.close());
    const pool = new ProxyPool(fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })));
    closers.push(() => pool.close());
    const gateway = new MqttGateway({ pool, name: 'disc', embeddedBroker: { port: 0 }, discovery: true });
    closers.push(() => gateway.close());
    await gateway.start({ timeout: 3_000 });
    await pool.ready({ timeout: 3_000 });
    const client = await TestClient.connect(gateway.brokerUrl!, ['homeassistant/#']);
    closers.push(() => client.close());
    const online = await client.next((m) => m.topic === 'homeassistant/binary_sensor/esphome_ble_disc/proxy-1_online/config', 3_000);
    expect(online.retain).toBe(true);
    expect(online.json).toMatchObject({
      state_topic: 'home/disc/proxies/proxy-1/online',
      payload_on: 'online',
      device_class: 'connectivity',
      availability_topic: 'home/disc/LWT',
      unique_id: 'esphome-ble_disc_proxy-1_online',
    });
    const slots = await client.next((m) => m.topic === 'homeassistant/sensor/esphome_ble_disc/proxy-1_free_slots/config', 3_000);
    expect(slots.json).toMatchObject({ state_topic: 'home/disc/proxies/proxy-1/slots', value_template: '{{ value_json.free }}' });
    const rate = await client.next((m) => m.topic === 'homeassistant/sensor/esphome_ble_disc/proxy-1_ads_per_second/config', 3_000);
    expect(rate.json).toMatchObject({ state_topic: 'home/disc/proxies/proxy-1/stats', unit_of_measurement: 'ads/s' });
  });

  it('mqtt relay - commands over the rate limit are answered ESPAPI_ERR_RATE_LIMITED; undecoded and change-only publishing', async () => {
    const fleet = await startTestFleet(1, await profileWithDevices(0));
    closers.push(() => fleet.close());
    const pool = new ProxyPool(fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })));
    closers.push(() => pool.close());
    const gateway = new MqttGateway({
      pool,
      name: 'limits',
      embeddedBroker: { port: 0 },
      commands: { allowRead: ['*'], ratePerSecond: 0.5, burst: 2 },
      advertisements: { undecoded: true, changesOnly: true },
    });
    closers.push(() => gateway.close());
    await gateway.start({ timeout: 3_000 });
    const client = await TestClient.connect(gateway.brokerUrl!, ['home/limits/BTtoMQTT/#']);
    closers.push(() => client.close());
    // Theengs Gateway's input: the same JSON on BTtoMQTT/undecoded, with the id inside.
    const undecoded = await client.next((m) => m.topic === 'home/limits/BTtoMQTT/undecoded' && m.json?.id === DEMO_MAC, 3_000);
    expect(undecoded.json).toMatchObject({ mac_type: 1, proxy: 'proxy-1' });
    const read = JSON.stringify({ ble_read_address: DEMO_MAC, ble_read_service: '1800', ble_read_char: '2a00' });
    for (let i = 0; i < 3; i++) await client.publish('home/limits/commands/MQTTtoBT', read);
    const limited = await client.next((m) => m.json?.error === 'ESPAPI_ERR_RATE_LIMITED', 5_000);
    expect(limited.topic).toBe('home/limits/BTtoMQTT/C0FFEE000001');
    await expect.poll(() => gateway.stats().commandsSucceeded, { timeout: 5_000 }).toBe(2);
    // Change-only: the Tilt hydrometer repeats one payload every second, so its repeats are filtered.
    await expect.poll(() => gateway.stats().advertisementsFiltered, { timeout: 4_000 }).toBeGreaterThan(0);
    expect(client.messages.filter((m) => m.topic === 'home/limits/BTtoMQTT/04A3169B095A').length).toBeLessThanOrEqual(2);
  });

  it('mqtt relay - room presence is not change-suppressed, and its room is the node name of a proxy given by address', async () => {
    const fleet = await startTestFleet(1, await profileWithDevices(0));
    closers.push(() => fleet.close());
    // Given as an address, the proxy's id is 127.0.0.1:<port>; its node calls itself proxy-1.
    const pool = new ProxyPool([`127.0.0.1:${fleet.nodes[0]!.server.address.port}`]);
    closers.push(() => pool.close());
    const gateway = new MqttGateway({
      pool,
      name: 'rooms',
      embeddedBroker: { port: 0 },
      advertisements: { changesOnly: true, presence: true },
    });
    closers.push(() => gateway.close());
    await gateway.start({ timeout: 3_000 });
    const client = await TestClient.connect(gateway.brokerUrl!, ['home/rooms/BTtoMQTT/04A3169B095A', 'home/presence/#']);
    closers.push(() => client.close());
    // The Tilt repeats one payload every second: its device topic is quiet after the first, its distance is not.
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    const tilt = client.messages.filter((m) => m.json?.id === '04:A3:16:9B:09:5A');
    const presence = tilt.filter((m) => m.topic.startsWith('home/presence/'));
    expect(presence.length).toBeGreaterThanOrEqual(3);
    expect(tilt.filter((m) => m.topic === 'home/rooms/BTtoMQTT/04A3169B095A').length).toBeLessThanOrEqual(1);
    expect(new Set(presence.map((m) => m.topic))).toEqual(new Set(['home/presence/proxy-1']));
    expect(presence.every((m) => m.json?.proxy === 'proxy-1' && typeof m.json.distance === 'number')).toBe(true);
  });

  it('mqtt relay - the embedded broker: loopback by default, credentials required elsewhere, oversized packets cut at the header', async () => {
    await expect(EmbeddedBroker.start({ host: '0.0.0.0', port: 0 })).rejects.toBeInstanceOf(InsecureListenerError);
    const broker = await EmbeddedBroker.start({ host: '0.0.0.0', port: 0, username: 'u', password: 'pass-word', maxPacketBytes: 1024 });
    closers.push(() => broker.close());
    expect(broker.url).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
    await expect(TestClient.connect(broker.url, [], { username: 'u', password: 'wrong' })).rejects.toThrow();
    const ok = await TestClient.connect(broker.url, ['t/#'], { username: 'u', password: 'pass-word' });
    closers.push(() => ok.close());
    // A PUBLISH header declaring 100 MB: the connection is closed before any body is buffered.
    const socket = connect(broker.address.port, '127.0.0.1');
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    socket.write(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x30]));
    await closed;
    await ok.publish('t/x', 'still fine');
    expect((await ok.next((m) => m.topic === 't/x')).text).toBe('still fine');
  });
});
