import type { Characteristic, Noble, Peripheral } from '@stoprocent/noble';
import { describe, expect, it } from 'vitest';
import { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { parseProfile } from '../../src/fixture-server/profile.js';
import { createNobleBindings } from '../../src/noble/index.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { DEMO_MAC } from '../helpers/fleet.js';
import { discoverOne, fastProfile, NobleClass, nobleRig, settled } from '../helpers/noble.js';

const DEMO_ID = DEMO_MAC.replaceAll(':', '').toLowerCase();
const DEMO_SERVICE = 'a3f1c2e05b7d4e8a9c3b0d1e2f3a4b00';
const demo = (suffix: string): string => `a3f1c2e05b7d4e8a9c3b0d1e2f3a4b${suffix}`;
/** The same UUID as a profile spells it. */
const dashed = (suffix: string): string => `a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b${suffix}`;

const rig = nobleRig();

/** A peripheral that answers each write to its RX characteristic (handle 3) with a notification of TX (5), as a SwitchBot Bot does. */
const REQUEST_REPLY = parseProfile({
  name: 'request-reply',
  peripherals: [
    {
      mac: 'C0:FF:EE:00:00:09',
      addressType: 1,
      advertisingIntervalMs: 100,
      connectable: true,
      advertisements: ['020106'],
      gatt: {
        services: [
          {
            uuid: dashed('10'),
            handle: 1,
            characteristics: [
              { uuid: dashed('11'), handle: 3, properties: ['write'], echoTo: 5, reply: '01' },
              { uuid: dashed('12'), handle: 5, properties: ['notify'], descriptors: [{ uuid: '2902', handle: 6 }] },
            ],
          },
        ],
      },
    },
  ],
});

async function start(perNode: Array<{ slotsBusy?: number; rssiOffset?: number }> = [{}]): Promise<Noble> {
  const profile = await fastProfile('default');
  rig.fleet = await SimulatedFleet.start(perNode.map((o) => ({ profile, ...o })));
  rig.pool = new ProxyPool(rig.fleet.addresses);
  rig.bindings = createNobleBindings(rig.pool, { connect: { maxAttempts: 2, slotWait: 100, notFoundWait: 500 } });
  const noble = new NobleClass(rig.bindings);
  await noble.waitForPoweredOnAsync(3_000);
  return noble;
}

async function discoverDemo(noble: Noble): Promise<Peripheral> {
  const found = discoverOne(noble, (p) => p.id === DEMO_ID);
  await noble.startScanningAsync([], false);
  const peripheral = await found;
  await noble.stopScanningAsync();
  return peripheral;
}

function nextNotification(c: Characteristic, timeoutMs = 2_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no notification')), timeoutMs);
    const onData = (data: Buffer, isNotification: boolean): void => {
      if (!isNotification) return;
      clearTimeout(timer);
      c.removeListener('data', onData);
      resolve(data);
    };
    c.on('data', onData);
  });
}

