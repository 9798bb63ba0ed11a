import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors.js';
import { DEFAULT_PROFILE_PATH, loadProfile, type PeripheralProfile, parseProfile } from '../../../src/fixture-server/profile.js';
import { SimulatedPeripheral, seededRandom } from '../../../src/fixture-server/simulated-peripheral.js';

// Handles of the default demo peripheral (fixtures/profiles/default.json).
const DEVICE_NAME = 3;
const SERVICE_CHANGED_CCCD = 9;
const DEMO_SERVICE = 10;
const STATUS = 12;
const COMMAND = 14;
const STREAM = 16;
const COUNTER = 18;
const COUNTER_CCCD = 19;
const COUNTER_DESCRIPTION = 20;
const SECRET = 22;
const BONDED_ONLY = 24;

const text = (data: Uint8Array): string => new TextDecoder().decode(data);
const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const activeTimers = (): number => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;

const demoProfile = (await loadProfile(DEFAULT_PROFILE_PATH)).peripherals[0]!;

/** The demo peripheral with patched behaviour or a faster counter, parsed like a real profile. */
function demo(
  patch: { behaviour?: Record<string, unknown>; counterIntervalMs?: number; connectable?: boolean; streamReply?: string } = {},
): PeripheralProfile {
  const base = {
    mac: 'C0:FF:EE:00:00:09',
    addressType: 1,
    advertisements: ['020106', '0509746573740000'],
    rssi: -60,
    rssiJitter: 5,
    advertisingIntervalMs: 100,
    connectable: patch.connectable ?? true,
    gatt: {
      mtu: 185,
      services: [
        {
          uuid: '1800',
          handle: 1,
          characteristics: [{ uuid: '2a00', handle: 3, properties: ['read'], value: { utf8: 'test' } }],
        },
        {
          uuid: 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00',
          handle: 10,
          characteristics: [
            { uuid: '2a3d', handle: 12, properties: ['read'], value: { utf8: 'ready' } },
            { uuid: '2a3e', handle: 14, properties: ['write'], echoTo: 12 },
            {
              uuid: '2a3f',
              handle: 16,
              properties: ['write-without-response'],
              echoTo: 18,
              ...(patch.streamReply === undefined ? {} : { reply: patch.streamReply }),
            },
            {
              uuid: '2a40',
              handle: 18,
              properties: ['read', 'notify'],
              value: '00',
              descriptors: [{ uuid: '2902', handle: 19 }],
              notify: { intervalMs: patch.counterIntervalMs ?? 10, values: ['01', '02', '03'] },
            },
          ],
        },
      ],
    },
    ...(patch.behaviour === undefined ? {} : { behaviour: patch.behaviour }),
  };
  return parseProfile({ name: 't', peripherals: [base] }).peripherals[0]!;
}

const open: SimulatedPeripheral[] = [];
function make(profile: PeripheralProfile, random = seededRandom(1)): SimulatedPeripheral {
  const peripheral = new SimulatedPeripheral(profile, { random });
  open.push(peripheral);
  return peripheral;
}
function connected(profile: PeripheralProfile = demoProfile): SimulatedPeripheral {
  const peripheral = make(profile);
  expect(peripheral.connect()).toEqual({ connected: true, mtu: profile.gatt.mtu });
  return peripheral;
}
/** Registers the counter at the proxy and enables its CCCD; collects what arrives. */
function subscribe(peripheral: SimulatedPeripheral): { handle: number; data: number[] }[] {
  const received: { handle: number; data: number[] }[] = [];
  peripheral.onNotify((handle, data) => received.push({ handle, data: [...data] }));
  expect(peripheral.registerNotify(COUNTER, true)).toEqual({ ok: true });
  expect(peripheral.writeDescriptor(COUNTER_CCCD, bytes(1, 0))).toEqual({ ok: true });
  return received;
}

afterEach(() => {
  for (const peripheral of open.splice(0)) peripheral.close();
});

