import type { MessageType, PartialMessage } from '@protobuf-ts/runtime';
import { afterEach, describe, expect, it } from 'vitest';
import { parseMac } from '../../src/bluetooth/address.js';
import { SUBSCRIPTION_PROBE_ADDRESS } from '../../src/bluetooth/proxy-client.js';
import { BleConnectError, InvalidArgumentError, OutOfSlotsError } from '../../src/errors.js';
import { encodePlaintextFrame } from '../../src/frame/plaintext.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceClearCacheResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothScannerMode,
  BluetoothScannerSetModeRequest,
  BluetoothScannerStateResponse,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
  UnsubscribeBluetoothLEAdvertisementsRequest,
} from '../../src/gen/api_pb.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { DEVICE_OPS_BUSY_ERROR, MAX_PENDING_DEVICE_OPS } from '../../src/relay/device-ops.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import type { RelayStatus } from '../../src/relay/relay-status.js';
import { NOT_PERMITTED_ERROR, RELAY_OUT_OF_SLOTS_ERROR } from '../../src/relay/request-guard.js';
import { profileWithDevices } from '../helpers/fleet.js';
import {
  CLONE,
  CLONE2,
  type Closers,
  connectRequest,
  DEMO,
  HOME_ASSISTANT,
  OTHER_HOST,
  ourClient,
  rawClient,
  recordUpstream,
  STEP_MS,
  settle,
  startRelay,
  startUpstream,
  until,
} from '../helpers/relay.js';

const CLONE3 = 0xc0ffee000102;

const closers: Closers = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** bleak-esphome's check on every slot report; when it fails it warns and stops reconciling its links. */
const addsUp = (m: { free: number; limit: number; allocated: readonly number[] }): boolean => m.allocated.length === m.limit - m.free;
/** habluetooth's reading: a report with limit 0 is "not reported"; with limit > 0 and free 0 the proxy is full. */
const readsFull = (m: { free: number; limit: number }): boolean => m.limit > 0 && m.free === 0;

