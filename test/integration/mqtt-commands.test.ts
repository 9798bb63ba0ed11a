import { afterEach, describe, expect, it } from 'vitest';
import { FAILURE_TABLE } from '../../src/failure-table.js';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.js';
import { MqttGateway, type MqttGatewayOptions } from '../../src/mqtt/mqtt-gateway.js';
import type { MqttGatewayStatus } from '../../src/mqtt/mqtt-status.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { DEMO_MAC, profileWithDevices, startTestFleet, waitHeard } from '../helpers/fleet.js';
import { TestClient } from '../helpers/mqtt.js';

const CLONE_MAC = 'C0:FF:EE:00:01:00';
const STATUS_SERVICE = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00';
const COUNTER_CHAR = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b04';
const closers: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function gatewayOn(clones: number, options: Partial<MqttGatewayOptions> = {}) {
  const fleet = await startTestFleet(1, await profileWithDevices(clones));
  closers.push(() => fleet.close());
  const pool = new ProxyPool(fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })));
  closers.push(() => pool.close());
  const gateway = new MqttGateway({ pool, name: 'cmd', embeddedBroker: { port: 0 }, commands: { allowRead: ['*'] }, ...options });
  closers.push(() => gateway.close({ timeout: 1_000 }));
  await gateway.start({ timeout: 5_000 });
  const client = await TestClient.connect(gateway.brokerUrl!, ['home/cmd/BTtoMQTT/#']);
  closers.push(() => client.close());
  return { fleet, pool, gateway, client };
}

const read = (mac: string) => JSON.stringify({ ble_read_address: mac, ble_read_service: '1800', ble_read_char: '2a00' });