describe('simulated-peripheral - advertising', () => {
  it('simulated-peripheral - rotates payloads with bounded, seeded RSSI jitter', () => {
    const profile = demo();
    const a = make(profile, seededRandom(42));
    const b = make(profile, seededRandom(42));
    const reports = Array.from({ length: 6 }, (_, i) => a.nextAdvertisement(i * 100));
    expect(reports.map((r) => r.data)).toEqual([0, 1, 0, 1, 0, 1].map((i) => profile.advertisements[i]));
    expect(reports.every((r) => r.address === 0xc0ffee000009 && r.addressType === 1)).toBe(true);
    expect(reports.every((r) => r.rssi >= -65 && r.rssi <= -55)).toBe(true);
    expect(new Set(reports.map((r) => r.rssi)).size).toBeGreaterThan(1);
    expect(Array.from({ length: 6 }, (_, i) => b.nextAdvertisement(i * 100).rssi)).toEqual(reports.map((r) => r.rssi));
  });

  it('simulated-peripheral - staggers the first advertisement within one interval, then keeps the interval', () => {
    const peripheral = make(demo());
    expect(peripheral.advertisingIntervalMs).toBe(100);
    peripheral.nextAdvertisement(1_000);
    expect(peripheral.nextAdvertisementAt).toBeGreaterThan(1_000);
    expect(peripheral.nextAdvertisementAt).toBeLessThan(1_100);
    peripheral.nextAdvertisement(2_000);
    expect(peripheral.nextAdvertisementAt).toBe(2_100);
  });

  it('simulated-peripheral - stops advertising while connected unless configured otherwise', () => {
    const peripheral = make(demo());
    expect(peripheral.isAdvertising).toBe(true);
    peripheral.connect();
    expect(peripheral.isAdvertising).toBe(false);
    peripheral.reset();
    expect(peripheral.isAdvertising).toBe(true);
    const chatty = connected(demo({ behaviour: { advertiseWhileConnected: true } }));
    expect(chatty.isAdvertising).toBe(true);
  });
});

describe('simulated-peripheral - connection behaviour', () => {
  it('simulated-peripheral - exposes the timing knobs for the proxy', () => {
    const peripheral = make(demo({ behaviour: { connectDelayMs: 7, responseDelayMs: 3, linkLossAfterMs: 500, connectError: 62 } }));
    expect(peripheral).toMatchObject({
      connectDelayMs: 7,
      responseDelayMs: 3,
      linkLossAfterMs: 500,
      connectError: 62,
      connectable: true,
      mtu: 185,
    });
    expect(make(demoProfile).linkLossAfterMs).toBeUndefined();
  });

  it('simulated-peripheral - fails the first connectErrorAttempts attempts, then connects', () => {
    const peripheral = make(demo({ behaviour: { connectError: 256, connectErrorAttempts: 2 } }));
    expect(peripheral.connect()).toEqual({ connected: false, error: 256 });
    expect(peripheral.connect()).toEqual({ connected: false, error: 256 });
    expect(peripheral.state).toBe('disconnected');
    expect(peripheral.connect()).toEqual({ connected: true, mtu: 185 });
    expect(peripheral.state).toBe('connected');
    expect(peripheral.connect()).toEqual({ connected: true, mtu: 185 });
  });

  it('simulated-peripheral - fails every attempt without connectErrorAttempts, and with 0x85 when not connectable', () => {
    const always = make(demo({ behaviour: { connectError: 62 } }));
    for (let i = 0; i < 3; i++) expect(always.connect()).toEqual({ connected: false, error: 62 });
    expect(make(demo({ connectable: false })).connect()).toEqual({ connected: false, error: 0x85 });
  });

  it('simulated-peripheral - drops the link after linkLossAfterMs with reason 0x08 and forgets subscriptions', async () => {
    const peripheral = connected(demo({ behaviour: { linkLossAfterMs: 20 }, counterIntervalMs: 1_000 }));
    subscribe(peripheral);
    const reasons: number[] = [];
    peripheral.onLinkLoss((reason) => reasons.push(reason));
    await sleep(40);
    expect(reasons).toEqual([0x08]);
    expect(peripheral.state).toBe('disconnected');
    expect(peripheral.isNotifying(COUNTER)).toBe(false);
  });

  it('simulated-peripheral - reset() before the link-loss timer cancels it', async () => {
    const peripheral = connected(demo({ behaviour: { linkLossAfterMs: 10 } }));
    const reasons: number[] = [];
    peripheral.onLinkLoss((reason) => reasons.push(reason));
    peripheral.reset();
    await sleep(25);
    expect(reasons).toEqual([]);
  });

  it('simulated-peripheral - loseLink() drops an established link on demand', () => {
    const peripheral = connected();
    const reasons: number[] = [];
    const off = peripheral.onLinkLoss((reason) => reasons.push(reason));
    peripheral.loseLink(0x13);
    peripheral.loseLink(0x13);
    off();
    expect(reasons).toEqual([0x13]);
  });
});