describe('relay policy: slot quota', () => {
  it('relay policy - the default quota: on three slots a busy client holds two, and Home Assistant connects to the third', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(3), slots: 3 });
    const { relay, port } = await startRelay(closers, node);
    const backend = await ourClient(closers, port);
    const ha = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    expect(backend.proxy.slots).toEqual({ free: 2, limit: 2, allocated: [] });

    const links = [
      await backend.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS }),
      await backend.proxy.connect(CLONE, { addressType: 1, timeout: STEP_MS }),
    ];
    // At its quota the backend is shown a full proxy of its own two slots, and a third connect is refused as out of slots.
    await until(() => backend.proxy.slots?.free === 0 && backend.proxy.slots.allocated.length === 2, 'the backend to see its quota');
    expect(backend.proxy.slots).toEqual({ free: 0, limit: 2, allocated: [DEMO, CLONE] });
    const requests = node.bluetooth.connectRequests;
    const refused = await backend.proxy.connect(CLONE2, { addressType: 1, timeout: STEP_MS }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BleConnectError);
    expect(refused).toMatchObject({ reason: RELAY_OUT_OF_SLOTS_ERROR, failureClass: 'outOfSlots' });
    expect(node.bluetooth.connectRequests).toBe(requests);
    expect(node.bluetooth.free).toBe(1);

    // Home Assistant sees the one slot left and takes it.
    await ha.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1 && m.limit === 1);
    const mark = ha.received.length;
    ha.send(BluetoothDeviceRequest, connectRequest(CLONE3));
    expect(await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE3, mark)).toMatchObject({ connected: true });
    expect(relay.snapshot().proxies[0]?.clients.map((c) => c.slots.length)).toEqual([2, 1]);
    expect([...backend.proxy.slots!.allocated].sort()).toEqual([DEMO, CLONE].sort());
    await Promise.all(links.map((link) => link.disconnect({ timeout: STEP_MS })));
  });

  it('relay policy - the quota counts per client address over all its sessions: a second session from one host gets nothing more, Home Assistant still connects', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(3), slots: 3 });
    const { relay, port } = await startRelay(closers, node);
    const marker = parseMac(node.bluetooth.bluetoothMac);
    const first = await rawClient(closers, port);
    const second = await rawClient(closers, port);
    const ha = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    for (const address of [DEMO, CLONE]) {
      first.send(BluetoothDeviceRequest, connectRequest(address));
      await first.next(BluetoothDeviceConnectionResponse, (m) => m.address === address && m.connected);
    }
    // The host holds its two; its other session is shown a full proxy and its connect is refused before the proxy.
    await second.next(BluetoothConnectionsFreeResponse, (m) => m.free === 0 && m.limit === 1);
    const requests = node.bluetooth.connectRequests;
    let mark = second.received.length;
    second.send(BluetoothDeviceRequest, connectRequest(CLONE2));
    expect(await second.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE2, mark)).toMatchObject({
      connected: false,
      error: RELAY_OUT_OF_SLOTS_ERROR,
    });
    mark = second.received.length;
    second.send(SubscribeBluetoothConnectionsFreeRequest, {});
    expect(await second.next(BluetoothConnectionsFreeResponse, () => true, mark)).toEqual(
      BluetoothConnectionsFreeResponse.create({ free: 0, limit: 1, allocated: [marker] }),
    );
    expect(node.bluetooth.connectRequests).toBe(requests);

    // Home Assistant, on another host, takes the slot the quota kept free.
    mark = ha.received.length;
    ha.send(BluetoothDeviceRequest, connectRequest(CLONE3));
    expect(await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE3, mark)).toMatchObject({ connected: true });
    expect(relay.snapshot().proxies[0]?.clients.map((c) => c.slots.length)).toEqual([2, 0, 1]);

    // One link of the host ends: its other session may take one now.
    mark = second.received.length;
    const firstMark = first.received.length;
    first.send(BluetoothDeviceRequest, { address: CLONE, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await second.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1 && m.limit === 1, mark);
    mark = second.received.length;
    second.send(BluetoothDeviceRequest, connectRequest(CLONE2));
    expect(await second.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE2, mark)).toMatchObject({ connected: true });
    expect(await first.next(BluetoothConnectionsFreeResponse, (m) => m.free === 0 && m.limit === 1, firstMark)).toEqual(
      BluetoothConnectionsFreeResponse.create({ free: 0, limit: 1, allocated: [DEMO] }),
    );
  });

  it('relay policy - links being released still count: dropping its links and connecting others in one write buys a client nothing', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(3), slots: 3 });
    const { port } = await startRelay(closers, node);
    const client = await rawClient(closers, port);
    for (const address of [DEMO, CLONE]) {
      client.send(BluetoothDeviceRequest, connectRequest(address));
      await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === address && m.connected);
    }
    // Unsubscribing drops its links (as on the firmware); until the proxy has freed them they are still its slots.
    const mark = client.received.length;
    const frame = <T extends object>(type: MessageType<T>, message: PartialMessage<T>): Uint8Array =>
      encodePlaintextFrame(Number(type.options.id), type.toBinary(type.create(message)));
    client.socket.write(
      Buffer.concat([
        frame(UnsubscribeBluetoothLEAdvertisementsRequest, {}),
        frame(SubscribeBluetoothLEAdvertisementsRequest, { flags: 1 }),
        frame(BluetoothDeviceRequest, connectRequest(CLONE2)),
      ]),
    );
    expect(await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE2, mark)).toMatchObject({
      connected: false,
      error: RELAY_OUT_OF_SLOTS_ERROR,
    });
    // Once they are free it may connect again.
    await until(() => node.bluetooth.allocated.length === 0, 'the old links freed');
    const again = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(CLONE2));
    expect(await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE2, again)).toMatchObject({ connected: true });
  });

  it('relay policy - the default binds a client alone too (two of three slots); slotsFor gives one address another quota', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(3), slots: 3 });
    const plain = await startRelay(closers, node);
    const alone = await rawClient(closers, plain.port, { localAddress: HOME_ASSISTANT });
    expect(alone.all(BluetoothConnectionsFreeResponse).at(-1)).toEqual(BluetoothConnectionsFreeResponse.create({ free: 2, limit: 2 }));
    alone.close();
    await plain.relay.close();

    const { port } = await startRelay(closers, node, { slotsFor: [{ clients: [HOME_ASSISTANT], slots: Number.POSITIVE_INFINITY }] });
    const ha = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    const backend = await rawClient(closers, port);
    expect(ha.all(BluetoothConnectionsFreeResponse).at(-1)).toEqual(BluetoothConnectionsFreeResponse.create({ free: 3, limit: 3 }));
    expect(backend.all(BluetoothConnectionsFreeResponse).at(-1)).toEqual(BluetoothConnectionsFreeResponse.create({ free: 2, limit: 2 }));
    for (const address of [DEMO, CLONE, CLONE2]) {
      ha.send(BluetoothDeviceRequest, connectRequest(address));
      await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === address && m.connected);
    }
    await ha.next(BluetoothConnectionsFreeResponse, (m) => m.free === 0 && m.limit === 3 && m.allocated.length === 3);
  });

  it('relay policy - without a quota (slotsPerClient: Infinity) one client takes every slot and Home Assistant is refused', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(3), slots: 3 });
    const { port } = await startRelay(closers, node, { slotsPerClient: Number.POSITIVE_INFINITY });
    const backend = await ourClient(closers, port);
    const ha = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    const links = [];
    for (const address of [DEMO, CLONE, CLONE2]) links.push(await backend.proxy.connect(address, { addressType: 1, timeout: STEP_MS }));
    const mark = ha.received.length;
    ha.send(BluetoothDeviceRequest, connectRequest(CLONE3));
    expect(await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE3, mark)).toMatchObject({
      connected: false,
      error: RELAY_OUT_OF_SLOTS_ERROR,
    });
    await Promise.all(links.map((link) => link.disconnect({ timeout: STEP_MS })));
  });

  it('relay policy - an explicit slotsPerClient also bounds the in-process pool, which counts as one client', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3 });
    const { relay, port } = await startRelay(closers, node, { slotsPerClient: 1 });
    const pool = new ProxyPool();
    closers.push(() => pool.close());
    pool.addSession(relay.proxies[0]!);
    const client = await ourClient(closers, port);
    const device = await pool.establishConnection('C0:FF:EE:00:00:01', { timeout: STEP_MS, notFoundWait: 1500 });
    const second = await pool
      .establishConnection('C0:FF:EE:00:01:00', { timeout: STEP_MS, notFoundWait: 1500, maxAttempts: 1 })
      .catch((e: unknown) => e);
    expect(second).toBeInstanceOf(OutOfSlotsError);
    // A downstream client keeps its own quota of one.
    await until(() => client.proxy.slots?.free === 1, 'the client to see its slot');
    const link = await client.proxy.connect(CLONE, { addressType: 1, timeout: STEP_MS });
    await Promise.all([device.disconnect({ timeout: STEP_MS }), link.disconnect({ timeout: STEP_MS })]);
  });

  it('relay policy - slotsPerClient must be a whole number of slots, at least one', () => {
    for (const slotsPerClient of [0, -1, 1.5, Number.NaN]) {
      expect(() => new RelayServer({ proxies: [{ host: '127.0.0.1' }], slotsPerClient })).toThrow(InvalidArgumentError);
    }
  });
});