describe('mqtt commands', () => {
  it('mqtt commands - a device no proxy hears is answered within the 2 s grace and holds no place: a heard device is read meanwhile', async () => {
    const { pool, client } = await gatewayOn(0);
    await waitHeard(pool, DEMO_MAC, 1);
    const sent = Date.now();
    for (let i = 1; i <= 5; i++) await client.publish('home/cmd/commands/MQTTtoBT', read(`11:22:33:44:55:6${i}`));
    await client.publish('home/cmd/commands/MQTTtoBT', read(DEMO_MAC));
    const answer = await client.next((m) => m.json?.read !== undefined, 10_000, 'the read of the heard device');
    // Before, the unknown devices held 4 of 4 places for 8 s each (the pool waits for them on each attempt).
    expect(Date.now() - sent).toBeLessThan(3_000);
    expect(answer.json).toMatchObject({ id: DEMO_MAC, read: 'esphome-ble-demo', success: true });
    for (let i = 1; i <= 5; i++) {
      const unknown = await client.next((m) => m.topic === `home/cmd/BTtoMQTT/11223344556${i}`, 5_000);
      expect(unknown.json).toMatchObject({ success: false, error: 'ESPAPI_ERR_DEVICE_NOT_FOUND' });
    }
    // Each waited the pool's 2 s for an advertisement (start-up grace), not 4 attempts of it.
    expect(Date.now() - sent).toBeLessThan(5_000);
  });

  it('mqtt commands - a command cut short by the gateway closing is answered ESPAPI_ERR_GATEWAY_UNAVAILABLE, which is worth sending again', async () => {
    const { fleet, pool, gateway, client } = await gatewayOn(0);
    await waitHeard(pool, DEMO_MAC, 1);
    fleet.nodes[0]!.bluetooth.setBehaviour(0xc0ffee000001, { connectDelayMs: 3_000 });
    await client.publish('home/cmd/commands/MQTTtoBT', read(DEMO_MAC));
    await expect.poll(() => fleet.nodes[0]!.bluetooth.connectRequests, { timeout: 3_000 }).toBeGreaterThan(0);
    const closing = gateway.close({ timeout: 3_000 });
    const answer = await client.next(
      (m) => m.topic === 'home/cmd/BTtoMQTT/C0FFEE000001' && m.json?.success !== undefined,
      5_000,
      'the answer of the cut command',
    );
    await closing;
    expect(answer.json).toMatchObject({ id: DEMO_MAC, success: false, error: 'ESPAPI_ERR_GATEWAY_UNAVAILABLE' });
    expect(FAILURE_TABLE.ESPAPI_ERR_GATEWAY_UNAVAILABLE.permanent).toBe(false);
  });

  it('mqtt commands - commands waiting for one slow device take no place in flight from other devices', async () => {
    const { fleet, pool, client } = await gatewayOn(1, { commands: { allowRead: ['*'], maxInFlight: 2 } });
    await waitHeard(pool, DEMO_MAC, 1);
    await waitHeard(pool, CLONE_MAC, 1);
    // The demo device takes 3 s to connect; three commands for it queue up behind each other.
    fleet.nodes[0]!.bluetooth.setBehaviour(0xc0ffee000001, { connectDelayMs: 3_000 });
    for (let i = 0; i < 3; i++) await client.publish('home/cmd/commands/MQTTtoBT', read(DEMO_MAC));
    const sent = Date.now();
    await client.publish('home/cmd/commands/MQTTtoBT', read(CLONE_MAC));
    const answer = await client.next(
      (m) => m.topic === 'home/cmd/BTtoMQTT/C0FFEE000100' && m.json?.success !== undefined,
      10_000,
      'the other device',
    );
    expect(answer.json).toMatchObject({ success: true });
    // Before, the second slow command held the other place while it waited for the first: the read waited ≥ 3 s.
    expect(Date.now() - sent).toBeLessThan(2_000);
  });
  it('mqtt commands - maxNotifications holds when requests for several devices arrive together', async () => {
    const { pool, gateway, client } = await gatewayOn(1, { commands: { allowRead: ['*'], maxNotifications: 1 } });
    await waitHeard(pool, DEMO_MAC, 1);
    await waitHeard(pool, CLONE_MAC, 1);
    const notify = (mac: string) =>
      JSON.stringify({ ble_notify_address: mac, ble_notify_service: STATUS_SERVICE, ble_notify_char: COUNTER_CHAR });
    await client.publish('home/cmd/commands/MQTTtoBT', notify(DEMO_MAC));
    await client.publish('home/cmd/commands/MQTTtoBT', notify(CLONE_MAC));
    const answers = [
      await client.next((m) => m.topic === 'home/cmd/BTtoMQTT/C0FFEE000001' && m.json?.subscribed !== undefined, 10_000),
      await client.next((m) => m.topic === 'home/cmd/BTtoMQTT/C0FFEE000100' && m.json?.subscribed !== undefined, 10_000),
    ];
    // Both passed the check before either had connected: two subscriptions with a limit of one.
    expect(answers.filter((a) => a.json?.subscribed === true)).toHaveLength(1);
    expect(answers.find((a) => a.json?.subscribed === false)?.json).toMatchObject({ success: false, error: 'ESPAPI_ERR_RATE_LIMITED' });
    expect(gateway.stats().notifications).toBe(1);
  });
  it('mqtt commands - a command topic the broker refuses (SUBACK 0x80) is reported and not counted as granted', async () => {
    // A broker whose rules let the gateway hold one subscription: the second command topic is refused.
    const broker = await EmbeddedBroker.start({ port: 0, maxSubscriptionsPerClient: 1 });
    closers.push(() => broker.close());
    const pool = new ProxyPool([]);
    closers.push(() => pool.close());
    const gateway = new MqttGateway({ pool, name: 'acl', broker: broker.url, commands: { allowRead: ['*'] } });
    closers.push(() => gateway.close());
    const events: MqttGatewayStatus[] = [];
    const watching = (async () => {
      for await (const event of gateway.status()) events.push(event);
    })();
    await gateway.start({ timeout: 5_000 });
    // start() resolves with the SUBACK in: what is granted is known before anyone announces it.
    expect(gateway.commandTopics).toEqual(['home/acl/commands/MQTTtoBT']);
    expect(events.find((e) => e.type === 'subscribeRefused')).toMatchObject({ topics: ['home/acl/commands/MQTTtoBT/config'] });
    await gateway.close();
    await watching;
  });
  it('mqtt commands - two gateways with one name find each other: the newer carries out commands, the older says so and stops', async () => {
    const broker = await EmbeddedBroker.start({ port: 0 });
    closers.push(() => broker.close());
    const fleet = await startTestFleet(2, await profileWithDevices(0));
    closers.push(() => fleet.close());
    const runs: Array<{ gateway: MqttGateway; events: MqttGatewayStatus[]; pool: ProxyPool }> = [];
    for (const node of fleet.nodes) {
      const pool = new ProxyPool([{ host: '127.0.0.1', port: node.server.address.port, name: node.server.name }]);
      closers.push(() => pool.close());
      const gateway = new MqttGateway({ pool, name: 'twice', broker: broker.url, commands: { allowRead: ['*'] } });
      closers.push(() => gateway.close());
      const events: MqttGatewayStatus[] = [];
      void (async () => {
        for await (const event of gateway.status()) events.push(event);
      })();
      await gateway.start({ timeout: 5_000 });
      await waitHeard(pool, DEMO_MAC, 1);
      runs.push({ gateway, events, pool });
      // Distinct start times (the newer is the later one).
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const [older, newer] = runs as [(typeof runs)[0], (typeof runs)[0]];
    await expect.poll(() => older.events.find((e) => e.type === 'nameClash'), { timeout: 3_000 }).toMatchObject({ commands: 'yielded' });
    await expect.poll(() => newer.events.find((e) => e.type === 'nameClash'), { timeout: 3_000 }).toMatchObject({ commands: 'kept' });
    expect(older.gateway.commandTopics).toEqual([]);
    const client = await TestClient.connect(broker.url, ['home/twice/BTtoMQTT/C0FFEE000001']);
    closers.push(() => client.close());
    await client.publish('home/twice/commands/MQTTtoBT', read(DEMO_MAC));
    await client.next((m) => m.json?.read !== undefined, 10_000, 'the read answer');
    await expect.poll(() => newer.gateway.stats().commandsSucceeded, { timeout: 3_000 }).toBe(1);
    // Carried out once: the older run let it be.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(older.gateway.stats().commandsSucceeded + older.gateway.stats().commandsFailed).toBe(0);
    expect(client.messages.filter((m) => m.json?.read !== undefined)).toHaveLength(1);
  });
});
