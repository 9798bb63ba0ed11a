import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { loadProfile, resolveProfilePath } from '../../src/fixture-server/profile.js';
import { estimateDistance } from '../../src/mqtt/ad-payload.js';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.js';
import { MqttGateway, type MqttGatewayOptions } from '../../src/mqtt/mqtt-gateway.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { useClosers } from '../helpers/closers.js';
import { DEMO_MAC, profileWithDevices, startTestFleet } from '../helpers/fleet.js';
import { MOSQUITTO_SKIP_REASON, Mosquitto, SKIP_MOSQUITTO } from '../helpers/mosquitto.js';
import { TestClient } from '../helpers/mqtt.js';

const STATUS_SERVICE = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00';
const STATUS_CHAR = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b01';
const COMMAND_CHAR = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b02';
const COUNTER_CHAR = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b04';
const METER = 'C4:F9:26:75:DF:22';
const LYWSD03MMC = 'A4:C1:38:B4:94:4C';

const closers = useClosers();

let mosquitto: Mosquitto | undefined;
beforeAll(async () => {
  if (!SKIP_MOSQUITTO) mosquitto = await Mosquitto.start();
});
afterAll(async () => {
  await mosquitto?.close();
});

/** The same behaviour against a real Mosquitto and against the embedded aedes broker. */
const BROKERS = [
  { label: 'mosquitto', skip: SKIP_MOSQUITTO },
  { label: 'embedded', skip: false },
] as const;

async function setUp(
  label: 'mosquitto' | 'embedded',
  fleet: SimulatedFleet,
  options: Partial<MqttGatewayOptions> = {},
): Promise<{ gateway: MqttGateway; pool: ProxyPool; url: string }> {
  const pool = new ProxyPool(
    fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })),
    { backoff: { initialDelay: 20, jitter: 0 } },
  );
  closers.push(() => pool.close());
  const gateway = new MqttGateway({
    pool,
    name: `gw-${label}`,
    ...(label === 'mosquitto' ? { broker: mosquitto!.url } : { embeddedBroker: { port: 0 } }),
    ...options,
  });
  closers.push(() => gateway.close());
  await gateway.start({ timeout: 5_000 });
  return { gateway, pool, url: gateway.brokerUrl! };
}

/** A broker the gateway connects to as to any user's (started before the gateway, so it can hold retained messages). */
async function userBroker(label: 'mosquitto' | 'embedded'): Promise<string> {
  if (label === 'mosquitto') return mosquitto!.url;
  const broker = await EmbeddedBroker.start({ port: 0 });
  closers.push(() => broker.close());
  return broker.url;
}

/** Kitchen (its real advertisers plus the demo device, heard best there) and office (the default profile). */
async function kitchenAndDemo(): Promise<SimulatedFleet> {
  const kitchen = await loadProfile(resolveProfilePath('kitchen'));
  const demo = await profileWithDevices(0);
  const close = demo.peripherals.map((p) => (p.mac === DEMO_MAC ? { ...p, rssi: -40 } : p));
  const fleet = await startTestFleet(2, demo, [
    { name: 'kitchen', profile: { ...kitchen, peripherals: [...kitchen.peripherals, ...close] } },
    { name: 'office' },
  ]);
  closers.push(() => fleet.close());
  return fleet;
}