describe('relay policy: what a client may change for the others', () => {
  it('relay policy - scanner mode: a client the policy leaves out hears the unchanged state, and nothing reaches the proxy', async () => {
    const node = await startUpstream(closers);
    const { port } = await startRelay(closers, node, { clientPolicy: { scannerMode: ['192.168.0.0/16', '::1'] } });
    const client = await rawClient(closers, port);
    const first = await client.next(BluetoothScannerStateResponse);
    const upstream = recordUpstream(node);
    const mark = client.received.length;
    const other = first.mode === BluetoothScannerMode.ACTIVE ? BluetoothScannerMode.PASSIVE : BluetoothScannerMode.ACTIVE;
    client.send(BluetoothScannerSetModeRequest, { mode: other });
    expect(await client.next(BluetoothScannerStateResponse, () => true, mark)).toEqual(first);
    await settle(100);
    expect(upstream.filter((r) => r.type === 127)).toEqual([]);
    expect(client.all(BluetoothScannerStateResponse).every((m) => m.mode === first.mode)).toBe(true);
  });

  it('relay policy - scanner mode: an allowed client switches it, and every subscriber sees the new state', async () => {
    const node = await startUpstream(closers);
    const { port } = await startRelay(closers, node, { clientPolicy: { scannerMode: (client) => client.address === '127.0.0.1' } });
    const a = await rawClient(closers, port);
    const b = await rawClient(closers, port);
    const first = await b.next(BluetoothScannerStateResponse);
    const other = first.mode === BluetoothScannerMode.ACTIVE ? BluetoothScannerMode.PASSIVE : BluetoothScannerMode.ACTIVE;
    a.send(BluetoothScannerSetModeRequest, { mode: other });
    await b.next(BluetoothScannerStateResponse, (m) => m.mode === other);
  });

  it('relay policy - unpair and clear-cache of a device nobody holds: refused by policy with ESP_ERR_NOT_SUPPORTED, nothing reaches the proxy', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const { port } = await startRelay(closers, node, { clientPolicy: { unpair: [], clearCache: ['10.0.0.0/8'] } });
    const client = await rawClient(closers, port);
    const upstream = recordUpstream(node);
    const mark = client.received.length;
    client.send(BluetoothDeviceRequest, { address: CLONE, requestType: BluetoothDeviceRequestType.UNPAIR });
    client.send(BluetoothDeviceRequest, { address: CLONE, requestType: BluetoothDeviceRequestType.CLEAR_CACHE });
    expect(await client.next(BluetoothDevicePairingResponse, () => true, mark)).toEqual(
      BluetoothDevicePairingResponse.create({ address: CLONE, paired: false, error: NOT_PERMITTED_ERROR }),
    );
    expect(await client.next(BluetoothDeviceClearCacheResponse, () => true, mark)).toEqual(
      BluetoothDeviceClearCacheResponse.create({ address: CLONE, success: false, error: NOT_PERMITTED_ERROR }),
    );
    await settle(50);
    expect(upstream.filter((r) => r.type === 68)).toEqual([]);
  });

  it("relay policy - the bond and the GATT cache are the proxy's: a restricted client cannot unpair or clear them by connecting first", async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const { port } = await startRelay(closers, node, { clientPolicy: { unpair: [HOME_ASSISTANT], clearCache: [HOME_ASSISTANT] } });
    const client = await rawClient(closers, port);
    const upstream = recordUpstream(node);
    const refused = async (address: number, mark: number): Promise<void> => {
      expect(await client.next(BluetoothDevicePairingResponse, (m) => m.address === address, mark)).toEqual(
        BluetoothDevicePairingResponse.create({ address, paired: false, error: NOT_PERMITTED_ERROR }),
      );
      expect(await client.next(BluetoothDeviceClearCacheResponse, (m) => m.address === address, mark)).toEqual(
        BluetoothDeviceClearCacheResponse.create({ address, success: false, error: NOT_PERMITTED_ERROR }),
      );
    };
    // Connect and unpair in one write: the reservation makes the device the client's own before the proxy answers.
    let mark = client.received.length;
    const frames = [
      encodePlaintextFrame(68, BluetoothDeviceRequest.toBinary(BluetoothDeviceRequest.create(connectRequest(DEMO)))),
      ...[BluetoothDeviceRequestType.UNPAIR, BluetoothDeviceRequestType.CLEAR_CACHE].map((requestType) =>
        encodePlaintextFrame(68, BluetoothDeviceRequest.toBinary(BluetoothDeviceRequest.create({ address: DEMO, requestType }))),
      ),
    ];
    client.socket.write(Buffer.concat(frames));
    await refused(DEMO, mark);
    // And once the link is up.
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, mark);
    mark = client.received.length;
    client.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.UNPAIR });
    client.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.CLEAR_CACHE });
    await refused(DEMO, mark);
    await settle(50);
    const deviceOps = upstream.filter((r) => r.type === 68 && [3, 6].includes(r.message?.requestType as number));
    expect(deviceOps).toEqual([]);

    // An allowed client's requests for its own link go to the proxy and are answered to it.
    const ha = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    ha.send(BluetoothDeviceRequest, connectRequest(CLONE));
    await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);
    mark = ha.received.length;
    ha.send(BluetoothDeviceRequest, { address: CLONE, requestType: BluetoothDeviceRequestType.UNPAIR });
    ha.send(BluetoothDeviceRequest, { address: CLONE, requestType: BluetoothDeviceRequestType.CLEAR_CACHE });
    expect(await ha.next(BluetoothDevicePairingResponse, () => true, mark)).toMatchObject({ address: CLONE, paired: true });
    expect(await ha.next(BluetoothDeviceClearCacheResponse, () => true, mark)).toMatchObject({ address: CLONE, success: true });
  });

  it('relay policy - a flood of clear-cache / unpair requests: at most 16 wait for the proxy per client, the rest are refused at once with ESP_ERR_NO_MEM', async () => {
    const node = await startUpstream(closers);
    const { port } = await startRelay(closers, node);
    const client = await rawClient(closers, port);
    const other = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    const upstream = recordUpstream(node);
    const count = 2_000;
    const requests = Array.from({ length: count }, (_, i) =>
      encodePlaintextFrame(
        68,
        BluetoothDeviceRequest.toBinary(
          BluetoothDeviceRequest.create({
            address: CLONE,
            requestType: i % 2 === 0 ? BluetoothDeviceRequestType.CLEAR_CACHE : BluetoothDeviceRequestType.UNPAIR,
          }),
        ),
      ),
    );
    client.socket.write(Buffer.concat(requests));
    const answers = (): number => client.all(BluetoothDeviceClearCacheResponse).length + client.all(BluetoothDevicePairingResponse).length;
    await until(() => answers() === count, 'an answer to every request', 10_000);
    const reached = upstream.filter((r) => r.type === 68).length;
    const refused = [
      ...client.all(BluetoothDeviceClearCacheResponse).filter((m) => !m.success),
      ...client.all(BluetoothDevicePairingResponse).filter((m) => !m.paired),
    ];
    // Each socket read is handled at once, and the proxy's answers make room only between reads.
    expect(reached).toBeGreaterThanOrEqual(MAX_PENDING_DEVICE_OPS);
    expect(reached).toBeLessThan(count / 4);
    expect(refused.length).toBe(count - reached);
    expect(refused.every((m) => m.error === DEVICE_OPS_BUSY_ERROR && m.address === CLONE)).toBe(true);
    // Another client is not held up by it and has its own allowance.
    const mark = other.received.length;
    other.send(BluetoothDeviceRequest, { address: CLONE, requestType: BluetoothDeviceRequestType.CLEAR_CACHE });
    expect(await other.next(BluetoothDeviceClearCacheResponse, () => true, mark)).toMatchObject({ address: CLONE, success: true });
    // Once answered the client has room again.
    const again = client.received.length;
    client.send(BluetoothDeviceRequest, { address: CLONE, requestType: BluetoothDeviceRequestType.CLEAR_CACHE });
    expect(await client.next(BluetoothDeviceClearCacheResponse, () => true, again)).toMatchObject({ success: true });
  });

  it("relay policy - the clear-cache / unpair cap counts per client address over its sessions, and a closed session's requests stop counting", async () => {
    const node = await startUpstream(closers);
    const { port } = await startRelay(closers, node);
    const first = await rawClient(closers, port);
    const second = await rawClient(closers, port);
    const other = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    const upstream = recordUpstream(node);
    const clears = (): number =>
      upstream.filter((r) => r.type === 68 && r.message?.requestType === BluetoothDeviceRequestType.CLEAR_CACHE).length;
    const clear = (client: typeof first): void =>
      client.send(BluetoothDeviceRequest, { address: CLONE, requestType: BluetoothDeviceRequestType.CLEAR_CACHE });
    // The proxy answers late: every request sent waits for its answer meanwhile.
    node.server.faults = { replyDelayMs: 1_500 };
    for (let i = 0; i < MAX_PENDING_DEVICE_OPS; i++) clear(first);
    await until(() => clears() === MAX_PENDING_DEVICE_OPS, "the first session's requests upstream");
    // Another session from the same address shares the cap: refused at once, nothing more upstream.
    let mark = second.received.length;
    clear(second);
    expect(await second.next(BluetoothDeviceClearCacheResponse, () => true, mark)).toMatchObject({
      success: false,
      error: DEVICE_OPS_BUSY_ERROR,
    });
    expect(clears()).toBe(MAX_PENDING_DEVICE_OPS);
    // Another address has its own.
    clear(other);
    await until(() => clears() === MAX_PENDING_DEVICE_OPS + 1, "the other address's request upstream");
    // The first session goes: its requests still wait for their answers, but count for nobody.
    first.close();
    await settle(100);
    mark = second.received.length;
    clear(second);
    await until(() => clears() === MAX_PENDING_DEVICE_OPS + 2, "the second session's request upstream");
    node.server.faults = {};
    expect(await second.next(BluetoothDeviceClearCacheResponse, () => true, mark)).toMatchObject({ success: true });
  });

  it('relay policy - a policy predicate that throws denies the client, is reported as an event, and the relay serves on', async () => {
    const node = await startUpstream(closers);
    const { relay, port } = await startRelay(closers, node, {
      clientPolicy: {
        scannerMode: (client) => {
          if (client.address === '127.0.0.1') throw new Error('directory lookup failed');
          return true;
        },
      },
    });
    const events: RelayStatus[] = [];
    const watching = (async () => {
      for await (const event of relay.status()) if (event.type === 'clientPolicyError') events.push(event);
    })();
    const client = await rawClient(closers, port);
    const first = await client.next(BluetoothScannerStateResponse);
    const upstream = recordUpstream(node);
    const mark = client.received.length;
    const mode = first.mode === BluetoothScannerMode.ACTIVE ? BluetoothScannerMode.PASSIVE : BluetoothScannerMode.ACTIVE;
    client.send(BluetoothScannerSetModeRequest, { mode });
    expect(await client.next(BluetoothScannerStateResponse, () => true, mark)).toEqual(first);
    await settle(50);
    expect(upstream.filter((r) => r.type === 127)).toEqual([]);
    await until(() => events.length > 0, 'a clientPolicyError event');
    expect(events[0]).toMatchObject({
      type: 'clientPolicyError',
      rule: 'scannerMode',
      remote: '127.0.0.1',
      error: 'directory lookup failed',
    });
    // Another client, for which the predicate answers, is allowed.
    const other = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    other.send(BluetoothScannerSetModeRequest, { mode: BluetoothScannerMode.ACTIVE });
    await settle(50);
    expect(upstream.filter((r) => r.type === 127).length).toBe(1);
    await relay.close();
    await watching;
  });

  it('relay policy - a rule entry that is no address or block is refused when the relay is built', () => {
    for (const entry of ['kitchen.local', '10.0.0.0/33', '1.2.3.4/', '::1/129', '1.2.3.4/8/1']) {
      expect(() => new RelayServer({ proxies: [{ host: '127.0.0.1' }], clientPolicy: { unpair: [entry] } })).toThrow(InvalidArgumentError);
    }
  });
});