describe('simulated-peripheral - GATT reads and writes', () => {
  it('simulated-peripheral - reads values, descriptors and declarations', () => {
    const peripheral = connected();
    const name = peripheral.read(DEVICE_NAME);
    expect('data' in name && text(name.data)).toBe('esphome-ble-demo');
    const description = peripheral.readDescriptor(COUNTER_DESCRIPTION);
    expect('data' in description && text(description.data)).toBe('Counter');
    expect(peripheral.read(1)).toEqual({ data: bytes(0x00, 0x18) });
    expect(peripheral.read(2)).toEqual({ data: bytes(0x02, 0x03, 0x00, 0x00, 0x2a) });
    const vendor = peripheral.read(DEMO_SERVICE);
    expect('data' in vendor && vendor.data.length).toBe(16);
    expect(peripheral.findByHandle(COUNTER_CCCD)).toMatchObject({ kind: 'descriptor', characteristic: { handle: COUNTER } });
    expect(peripheral.findByHandle(100)).toBeUndefined();
  });

  it('simulated-peripheral - answers invalid handle, read not permitted and configured errors', () => {
    const peripheral = connected();
    expect(peripheral.read(100)).toEqual({ error: 0x01 });
    expect(peripheral.read(COMMAND)).toEqual({ error: 0x02 });
    expect(peripheral.read(SECRET)).toEqual({ error: 0x05 });
    expect(peripheral.write(100, bytes(1), true)).toEqual({ error: 0x01 });
  });

  it('simulated-peripheral - checks the write type against the properties', () => {
    const peripheral = connected();
    expect(peripheral.write(STATUS, bytes(1), true)).toEqual({ error: 0x03 });
    expect(peripheral.write(STREAM, bytes(1), true)).toEqual({ error: 0x03 });
    expect(peripheral.write(COMMAND, bytes(1), false)).toEqual({ error: 0x03 });
    expect(peripheral.write(DEMO_SERVICE, bytes(1), true)).toEqual({ error: 0x03 });
    expect(peripheral.write(COMMAND, new Uint8Array(513), true)).toEqual({ error: 0x0d });
    expect(peripheral.writeDescriptor(COUNTER_DESCRIPTION, bytes(1))).toEqual({ error: 0x03 });
  });

  it('simulated-peripheral - a write to the command characteristic changes what the status characteristic reads', () => {
    const peripheral = connected();
    expect(peripheral.write(COMMAND, new TextEncoder().encode('go'), true)).toEqual({ ok: true });
    const status = peripheral.read(STATUS);
    expect('data' in status && text(status.data)).toBe('go');
    peripheral.reset();
    expect(peripheral.connect().connected).toBe(true);
    const after = peripheral.read(STATUS);
    expect('data' in after && text(after.data)).toBe('go');
  });

  it('simulated-peripheral - returns copies, so callers cannot change the stored value', () => {
    const peripheral = connected();
    const first = peripheral.read(DEVICE_NAME);
    if ('data' in first) first.data.fill(0);
    expect(peripheral.read(DEVICE_NAME)).toEqual({ data: new TextEncoder().encode('esphome-ble-demo') });
  });

  it('simulated-peripheral - encrypted characteristics answer 0x05 until paired; the bond survives reconnects', () => {
    const peripheral = connected();
    expect(peripheral.read(BONDED_ONLY)).toEqual({ error: 0x05 });
    expect(peripheral.write(BONDED_ONLY, bytes(1), true)).toEqual({ error: 0x05 });
    expect(peripheral.pair()).toEqual({ paired: true, error: 0 });
    expect(peripheral.bonded).toBe(true);
    expect(peripheral.pair()).toEqual({ paired: true, error: 0 });
    peripheral.reset();
    peripheral.connect();
    const value = peripheral.read(BONDED_ONLY);
    expect('data' in value && text(value.data)).toBe('bonded');
    expect(peripheral.unpair()).toEqual({ success: true, error: 0 });
    expect(peripheral.read(BONDED_ONLY)).toEqual({ error: 0x05 });
  });

  it('simulated-peripheral - pairing: "fail" answers pairingError and leaves no bond', () => {
    const peripheral = connected(demo({ behaviour: { pairing: 'fail', pairingError: 0x66 } }));
    expect(peripheral.pair()).toEqual({ paired: false, error: 0x66 });
    expect(peripheral.bonded).toBe(false);
  });
});

