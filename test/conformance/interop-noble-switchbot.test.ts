import type { Noble } from '@stoprocent/noble';
import { Advertising, SwitchBotBLE, type SwitchbotDevice } from 'node-switchbot';
import { describe, expect, it } from 'vitest';
import { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { type DeviceProfile, parseProfile } from '../../src/fixture-server/profile.js';
import { createNoble, createNobleBindings } from '../../src/noble/index.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { type RecordedAdvertisement, recordedAdvertisements } from '../helpers/fixtures.js';
import { Noble1Class, newNobleGap, nobleGapAdvertisement, nobleRig, settled } from '../helpers/noble.js';

// Canary: node-switchbot (OpenWonderLabs, a maintained noble-based library that knows nothing of proxies) must
// decode the recorded SwitchBot advertisements (fixtures/data) through our noble bindings exactly as it decodes noble's own HCI
// parse of the same bytes, and must drive a simulated Bot through connect, GATT discovery, subscribe, write and
// notification. It runs on noble 1.x (the @stoprocent/noble ^1.19 it pins) and on our peer noble 2.x.

const switchbots = recordedAdvertisements().filter((a) => a.family === 'switchbot');

const rig = nobleRig();
const quiet = (): void => {};
/** node-switchbot's decode of one advertisement, without the RSSI (which the proxy jitters). */
type Decoded = Omit<NonNullable<Awaited<ReturnType<typeof Advertising.parse>>>, 'rssi'>;

/** Random static addresses have the top two bits set; the data leaves most types unknown. */
function addressType(record: RecordedAdvertisement): number {
  return record.address_type ?? ((Number.parseInt(record.address.slice(0, 2), 16) & 0xc0) === 0xc0 ? 1 : 0);
}

/** Groups the records so that no address appears twice in a group (one simulated proxy hears each group). */
function byDistinctAddress(records: RecordedAdvertisement[]): RecordedAdvertisement[][] {
  const groups: RecordedAdvertisement[][] = [];
  for (const record of records) {
    let i = 0;
    while (groups[i]?.some((r) => r.address === record.address)) i++;
    (groups[i] ??= []).push(record);
  }
  return groups;
}

/** One advertiser per record, each sending just that record's AD bytes every 100 ms. */
function advertisers(records: RecordedAdvertisement[]): DeviceProfile {
  return parseProfile({
    name: 'switchbot',
    peripherals: records.map((r) => ({
      mac: r.address,
      addressType: addressType(r),
      name: r.id,
      advertisingIntervalMs: 100,
      advertisements: [r.raw_ad_hex],
    })),
  });
}

/** What node-switchbot makes of noble's HCI GAP parse of the record's bytes (null: not a device it knows). */
async function reference(record: RecordedAdvertisement): Promise<Decoded | null> {
  const address = record.address.toLowerCase();
  const advertisement = nobleGapAdvertisement(newNobleGap(), address, Buffer.from(record.raw_ad_hex, 'hex'));
  const decoded = await Advertising.parse({ id: address.replaceAll(':', ''), address, rssi: -60, advertisement } as never, quiet);
  if (decoded === null) return null;
  const { rssi: _rssi, ...rest } = decoded;
  return rest;
}

const BASE = '-224d-11e6-9fb8-0002a5d5c51b';
/** What the simulated Bot receives on its RX characteristic (value handle). */
const BOT_RX = 18;

/**
 * A SwitchBot Bot: its real advertisement (switchbot-010) and the communication service the vendor documents
 * (OpenWonderLabs/SwitchBotAPI-BLE devicetypes/bot.md: service cba20d00…, RX cba20002 (read/write) written by the client,
 * TX cba20003 notifying the answer). The handles are ours (the data has no GATT table for it). It answers every
 * command on TX with status 01 (OK, as documented) and two payload bytes (ff 00, made up): node-switchbot takes
 * only a 3-byte answer from a Bot.
 */
function bot(record: RecordedAdvertisement): DeviceProfile {
  return parseProfile({
    name: 'switchbot-bot',
    peripherals: [
      {
        mac: record.address,
        addressType: addressType(record),
        name: 'SwitchBot Bot',
        advertisingIntervalMs: 100,
        connectable: true,
        advertisements: [record.raw_ad_hex],
        gatt: {
          services: [
            {
              uuid: `cba20d00${BASE}`,
              handle: 16,
              characteristics: [
                {
                  uuid: `cba20002${BASE}`,
                  handle: BOT_RX,
                  properties: ['read', 'write', 'write-without-response'],
                  echoTo: 20,
                  reply: '01ff00',
                },
                { uuid: `cba20003${BASE}`, handle: 20, properties: ['notify'], descriptors: [{ uuid: '2902', handle: 21 }] },
              ],
            },
          ],
        },
        behaviour: { connectDelayMs: 30 },
      },
    ],
  });
}

/** Resolves once `done()` holds, polling every 20 ms; false after `timeoutMs`. */
async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

describe('interop: node-switchbot through the noble bindings', () => {
  it('node-switchbot - decodes every recorded SwitchBot advertisement as it decodes noble’s HCI parse of the same bytes', async () => {
    expect(switchbots.length).toBeGreaterThan(30);
    let decodable = 0;
    for (const group of byDistinctAddress(switchbots)) {
      const expected = new Map<string, Decoded | null>();
      for (const record of group) expected.set(record.address.toLowerCase(), await reference(record));
      const wanted = [...expected].filter(([, d]) => d !== null).map(([address]) => address);
      decodable += wanted.length;

      rig.fleet = await SimulatedFleet.start([{ profile: advertisers(group) }]);
      rig.pool = new ProxyPool(rig.fleet.addresses);
      rig.bindings = createNobleBindings(rig.pool);
      // noble 1.x's Noble, as node-switchbot builds it when left to itself.
      const noble = new Noble1Class(rig.bindings);
      const switchbot = new SwitchBotBLE({ noble: noble as never });
      const seen = new Map<string, Decoded>();
      switchbot.onadvertisement = (ad) => {
        const { rssi: _rssi, ...rest } = ad;
        seen.set(ad.address, rest);
      };
      // It waits for poweredOn first (noble 1.x starts the bindings through init()).
      expect(await settled(switchbot.startScan(), 3_000)).toEqual({ value: undefined });
      await until(() => wanted.every((a) => seen.has(a)), 3_000);
      await switchbot.stopScan();

      for (const [address, decoded] of expected) expect(seen.get(address) ?? null, address).toEqual(decoded);
      await rig.bindings.close();
      await rig.pool.close();
      await rig.fleet.close();
      rig.bindings = undefined;
      rig.pool = undefined;
      rig.fleet = undefined;
    }
    // The library knows about half the recorded models (no vacuums, hubs or fans; no ads without manufacturer data).
    expect(decodable).toBeGreaterThanOrEqual(19);
    // Spot checks against the values the data's source test asserts.
    const meter = await reference(switchbots.find((r) => r.id === 'switchbot-003')!);
    expect(meter?.serviceData).toMatchObject({ modelName: 'WoSensorTHPlus', celsius: -25.3, humidity: 56, battery: 58 });
  });

  it('node-switchbot - presses a simulated Bot through a proxy: connect, discovery, subscribe, write, notification, disconnect', async () => {
    const record = switchbots.find((r) => r.id === 'switchbot-010')!;
    rig.fleet = await SimulatedFleet.start([{ profile: bot(record) }]);
    rig.pool = new ProxyPool(rig.fleet.addresses);
    // noble 2.x this time: createNoble, as an application hands it to the library.
    const noble: Noble = createNoble(rig.pool);
    rig.bindings = (noble as unknown as { _bindings: NonNullable<typeof rig.bindings> })._bindings;
    const switchbot = new SwitchBotBLE({ noble: noble as never });
    const found: SwitchbotDevice[] = [];
    switchbot.ondiscover = (device) => {
      found.push(device);
    };
    await switchbot.discover({ model: 'H', quick: true, duration: 3_000, noble: noble as never } as never);
    const device = found[0] as SwitchbotDevice & { press(): Promise<void>; turnOff(): Promise<void> };
    expect(device.constructor.name).toBe('WoHand');

    const peripheral = rig.fleet.nodes[0]!.bluetooth.peripherals[0]!;
    const written = (): string => {
      const result = peripheral.read(BOT_RX);
      return 'data' in result ? Buffer.from(result.data).toString('hex') : `error ${result.error}`;
    };
    const linkGone = (): Promise<boolean> =>
      until(() => peripheral.state === 'disconnected' && rig.fleet!.nodes[0]!.bluetooth.linkAddresses.length === 0, 1_000);
    // press() resolves only once the Bot's answer came back as a notification of TX, with status 01.
    await device.press();
    expect(written()).toBe('570100');
    // The library disconnects after a command; the proxy has its slot back.
    expect(await linkGone()).toBe(true);
    expect(device.connectionState).toBe('disconnected');
    await device.turnOff();
    expect(written()).toBe('570102');
    // From its second command on, node-switchbot keeps the link (internalDisconnect sets explicitlyConnected); so
    // does it through HCI. Its disconnect() unsubscribes and disconnects.
    expect(device.connectionState).toBe('connected');
    await device.disconnect();
    expect(await linkGone()).toBe(true);
    expect(device.connectionState).toBe('disconnected');
    // node-switchbot arms a 5 s discovery timeout per command and never clears it: outwait it for the leak guard.
    await new Promise((resolve) => setTimeout(resolve, 5_100));
  }, 12_000);
});