describe('relay policy: the slot view when the others hold every slot', () => {
  it('relay policy - a client with nothing, when nothing is left, reads one slot taken by the proxy itself: full, and it adds up', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 2 });
    const { port } = await startRelay(closers, node);
    const marker = parseMac(node.bluetooth.bluetoothMac);
    const a = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    const b = await rawClient(closers, port, { localAddress: OTHER_HOST });
    const late = await ourClient(closers, port);
    const ha = await rawClient(closers, port);
    a.send(BluetoothDeviceRequest, connectRequest(DEMO));
    b.send(BluetoothDeviceRequest, connectRequest(CLONE));
    await a.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
    await b.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);

    const full = BluetoothConnectionsFreeResponse.create({ free: 0, limit: 1, allocated: [marker] });
    const mark = ha.received.length;
    ha.send(SubscribeBluetoothConnectionsFreeRequest, {});
    const view = await ha.next(BluetoothConnectionsFreeResponse, () => true, mark);
    expect(view).toEqual(full);
    expect(addsUp(view)).toBe(true);
    expect(readsFull(view)).toBe(true);
    // Our client reads the same report without the marker, and without the slot it stands for: full, and it adds up.
    await until(() => late.proxy.slots?.limit === 0, 'our client to see the same view');
    expect(late.proxy.slots).toEqual({ free: 0, limit: 0, allocated: [] });
    // Every report any client got adds up, and none reads "not reported" while the upstream is there.
    for (const client of [a, b, ha]) {
      const reports = client.all(BluetoothConnectionsFreeResponse);
      expect(reports.filter((m) => !addsUp(m))).toEqual([]);
      expect(reports.filter((m) => m.limit === 0)).toEqual([]);
    }

    // A reaper that releases the "orphan" reaches nothing: the firmware's no-slot answer, and the links stay.
    const upstream = recordUpstream(node);
    const reap = ha.received.length;
    ha.send(BluetoothDeviceRequest, { address: marker, requestType: BluetoothDeviceRequestType.DISCONNECT });
    expect(await ha.next(BluetoothDeviceConnectionResponse, () => true, reap)).toMatchObject({
      address: marker,
      connected: false,
      error: 0,
    });
    ha.send(BluetoothDeviceRequest, connectRequest(CLONE2));
    expect(await ha.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE2, reap)).toMatchObject({
      connected: false,
      error: RELAY_OUT_OF_SLOTS_ERROR,
    });
    await settle(50);
    expect(upstream.filter((r) => r.type === 68)).toEqual([]);
    expect(node.bluetooth.allocated.sort()).toEqual([DEMO, CLONE].sort());

    // A slot comes back: the plain view again.
    const freed = ha.received.length;
    a.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    expect(await ha.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1, freed)).toEqual(
      BluetoothConnectionsFreeResponse.create({ free: 1, limit: 1, allocated: [] }),
    );
  });

  it("relay policy - the full view's marker, the proxy's own Bluetooth address, can never be a link: connects to it are refused", async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 2 });
    const { relay, port } = await startRelay(closers, node);
    const marker = parseMac(node.bluetooth.bluetoothMac);
    const upstream = recordUpstream(node);
    const client = await rawClient(closers, port);
    client.send(BluetoothDeviceRequest, connectRequest(marker));
    expect(await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === marker)).toEqual(
      BluetoothDeviceConnectionResponse.create({ address: marker, connected: false, mtu: 0, error: 0 }),
    );
    // A connect of the in-process side (an in-process pool's, over the shared session) is refused too.
    const local = await relay.proxies[0]!.bluetooth!.connect(marker, { addressType: 0, timeout: STEP_MS }).catch((e: unknown) => e);
    expect(local).toBeInstanceOf(BleConnectError);
    expect(local).toMatchObject({ reasonName: 'PROXY_OWN_ADDRESS' });
    await settle(50);
    expect(upstream.filter((r) => r.type === 68)).toEqual([]);
    expect(relay.snapshot().proxies[0]?.slots).toMatchObject({ free: 2, local: [] });
  });

  it('relay policy - a connect without an address type is refused by the relay (the firmware would keep a slot for it): no orphaned link', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 2 });
    const { relay, port } = await startRelay(closers, node);
    const upstream = recordUpstream(node);
    const client = await rawClient(closers, port);
    const connect = (hasAddressType: boolean): Uint8Array =>
      encodePlaintextFrame(
        68,
        BluetoothDeviceRequest.toBinary(BluetoothDeviceRequest.create({ ...connectRequest(CLONE), hasAddressType })),
      );
    // Without, then with: the first one's refusal must not end the relay's account of the second one's link.
    client.socket.write(Buffer.concat([connect(false), connect(true)]));
    expect(await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE)).toEqual(
      BluetoothDeviceConnectionResponse.create({ address: CLONE, connected: false, mtu: 0, error: 0 }),
    );
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);
    expect(upstream.filter((r) => r.type === 68).map((r) => r.message?.hasAddressType)).toEqual([true]);
    expect(relay.snapshot().proxies[0]?.clients[0]?.slots).toEqual(['C0:FF:EE:00:01:00']);
    // The link is the client's: when it leaves, the relay frees it upstream.
    client.close();
    await until(() => node.bluetooth.allocated.length === 0, 'the link freed');
  });

  it("relay policy - 0 (the firmware's empty-slot mark, never in a slot report) and FF:FF:FF:FF:FF:FF (the subscriber probe's) can never be a link", async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 2 });
    const { relay, port } = await startRelay(closers, node);
    const upstream = recordUpstream(node);
    const client = await rawClient(closers, port);
    for (const [address, reasonName] of [
      [0, 'EMPTY_SLOT_ADDRESS'],
      [SUBSCRIPTION_PROBE_ADDRESS, 'PROBE_ADDRESS'],
    ] as const) {
      client.send(BluetoothDeviceRequest, connectRequest(address));
      expect(await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === address)).toEqual(
        BluetoothDeviceConnectionResponse.create({ address, connected: false, mtu: 0, error: 0 }),
      );
      const local = await relay.proxies[0]!.bluetooth!.connect(address, { addressType: 0, timeout: STEP_MS }).catch((e: unknown) => e);
      expect(local).toMatchObject({ reasonName });
    }
    await settle(50);
    expect(upstream.filter((r) => r.type === 68)).toEqual([]);
    expect(node.bluetooth.allocated).toEqual([]);
  });

  it('relay policy - in front of firmware without `allocated` lists (2024.10) the full view lists nothing, as such firmware', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 2, firmware: '2024.10' });
    const { port } = await startRelay(closers, node);
    const a = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    const b = await rawClient(closers, port, { localAddress: OTHER_HOST });
    const c = await rawClient(closers, port);
    a.send(BluetoothDeviceRequest, connectRequest(DEMO));
    b.send(BluetoothDeviceRequest, connectRequest(CLONE));
    await a.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
    await b.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);
    await c.next(BluetoothConnectionsFreeResponse, (m) => m.free === 0);
    const mark = c.received.length;
    c.send(SubscribeBluetoothConnectionsFreeRequest, {});
    expect(await c.next(BluetoothConnectionsFreeResponse, () => true, mark)).toEqual(
      BluetoothConnectionsFreeResponse.create({ free: 0, limit: 1, allocated: [] }),
    );
  });
});