describe('simulated-peripheral - CCCD and notifications', () => {
  it('simulated-peripheral - CCCD writes are validated and read back', () => {
    const peripheral = connected();
    expect(peripheral.readDescriptor(COUNTER_CCCD)).toEqual({ data: bytes(0, 0) });
    expect(peripheral.writeDescriptor(COUNTER_CCCD, bytes(2, 0))).toEqual({ error: 0xfd });
    expect(peripheral.writeDescriptor(COUNTER_CCCD, bytes(1))).toEqual({ error: 0x0d });
    expect(peripheral.writeDescriptor(COUNTER_CCCD, bytes(4, 0))).toEqual({ error: 0xfd });
    expect(peripheral.writeDescriptor(SERVICE_CHANGED_CCCD, bytes(1, 0))).toEqual({ error: 0xfd });
    expect(peripheral.writeDescriptor(SERVICE_CHANGED_CCCD, bytes(2, 0))).toEqual({ ok: true });
    expect(peripheral.writeDescriptor(COUNTER_CCCD, bytes(1, 0))).toEqual({ ok: true });
    expect(peripheral.readDescriptor(COUNTER_CCCD)).toEqual({ data: bytes(1, 0) });
    expect(peripheral.registerNotify(COUNTER_CCCD, true)).toEqual({ error: 0x01 });
  });

  it('simulated-peripheral - notifies only when the proxy registered the handle AND the CCCD is enabled', async () => {
    const peripheral = connected(demo({ counterIntervalMs: 5 }));
    const received: number[][] = [];
    peripheral.onNotify((handle, data) => received.push([handle, ...data]));

    peripheral.registerNotify(COUNTER, true);
    await sleep(25);
    expect(received).toEqual([]);
    expect(peripheral.isNotifying(COUNTER)).toBe(false);

    peripheral.registerNotify(COUNTER, false);
    peripheral.writeDescriptor(COUNTER_CCCD, bytes(1, 0));
    await sleep(25);
    expect(received).toEqual([]);

    peripheral.registerNotify(COUNTER, true);
    expect(peripheral.isNotifying(COUNTER)).toBe(true);
    await sleep(30);
    expect(received.length).toBeGreaterThanOrEqual(2);
    // Values rotate 01, 02, 03; each one also becomes the characteristic's value.
    expect(received).toEqual(received.map((_, i) => [COUNTER, (i % 3) + 1]));
    expect(peripheral.read(COUNTER)).toEqual({ data: bytes(received.at(-1)![1]!) });

    peripheral.writeDescriptor(COUNTER_CCCD, bytes(0, 0));
    const count = received.length;
    await sleep(25);
    expect(received.length).toBe(count);
  });

  it('simulated-peripheral - onNotify returns an unsubscribe function', async () => {
    const peripheral = connected(demo({ counterIntervalMs: 5 }));
    const received: number[] = [];
    const off = peripheral.onNotify((handle) => received.push(handle));
    subscribe(peripheral);
    await sleep(20);
    off();
    const count = received.length;
    expect(count).toBeGreaterThan(0);
    await sleep(20);
    expect(received.length).toBe(count);
  });

  it('simulated-peripheral - a write-without-response to the stream characteristic is echoed as a notification', async () => {
    const peripheral = connected(demo({ counterIntervalMs: 60_000 }));
    const received = subscribe(peripheral);
    expect(peripheral.write(STREAM, bytes(0xca, 0xfe), false)).toEqual({ ok: true });
    expect(received).toEqual([]);
    await sleep(20);
    expect(received).toEqual([{ handle: COUNTER, data: [0xca, 0xfe] }]);
    expect(peripheral.read(COUNTER)).toEqual({ data: bytes(0xca, 0xfe) });
  });

  it('simulated-peripheral - with a reply, every write is answered on echoTo with that value instead of a copy', async () => {
    const peripheral = connected(demo({ counterIntervalMs: 60_000, streamReply: '01' }));
    const received = subscribe(peripheral);
    expect(peripheral.write(STREAM, bytes(0x57, 0x01, 0x00), false)).toEqual({ ok: true });
    expect(peripheral.write(STREAM, bytes(0x57, 0x01, 0x01), false)).toEqual({ ok: true });
    await sleep(20);
    expect(received).toEqual([
      { handle: COUNTER, data: [0x01] },
      { handle: COUNTER, data: [0x01] },
    ]);
    expect(peripheral.read(COUNTER)).toEqual({ data: bytes(0x01) });
  });

  it('simulated-peripheral - reset() clears registrations and CCCDs and stops the timers; values stay', async () => {
    const peripheral = connected(demo({ counterIntervalMs: 5 }));
    const received = subscribe(peripheral);
    peripheral.write(STREAM, bytes(9), false);
    peripheral.reset();
    expect(peripheral.state).toBe('disconnected');
    expect(peripheral.isNotifying(COUNTER)).toBe(false);
    peripheral.connect();
    expect(peripheral.readDescriptor(COUNTER_CCCD)).toEqual({ data: bytes(0, 0) });
    expect(peripheral.read(COUNTER)).toEqual({ data: bytes(9) });
    const count = received.length;
    await sleep(25);
    expect(received.length).toBe(count);
  });

  it('simulated-peripheral - reset() and close() clear every timer they started', () => {
    const before = activeTimers();
    const peripheral = connected(demo({ counterIntervalMs: 5, behaviour: { linkLossAfterMs: 1_000 } }));
    subscribe(peripheral);
    peripheral.write(STREAM, bytes(1), false);
    expect(activeTimers()).toBe(before + 3);
    peripheral.reset();
    expect(activeTimers()).toBe(before);
    peripheral.connect();
    subscribe(peripheral);
    expect(activeTimers()).toBe(before + 2);
    peripheral.close();
    expect(activeTimers()).toBe(before);
  });

  it('simulated-peripheral - close() stops everything and drops listeners', async () => {
    const peripheral = connected(demo({ counterIntervalMs: 5, behaviour: { linkLossAfterMs: 10 } }));
    const received = subscribe(peripheral);
    const reasons: number[] = [];
    peripheral.onLinkLoss((reason) => reasons.push(reason));
    peripheral.close();
    peripheral.close();
    await sleep(25);
    expect(received).toEqual([]);
    expect(reasons).toEqual([]);
    expect(peripheral.isAdvertising).toBe(false);
    expect(peripheral.connect()).toEqual({ connected: false, error: 0x85 });
  });
});