for (const broker of BROKERS) {
  describe.skipIf(broker.skip /* waits for mosquitto (apt-get install mosquitto) */)(
    `mqtt gateway on ${broker.label}${broker.skip ? ` (${MOSQUITTO_SKIP_REASON})` : ''}`,
    () => {
      it('mqtt gateway - advertisements in OpenMQTTGateway topic and JSON shape, LWT and proxies retained', async () => {
        const fleet = await kitchenAndDemo();
        const { gateway, url } = await setUp(broker.label, fleet);
        const root = `home/${gateway.name}`;
        const client = await TestClient.connect(url, [`${root}/#`]);
        closers.push(() => client.close());

        // SwitchBot Meter: manufacturer data and a 16-bit service data structure in one report.
        const meter = await client.next(
          (m) =>
            m.topic === `${root}/BTtoMQTT/C4F92675DF22` && m.json?.servicedatauuid === '0xfd3d' && m.json.manufacturerdata !== undefined,
          5_000,
          'a SwitchBot Meter report with both data kinds',
        );
        const rssi = meter.json!.rssi as number;
        // What OpenMQTTGateway (pubadvdata on) would publish for these AD bytes, plus the proxy that heard it.
        expect(meter.json).toEqual({
          id: METER,
          mac_type: 1,
          manufacturerdata: '6909c4f92675df22dc030096a9',
          rssi,
          distance: Math.round(estimateDistance(rssi, undefined) * 1000) / 1000,
          servicedata: '6900ba031938',
          servicedatauuid: '0xfd3d',
          proxy: 'kitchen',
        });
        expect(Object.keys(meter.json!)).toEqual([
          'id',
          'mac_type',
          'manufacturerdata',
          'rssi',
          'distance',
          'servicedata',
          'servicedatauuid',
          'proxy',
        ]);
        expect(meter.retain).toBe(false);
        // Xiaomi MiBeacon: service data only.
        const mi = await client.next((m) => m.topic === `${root}/BTtoMQTT/A4C138B4944C`, 5_000, 'the LYWSD03MMC');
        expect(mi.json).toMatchObject({
          id: LYWSD03MMC,
          mac_type: 0,
          servicedatauuid: '0xfe95',
          servicedata: '50305b05034c94b438c1a40d10041001ea01',
        });
        // The demo device's name from its scan response, heard by both proxies.
        const named = await client.next((m) => m.topic === `${root}/BTtoMQTT/C0FFEE000001` && m.json?.name !== undefined, 5_000);
        expect(named.json).toMatchObject({ id: DEMO_MAC, name: 'esphome-ble-demo' });
        await client.next((m) => m.topic === `${root}/BTtoMQTT/C0FFEE000001` && m.json?.proxy === 'office', 5_000, 'the office report');

        // A client arriving later sees the retained availability and fleet state.
        const late = await TestClient.connect(url, [`${root}/LWT`, `${root}/proxies/#`]);
        closers.push(() => late.close());
        expect((await late.next((m) => m.topic === `${root}/LWT`)).text).toBe('online');
        const online = await late.next((m) => m.topic === `${root}/proxies/kitchen/online`);
        expect(online).toMatchObject({ text: 'online', retain: true });
        const slots = await late.next((m) => m.topic === `${root}/proxies/office/slots`);
        expect(slots.retain).toBe(true);
        expect(slots.json).toEqual({ free: 3, limit: 3, allocated: [] });
        expect((await late.next((m) => m.topic === `${root}/proxies/office/subscription`)).text).toBe('subscribed');
        const stats = await late.next((m) => m.topic === `${root}/proxies/kitchen/stats`);
        expect(stats.json).toMatchObject({ state: 'online', name: 'kitchen' });
        expect(gateway.stats().advertisementsPublished).toBeGreaterThan(0);
      });

      it('mqtt gateway - read and write round trip through the pool with failover; answers in OpenMQTTGateway shape', async () => {
        const fleet = await kitchenAndDemo();
        // The kitchen hears the device best but refuses the connect once (out of slots): the pool fails over.
        fleet.nodes[0]!.bluetooth.setBehaviour(0xc0ffee000001, { connectError: 0x100, connectErrorCount: 1 });
        const { gateway, url } = await setUp(broker.label, fleet, { commands: { allowRead: ['*'], allowWrite: [DEMO_MAC] } });
        const root = `home/${gateway.name}`;
        const client = await TestClient.connect(url, [`${root}/BTtoMQTT/C0FFEE000001`]);
        closers.push(() => client.close());
        await client.next((m) => m.json?.proxy === 'kitchen', 5_000, 'an advertisement via kitchen');

        await client.publish(
          `${root}/commands/MQTTtoBT`,
          JSON.stringify({
            ble_write_address: DEMO_MAC,
            ble_write_service: STATUS_SERVICE,
            ble_write_char: COMMAND_CHAR,
            ble_write_value: 'hello mqtt',
            value_type: 'STRING',
            ttl: 4,
            immediate: true,
          }),
        );
        const written = await client.after((m) => m.json?.write !== undefined, 10_000, 'the write answer');
        expect(written.json).toEqual({
          id: DEMO_MAC,
          service: STATUS_SERVICE,
          characteristic: COMMAND_CHAR,
          write: 'hello mqtt',
          success: true,
          proxy: 'office',
        });
        await client.publish(
          `${root}/commands/MQTTtoBT`,
          JSON.stringify({
            ble_read_address: DEMO_MAC,
            ble_read_service: STATUS_SERVICE,
            ble_read_char: STATUS_CHAR,
            value_type: 'STRING',
            ttl: 2,
          }),
        );
        const read = await client.after((m) => m.json?.read !== undefined, 10_000, 'the read answer');
        // The device echoes the last command into its status characteristic.
        expect(read.json).toMatchObject({
          id: DEMO_MAC,
          service: STATUS_SERVICE,
          characteristic: STATUS_CHAR,
          read: 'hello mqtt',
          success: true,
        });
        // OpenMQTTGateway's documentation sends commands to …/MQTTtoBT/config: that works too.
        await client.publish(
          `${root}/commands/MQTTtoBT/config`,
          JSON.stringify({ ble_read_address: DEMO_MAC, ble_read_service: STATUS_SERVICE, ble_read_char: STATUS_CHAR, value_type: 'HEX' }),
        );
        const hex = await client.after((m) => m.json?.read !== undefined, 10_000, 'the HEX read');
        expect(hex.json?.read).toBe(Buffer.from('hello mqtt').toString('hex'));
        // Each command disconnected again: every slot is back.
        await expect.poll(() => fleet.nodes.map((n) => n.bluetooth.free), { timeout: 3_000 }).toEqual([3, 3]);
        await expect.poll(() => gateway.stats().commandsSucceeded, { timeout: 3_000 }).toBe(3);
      });

      it('mqtt gateway - a command for an unknown device, a bad command and refused commands are answered with typed errors', async () => {
        const fleet = await kitchenAndDemo();
        const { gateway, url } = await setUp(broker.label, fleet, { commands: { allowRead: [DEMO_MAC, 'AA:BB:CC:00:11:22'] } });
        const root = `home/${gateway.name}`;
        const client = await TestClient.connect(url, [`${root}/BTtoMQTT/#`]);
        closers.push(() => client.close());
        const commands = `${root}/commands/MQTTtoBT`;

        await client.publish(
          commands,
          JSON.stringify({ ble_read_address: 'AA:BB:CC:00:11:22', ble_read_service: '180f', ble_read_char: '2a19', ttl: 1 }),
        );
        const unknown = await client.after((m) => m.topic === `${root}/BTtoMQTT/AABBCC001122`, 10_000, 'the unknown-device answer');
        expect(unknown.json).toMatchObject({
          id: 'AA:BB:CC:00:11:22',
          // NimBLEUUID::toString, as OpenMQTTGateway answers.
          service: '0x180f',
          characteristic: '0x2a19',
          success: false,
          error: 'ESPAPI_ERR_DEVICE_NOT_FOUND',
        });

        // Writes are not allowed for the demo device, reads of another device are not allowed at all.
        await client.publish(
          commands,
          JSON.stringify({
            ble_write_address: DEMO_MAC,
            ble_write_service: STATUS_SERVICE,
            ble_write_char: COMMAND_CHAR,
            ble_write_value: '01',
            value_type: 'HEX',
          }),
        );
        const refusedWrite = await client.after((m) => m.json?.error !== undefined && m.topic.endsWith('C0FFEE000001'), 3_000);
        expect(refusedWrite.json).toMatchObject({ id: DEMO_MAC, write: '01', success: false, error: 'ESPAPI_ERR_COMMAND_REFUSED' });
        await client.publish(commands, JSON.stringify({ ble_read_address: METER, ble_read_service: '180f', ble_read_char: '2a19' }));
        const refusedRead = await client.after((m) => m.topic === `${root}/BTtoMQTT/C4F92675DF22` && m.json?.success === false, 3_000);
        expect(refusedRead.json).toMatchObject({ id: METER, error: 'ESPAPI_ERR_COMMAND_REFUSED' });
        // A characteristic the device lacks.
        await client.publish(
          commands,
          JSON.stringify({ ble_read_address: DEMO_MAC, ble_read_service: STATUS_SERVICE, ble_read_char: '2a19' }),
        );
        const missing = await client.after((m) => m.topic.endsWith('C0FFEE000001') && m.json?.success === false, 10_000);
        expect(missing.json).toMatchObject({ error: 'ESPAPI_ERR_CHARACTERISTIC_NOT_FOUND' });
        // Bad JSON and bad fields: answered on the device topic when the address decoded, else on BTtoMQTT/commands.
        await client.publish(commands, '{"ble_read_address":"C0:FF:EE:00:00:01","ble_read_service":"nope","ble_read_char":"2a00"}');
        const bad = await client.after((m) => m.topic.endsWith('C0FFEE000001') && m.json?.success === false, 3_000);
        expect(bad.json).toMatchObject({ id: DEMO_MAC, error: 'ESPAPI_ERR_INVALID_ARGUMENT' });
        await client.publish(commands, 'not json');
        const garbage = await client.after((m) => m.topic === `${root}/BTtoMQTT/commands`, 3_000);
        expect(garbage.json).toMatchObject({ success: false, error: 'ESPAPI_ERR_INVALID_ARGUMENT' });
        // OpenMQTTGateway's settings on its settings topic: not taken, and said so.
        await client.publish(`${commands}/config`, JSON.stringify({ minrssi: -80 }));
        const settings = await client.after((m) => m.topic === `${root}/BTtoMQTT/commands`, 3_000);
        expect(settings.json).toMatchObject({ success: false, error: 'ESPAPI_ERR_INVALID_ARGUMENT' });
        expect(settings.json?.message).toContain('esphome-ble mqtt options');
        expect(gateway.stats().commandsFailed).toBe(7);
      });

      it('mqtt gateway - a retained command is never carried out: the broker replays it on every subscribe', async () => {
        const fleet = await kitchenAndDemo();
        const url = await userBroker(broker.label);
        const name = `retained-${broker.label}`;
        const commands = `home/${name}/commands/MQTTtoBT`;
        const client = await TestClient.connect(url, [`home/${name}/BTtoMQTT/C0FFEE000001`]);
        closers.push(() => client.close());
        // Someone published a write with the retain flag (by mistake or on purpose): the broker keeps it.
        const write = {
          ble_write_address: DEMO_MAC,
          ble_write_service: STATUS_SERVICE,
          ble_write_char: COMMAND_CHAR,
          ble_write_value: 'replayed',
          value_type: 'STRING',
        };
        await client.publish(commands, JSON.stringify(write), true);
        closers.push(() => client.publish(commands, '', true));
        const { gateway } = await setUp(broker.label, fleet, {
          name,
          broker: url,
          commands: { allowRead: ['*'], allowWrite: [DEMO_MAC] },
        });
        await expect.poll(() => gateway.stats().retainedCommandsDropped, { timeout: 3_000 }).toBe(1);
        await client.publish(
          commands,
          JSON.stringify({ ble_read_address: DEMO_MAC, ble_read_service: STATUS_SERVICE, ble_read_char: STATUS_CHAR }),
        );
        const read = await client.after((m) => m.json?.read !== undefined, 10_000, 'the read answer');
        // The device echoes the last command written into its status characteristic: the retained write never ran.
        expect(read.json?.read).not.toBe('replayed');
        expect(client.messages.some((m) => m.json?.write !== undefined)).toBe(false);
        await expect.poll(() => gateway.stats().commandsSucceeded, { timeout: 3_000 }).toBe(1);
        expect(gateway.stats()).toMatchObject({ commandsFailed: 0, retainedCommandsDropped: 1 });
      });

      it('mqtt gateway - notifications on request are published until stopped', async () => {
        const fleet = await kitchenAndDemo();
        const { gateway, url } = await setUp(broker.label, fleet, { commands: { allowRead: ['*'] } });
        const root = `home/${gateway.name}`;
        const client = await TestClient.connect(url, [`${root}/BTtoMQTT/C0FFEE000001`]);
        closers.push(() => client.close());
        const request = {
          ble_notify_address: DEMO_MAC,
          ble_notify_service: STATUS_SERVICE,
          ble_notify_char: COUNTER_CHAR,
          value_type: 'HEX',
        };
        await client.publish(`${root}/commands/MQTTtoBT`, JSON.stringify(request));
        const started = await client.after((m) => m.json?.subscribed === true, 10_000, 'the subscribed answer');
        expect(started.json).toMatchObject({ id: DEMO_MAC, characteristic: COUNTER_CHAR, success: true });
        const first = await client.after((m) => m.json?.notify !== undefined, 3_000, 'a notification');
        expect(first.json).toMatchObject({ id: DEMO_MAC, service: STATUS_SERVICE, characteristic: COUNTER_CHAR });
        expect(typeof first.json?.notify).toBe('string');
        await client.after((m) => m.json?.notify !== undefined, 3_000, 'a second notification');
        expect(gateway.stats().notifications).toBe(1);
        await client.publish(`${root}/commands/MQTTtoBT`, JSON.stringify({ ...request, ble_notify: false }));
        await client.after((m) => m.json?.subscribed === false && m.json.success === true, 5_000, 'the stop answer');
        expect(gateway.stats().notifications).toBe(0);
        await expect.poll(() => fleet.nodes.map((n) => n.bluetooth.free), { timeout: 3_000 }).toEqual([3, 3]);
      });
    },
  );
}