describe('noble bindings - connections and GATT', () => {
  it('noble - connects, discovers, reads, writes with and without response, and gets notifications from the demo peripheral', async () => {
    const noble = await start();
    const peripheral = await discoverDemo(noble);
    await peripheral.connectAsync();
    expect(peripheral.state).toBe('connected');
    expect(peripheral.mtu).toBe(247);

    const { services, characteristics } = await peripheral.discoverAllServicesAndCharacteristicsAsync();
    expect(services.map((s) => s.uuid)).toEqual(['1800', '1801', DEMO_SERVICE]);
    expect(services[0]!.name).toBe('Generic Access');
    const byUuid = new Map(characteristics.map((c) => [c.uuid, c]));
    expect(byUuid.get('2a00')!.properties).toEqual(['read']);
    expect(byUuid.get('2a05')!.properties).toEqual(['indicate']);
    expect(byUuid.get(demo('02'))!.properties).toEqual(['write']);
    expect(byUuid.get(demo('03'))!.properties).toEqual(['writeWithoutResponse']);
    expect(byUuid.get(demo('04'))!.properties).toEqual(['read', 'notify']);

    expect((await byUuid.get('2a00')!.readAsync()).toString()).toBe('esphome-ble-demo');
    await byUuid.get(demo('02'))!.writeAsync(Buffer.from('hello'), false);
    expect((await byUuid.get(demo('01'))!.readAsync()).toString()).toBe('hello');

    const counter = byUuid.get(demo('04'))!;
    const descriptors = await counter.discoverDescriptorsAsync();
    expect(descriptors.map((d) => d.uuid)).toEqual(['2902', '2901']);
    const cccd = descriptors[0]!;
    expect((await descriptors[1]!.readValueAsync()).toString()).toBe('Counter');
    expect(await cccd.readValueAsync()).toEqual(Buffer.from([0, 0]));

    const handleNotifies: number[] = [];
    peripheral.on('handleNotify', (handle: number) => handleNotifies.push(handle));
    const first = nextNotification(counter);
    await counter.subscribeAsync();
    // The CCCD was written by the subscribe, as noble's HCI layer writes it.
    expect(await cccd.readValueAsync()).toEqual(Buffer.from([1, 0]));
    expect((await first).length).toBe(1);
    expect(handleNotifies).toContain(18);

    // A write without response to the stream characteristic comes back as a counter notification (echoTo 18).
    const echoed = nextNotification(counter);
    await byUuid.get(demo('03'))!.writeAsync(Buffer.from([0xab, 0xcd]), true);
    const echoes = [await echoed];
    while (!echoes.at(-1)!.equals(Buffer.from([0xab, 0xcd]))) echoes.push(await nextNotification(counter));

    await counter.unsubscribeAsync();
    expect(await cccd.readValueAsync()).toEqual(Buffer.from([0, 0]));

    // By handle: value handle 12 is the status characteristic, 19 the counter's CCCD.
    expect((await peripheral.readHandleAsync(12)).toString()).toBe('hello');
    await peripheral.writeHandleAsync(14, Buffer.from('via handle'), false);
    expect((await peripheral.readHandleAsync(12)).toString()).toBe('via handle');
    expect(await peripheral.readHandleAsync(19)).toEqual(Buffer.from([0, 0]));

    const rssi = await peripheral.updateRssiAsync();
    expect(rssi).toBeGreaterThan(-60);
    expect(rssi).toBeLessThan(-44);

    const disconnected = new Promise<unknown>((resolve) => peripheral.once('disconnect', resolve));
    await peripheral.disconnectAsync();
    expect(await disconnected).toBe(0x16);
    expect(peripheral.state).toBe('disconnected');
    expect(rig.pool!.connections()).toEqual([]);
  });

  it('noble - GATT failures reach the callback as typed errors, and requests on a closed link fail instead of hanging', async () => {
    const noble = await start();
    const peripheral = await discoverDemo(noble);
    await peripheral.connectAsync();
    const { characteristics } = await peripheral.discoverSomeServicesAndCharacteristicsAsync([DEMO_SERVICE], [demo('05'), demo('02')]);
    expect(characteristics.map((c) => c.uuid).sort()).toEqual([demo('02'), demo('05')]);
    const secret = characteristics.find((c) => c.uuid === demo('05'))!;
    await expect(secret.readAsync()).rejects.toMatchObject({ code: 'ESPAPI_ERR_GATT', status: 5 });
    await expect(peripheral.readHandleAsync(0x0099)).rejects.toMatchObject({ code: 'ESPAPI_ERR_GATT', status: 1 });

    await peripheral.disconnectAsync();
    await expect(secret.readAsync()).rejects.toMatchObject({ code: 'ESPAPI_ERR_BLE_DISCONNECTED' });
  });

  it('noble - a CCCD written by hand (writeValue) turns notifications on through the proxy; pairing goes through the proxy', async () => {
    const noble = await start();
    const peripheral = await discoverDemo(noble);
    await peripheral.connectAsync();
    const { characteristics } = await peripheral.discoverSomeServicesAndCharacteristicsAsync([DEMO_SERVICE], [demo('04'), demo('06')]);
    const counter = characteristics.find((c) => c.uuid === demo('04'))!;
    const [cccd] = await counter.discoverDescriptorsAsync();
    const notified = nextNotification(counter);
    await cccd!.writeValueAsync(Buffer.from([1, 0]));
    expect((await notified).length).toBe(1);
    await cccd!.writeValueAsync(Buffer.from([0, 0]));
    expect(await cccd!.readValueAsync()).toEqual(Buffer.from([0, 0]));

    const bonded = characteristics.find((c) => c.uuid === demo('06'))!;
    await expect(bonded.readAsync()).rejects.toMatchObject({ code: 'ESPAPI_ERR_GATT', status: 5 });
    await peripheral.pairAsync();
    expect((await bonded.readAsync()).toString()).toBe('bonded');
    await peripheral.disconnectAsync();
  });

  it('noble - a CCCD written by handle (writeHandle) turns notifications on through the proxy and 00 00 turns them off', async () => {
    const noble = await start();
    const peripheral = await discoverDemo(noble);
    await peripheral.connectAsync();
    const counts = new Map<number, number>();
    peripheral.on('handleNotify', (handle: number) => counts.set(handle, (counts.get(handle) ?? 0) + 1));
    // Handle 19 is the counter's CCCD (value handle 18), nothing discovered through noble: handleNotify only.
    await peripheral.writeHandleAsync(19, Buffer.from([1, 0]), false);
    await expect.poll(() => counts.get(18) ?? 0, { timeout: 2_000 }).toBeGreaterThan(0);
    expect(await peripheral.readHandleAsync(19)).toEqual(Buffer.from([1, 0]));
    // Once noble knows the characteristic, a notification also reaches it as data with isNotification, as over HCI.
    const { characteristics } = await peripheral.discoverSomeServicesAndCharacteristicsAsync([DEMO_SERVICE], [demo('04')]);
    expect((await nextNotification(characteristics[0]!)).length).toBe(1);

    await peripheral.writeHandleAsync(19, Buffer.from([0, 0]), false);
    expect(await peripheral.readHandleAsync(19)).toEqual(Buffer.from([0, 0]));
    const stoppedAt = counts.get(18);
    // The counter notifies every 500 ms: two intervals without one show the proxy stopped forwarding.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(counts.get(18)).toBe(stoppedAt);
    await peripheral.disconnectAsync();
  });

  it('noble - an indicate-only characteristic gets 02 00 in its CCCD; broadcast without an SCCD and included services', async () => {
    const noble = await start();
    const peripheral = await discoverDemo(noble);
    await peripheral.connectAsync();
    const { services, characteristics } = await peripheral.discoverSomeServicesAndCharacteristicsAsync(['1801'], ['2a05']);
    const serviceChanged = characteristics[0]!;
    await serviceChanged.subscribeAsync();
    const [cccd] = await serviceChanged.discoverDescriptorsAsync();
    expect(cccd!.uuid).toBe('2902');
    expect(await cccd!.readValueAsync()).toEqual(Buffer.from([2, 0]));
    await serviceChanged.unsubscribeAsync();
    expect(await cccd!.readValueAsync()).toEqual(Buffer.from([0, 0]));
    // noble's broadcast callback receives what its HCI layer emits: here the error (no 0x2903 descriptor).
    const broadcastResult = await new Promise<unknown>((resolve) => serviceChanged.broadcast(true, resolve));
    expect(broadcastResult).toMatchObject({ code: 'ESPAPI_ERR_CHARACTERISTIC_NOT_FOUND' });
    expect(await services[0]!.discoverIncludedServicesAsync([])).toEqual([]);
    await peripheral.disconnectAsync();
  });

  it('noble - a link the peripheral drops reaches noble as disconnect with the proxy’s reason; reconnecting works', async () => {
    const noble = await start();
    const peripheral = await discoverDemo(noble);
    await peripheral.connectAsync();
    const dropped = new Promise<unknown>((resolve) => peripheral.once('disconnect', resolve));
    rig.fleet!.nodes[0]!.bluetooth.dropLink(0xc0ffee000001);
    expect(await dropped).toBe(0x08);
    expect(peripheral.state).toBe('disconnected');
    await expect(peripheral.readHandleAsync(3)).rejects.toMatchObject({ code: 'ESPAPI_ERR_BLE_DISCONNECTED' });
    await peripheral.connectAsync();
    expect((await peripheral.readHandleAsync(3)).toString()).toBe('esphome-ble-demo');
    await peripheral.disconnectAsync();
  });

  it('noble - a connect on a full proxy fails over to another proxy', async () => {
    // The first proxy hears the demo peripheral 20 dB better but has no free slot.
    const noble = await start([{ slotsBusy: 3, rssiOffset: 20 }, {}]);
    const [full, free] = rig.pool!.proxies().map((p) => p.id);
    const peripheral = await discoverDemo(noble);
    await peripheral.connectAsync();
    const [link] = rig.pool!.connections();
    expect(link!.proxy).toBe(free);
    expect(link!.proxy).not.toBe(full);
    expect((await peripheral.readHandleAsync(3)).toString()).toBe('esphome-ble-demo');
    await peripheral.disconnectAsync();
  });

  it('noble - connect errors are typed: a device no proxy can reach, and a connect by id noble never discovered', async () => {
    const noble = await start();
    // noble.connect by id without a scan: the bindings announce the peripheral first, like noble's HCI layer.
    const unknownToNoble = await noble.connectAsync(DEMO_ID);
    expect(unknownToNoble.id).toBe(DEMO_ID);
    expect(unknownToNoble.address).toBe(DEMO_MAC.toLowerCase());
    expect(unknownToNoble.rssi).toBe(127);
    expect(unknownToNoble.state).toBe('connected');
    await unknownToNoble.disconnectAsync();

    // The Tilt beacon is not connectable: the proxy answers 0x85 and the pool gives up after its attempts.
    const tilt = discoverOne(noble, (p) => p.id === '04a3169b095a');
    await noble.startScanningAsync([], false);
    const beacon = await tilt;
    await noble.stopScanningAsync();
    const error = await beacon.connectAsync().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as { code?: string }).code).toMatch(/^ESPAPI_ERR_/);
    expect(beacon.state).toBe('error');
  });

  it('noble - a failed connect by an id noble never discovered rejects with the typed error instead of hanging', async () => {
    const noble = await start();
    // No proxy hears c0ffee0000aa: the pool gives up after 2 × 500 ms (see start()).
    const started = performance.now();
    const outcome = await settled(noble.connectAsync('c0ffee0000aa'), 5_000);
    expect(outcome).toMatchObject({ error: { code: 'ESPAPI_ERR_DEVICE_NOT_FOUND' } });
    expect(performance.now() - started).toBeLessThan(4_000);
    // noble was told about the peripheral first (rssi 127, as for an id its HCI layer never heard), so it could fail it.
    const peripheral = (noble as unknown as { _peripherals: Map<string, Peripheral> })._peripherals.get('c0ffee0000aa');
    expect(peripheral).toMatchObject({ state: 'error', rssi: 127, address: 'c0:ff:ee:00:00:aa' });
    expect(rig.pool!.connections()).toEqual([]);
    // An id that is not 12 hex digits names no device: refused at once, as noble refuses an invalid address.
    expect(await settled(noble.connectAsync('c0ffee'), 1_000)).toMatchObject({ error: { code: 'ESPAPI_ERR_INVALID_ARGUMENT' } });
  });

  it('noble - a connect by id before any proxy is up rejects with ESPAPI_ERR_NO_PROXY instead of hanging', async () => {
    rig.pool = new ProxyPool(['127.0.0.1:1'], { backoff: { initialDelay: 50, maxDelay: 100 } });
    rig.bindings = createNobleBindings(rig.pool);
    const noble = new NobleClass(rig.bindings);
    expect(noble.state).toBe('unknown');
    expect(await settled(noble.connectAsync(DEMO_ID), 2_000)).toMatchObject({ error: { code: 'ESPAPI_ERR_NO_PROXY' } });
  });

  it('noble - an upper-case id stays as noble keeps it: connect, GATT, notifications and disconnect come back under it', async () => {
    const noble = await start();
    const upper = DEMO_ID.toUpperCase();
    const outcome = await settled(noble.connectAsync(upper), 3_000);
    expect(outcome).toMatchObject({ value: { id: upper, address: DEMO_MAC.toLowerCase(), state: 'connected', mtu: 247 } });
    const peripheral = (outcome as { value: Peripheral }).value;
    expect((await peripheral.readHandleAsync(3)).toString()).toBe('esphome-ble-demo');
    const { characteristics } = await peripheral.discoverSomeServicesAndCharacteristicsAsync([DEMO_SERVICE], [demo('04')]);
    const handles: number[] = [];
    peripheral.on('handleNotify', (handle: number) => handles.push(handle));
    const notified = nextNotification(characteristics[0]!);
    await characteristics[0]!.subscribeAsync();
    expect((await notified).length).toBe(1);
    expect(handles).toContain(18);
    // The lower-case spelling is another peripheral to noble: its connect fails at once instead of waiting forever,
    // and its GATT requests and disconnect leave the upper-case peripheral's link alone.
    expect(await settled(noble.connectAsync(DEMO_ID), 1_000)).toMatchObject({ error: { code: 'ESPAPI_ERR_INVALID_ARGUMENT' } });
    const lower = (noble as unknown as { _peripherals: Map<string, Peripheral> })._peripherals.get(DEMO_ID)!;
    await expect(lower.readHandleAsync(3)).rejects.toMatchObject({ code: 'ESPAPI_ERR_BLE_DISCONNECTED' });
    await lower.disconnectAsync();
    expect(peripheral.state).toBe('connected');
    expect((await peripheral.readHandleAsync(3)).toString()).toBe('esphome-ble-demo');
    const disconnected = new Promise<unknown>((resolve) => peripheral.once('disconnect', resolve));
    await peripheral.disconnectAsync();
    expect(await disconnected).toBe(0x16);
    expect(rig.pool!.connections()).toEqual([]);
  });

  it('noble - leaving poweredOn fails a pending connect with a typed error and frees its slot; nothing connects once the proxy is back', async () => {
    const profile = await fastProfile('default');
    // Every slot busy: the connect waits for one, long enough to outlive the outage.
    rig.fleet = await SimulatedFleet.start([{ profile, slotsBusy: 3 }]);
    const port = rig.fleet.nodes[0]!.server.address.port;
    rig.pool = new ProxyPool(rig.fleet.addresses, { backoff: { initialDelay: 50, maxDelay: 100 } });
    rig.bindings = createNobleBindings(rig.pool, { connect: { maxAttempts: 20, slotWait: 3_000, notFoundWait: 3_000 } });
    const noble = new NobleClass(rig.bindings);
    await noble.waitForPoweredOnAsync(3_000);
    const events: string[] = [];
    rig.bindings.on('connect', (id: string, error: unknown) => events.push(`connect ${id} ${error ? 'error' : 'ok'}`));
    rig.bindings.on('stateChange', (state: string) => events.push(state));
    const connecting = settled(noble.connectAsync(DEMO_ID), 3_000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await rig.fleet.close();
    expect(await connecting).toMatchObject({ error: { code: 'ESPAPI_ERR_NO_PROXY', message: expect.stringContaining('poweredOff') } });
    expect(events).toEqual([`connect ${DEMO_ID} error`, 'poweredOff']);

    // The proxy comes back with free slots, the demo peripheral advertising: the abandoned connect must not
    // come up behind noble's back (the pool would take a slot and open a link within a report interval).
    const opened: string[] = [];
    const watch = new AbortController();
    const watching = (async () => {
      for await (const status of rig.pool!.status({ signal: watch.signal }))
        if (status.type === 'connectionOpened') opened.push(status.mac);
    })().catch(() => {});
    rig.fleet = await SimulatedFleet.start([{ profile, port }]);
    await noble.waitForPoweredOnAsync(3_000);
    await new Promise((resolve) => setTimeout(resolve, 800));
    watch.abort();
    await watching;
    expect(opened).toEqual([]);
    expect(events).toEqual([`connect ${DEMO_ID} error`, 'poweredOff', 'poweredOn']);
    expect(rig.pool.connections()).toEqual([]);
    expect(rig.pool.diagnostics()[0]!.slots).toMatchObject({ leases: 0, free: 3 });
  });

  it('noble - cancelConnect abandons a pending connect without a connect event and frees the slot', async () => {
    const noble = await start();
    const peripheral = await discoverDemo(noble);
    const events: unknown[] = [];
    peripheral.on('connect', (e: unknown) => events.push(e));
    peripheral.connect();
    peripheral.cancelConnect();
    await new Promise((r) => setTimeout(r, 200));
    expect(events.map((e) => (e as Error).message)).toEqual(['connection canceled!']);
    expect(rig.pool!.connections()).toEqual([]);
    // And a later connect works.
    await peripheral.connectAsync();
    await peripheral.disconnectAsync();

    // A disconnect while connecting fails the connect and still answers the disconnect.
    const connecting = peripheral.connectAsync();
    const disconnecting = peripheral.disconnectAsync();
    await expect(connecting).rejects.toMatchObject({ code: expect.stringMatching(/^ESPAPI_ERR_/) });
    await disconnecting;
    expect(peripheral.state).toBe('disconnected');
    await new Promise((r) => setTimeout(r, 100));
    expect(rig.pool!.connections()).toEqual([]);
  });

  it('noble - a notification that comes in one read with the write response reaches noble after the write callback, as over HCI', async () => {
    rig.fleet = await SimulatedFleet.start([{ profile: REQUEST_REPLY }]);
    rig.pool = new ProxyPool(rig.fleet.addresses);
    rig.bindings = createNobleBindings(rig.pool);
    const noble = new NobleClass(rig.bindings);
    await noble.waitForPoweredOnAsync(3_000);
    const found = discoverOne(noble, (p) => p.id === 'c0ffee000009');
    await noble.startScanningAsync([], false);
    const peripheral = await found;
    await noble.stopScanningAsync();
    await peripheral.connectAsync();
    const { characteristics } = await peripheral.discoverAllServicesAndCharacteristicsAsync();
    const [rx, tx] = [demo('11'), demo('12')].map((uuid) => characteristics.find((c) => c.uuid === uuid)!);
    await tx!.subscribeAsync();
    // As on a loaded host: the event loop stalls just after the proxy answered the write, so the reply it notifies
    // 5 ms later is read together with the write response.
    const simulated = rig.fleet.nodes[0]!.bluetooth.peripherals[0]!;
    const write = simulated.write.bind(simulated);
    simulated.write = (handle, data, withResponse) => {
      const result = write(handle, data, withResponse);
      setImmediate(() => {
        const until = Date.now() + 30;
        while (Date.now() < until);
      });
      return result;
    };
    for (const command of ['57', '58']) {
      await rx!.writeAsync(Buffer.from(command, 'hex'), false);
      // Listening only once the write resolved, as node-switchbot does: the reply must still be ahead.
      expect((await nextNotification(tx!)).toString('hex')).toBe('01');
    }
    await peripheral.disconnectAsync();
  });
});