describe('simulated-peripheral - database changes', () => {
  it('simulated-peripheral - mutateDatabase() shifts every handle so cached handles break', () => {
    const peripheral = connected();
    const before = peripheral.services;
    const after = peripheral.mutateDatabase();
    expect(peripheral.databaseGeneration).toBe(1);
    expect(after).toBe(peripheral.services);
    expect(after.map((s) => s.handle)).toEqual(before.map((s) => s.handle + 16));
    expect(after[2]!.characteristics.map((c) => c.handle)).toEqual(before[2]!.characteristics.map((c) => c.handle + 16));
    expect(peripheral.read(DEVICE_NAME)).toEqual({ error: 0x01 });
    const name = peripheral.read(DEVICE_NAME + 16);
    expect('data' in name && text(name.data)).toBe('esphome-ble-demo');
    expect(peripheral.read(SECRET + 16)).toEqual({ error: 0x05 });
    expect(after[2]!.characteristics[1]!.echoTo).toBe(STATUS + 16);
  });

  it('simulated-peripheral - after mutateDatabase() subscriptions are gone and echoes follow the new handles', async () => {
    const peripheral = connected(demo({ counterIntervalMs: 60_000 }));
    subscribe(peripheral);
    peripheral.mutateDatabase(4);
    expect(peripheral.isNotifying(COUNTER + 4)).toBe(false);
    const received: number[][] = [];
    peripheral.onNotify((handle, data) => received.push([handle, ...data]));
    peripheral.registerNotify(COUNTER + 4, true);
    peripheral.writeDescriptor(COUNTER_CCCD + 4, bytes(1, 0));
    peripheral.write(STREAM + 4, bytes(7), false);
    await sleep(20);
    expect(received).toEqual([[COUNTER + 4, 7]]);
  });

  it('simulated-peripheral - refuses shifts that leave the handle range', () => {
    const peripheral = make(demoProfile);
    expect(() => peripheral.mutateDatabase(0xffff)).toThrow(InvalidArgumentError);
    expect(() => peripheral.mutateDatabase(0)).toThrow(InvalidArgumentError);
    expect(peripheral.databaseGeneration).toBe(0);
  });
});

describe('simulated-peripheral - seededRandom', () => {
  it('simulated-peripheral - is deterministic and uniform-ish in [0, 1)', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const values = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(values);
    expect(values.every((v) => v >= 0 && v < 1)).toBe(true);
    const mean = values.reduce((s, v) => s + v, 0) / values.length;
    expect(mean).toBeGreaterThan(0.4);
    expect(mean).toBeLessThan(0.6);
  });
});
