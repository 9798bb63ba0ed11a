import { connect as netConnect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { RAW_ADVERTISEMENTS_MESSAGE_ID } from '../../src/bluetooth/raw-advertisements.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { BleConnectError } from '../../src/errors.js';
import { startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import {
  AuthenticationResponse,
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceClearCacheResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothGATTErrorResponse,
  BluetoothGATTGetServicesDoneResponse,
  BluetoothGATTGetServicesRequest,
  BluetoothGATTGetServicesResponse,
  BluetoothGATTReadRequest,
  BluetoothLEAdvertisementResponse,
  BluetoothLERawAdvertisementsResponse,
  BluetoothScannerSetModeRequest,
  BluetoothScannerStateResponse,
  BluetoothSetConnectionParamsRequest,
  BluetoothSetConnectionParamsResponse,
  DeviceInfoRequest,
  DeviceInfoResponse,
  DisconnectRequest,
  HelloResponse,
  NoiseEncryptionSetKeyRequest,
  NoiseEncryptionSetKeyResponse,
  PingRequest,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
} from '../../src/gen/api_pb.js';
import { CLIENT_AD_BACKLOG_LIMIT_BYTES, RELAY_OUT_OF_SLOTS_ERROR, UPSTREAM_LOST_REASON } from '../../src/relay/relay-proxy.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import type { RelayStatus } from '../../src/relay/relay-status.js';
import { useClosers } from '../helpers/closers.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';
import { advertisementBatch, profileWithDevices } from '../helpers/fleet.js';
import type { RawClient } from '../helpers/raw-client.js';
import {
  CLONE,
  CLONE2,
  connectRequest,
  DEMO,
  FAST_BACKOFF,
  HOME_ASSISTANT,
  ourClient,
  rawClient,
  STATUS_HANDLE,
  STEP_MS,
  startRelay,
  startUpstream,
  until,
} from '../helpers/relay.js';

const closers = useClosers();

/** Sixteen reports from `first`, each with the flags and a short name ('abcd'), as the firmware batches them. */
const batch = (first: number) => advertisementBatch(first, Uint8Array.of(0x02, 0x01, 0x06, 0x05, 0x09, 0x61, 0x62, 0x63, 0x64));

describe('relay', () => {
  it('relay - serves the upstream under its own identity: hello, device info, capabilities', async () => {
    const node = await startUpstream(closers, { name: 'kitchen-proxy', mac: 'A4:CF:12:AB:34:CD', esphomeVersion: '2026.7.1' });
    const { relay, port } = await startRelay(closers, node);
    const api = await ApiConnection.connect({ host: '127.0.0.1', port, expectedName: 'kitchen-proxy', timeout: STEP_MS });
    closers.push(() => api.destroy());
    expect(api.hello).toMatchObject({ name: 'kitchen-proxy', apiVersionMajor: 1, apiVersionMinor: 15, serverInfo: '2026.7.1' });
    expect(api.deviceInfo).toMatchObject({
      name: 'kitchen-proxy',
      macAddress: 'A4:CF:12:AB:34:CD',
      esphomeVersion: '2026.7.1',
      bluetoothProxyFeatureFlags: 0xff,
      bluetoothMacAddress: node.bluetooth.bluetoothMac,
      usesPassword: false,
      apiEncryptionSupported: false, // a plaintext listener: nothing to provision
      apiEncryptionProvisionable: false,
    });
    // Setting a key through the relay is refused, not left unanswered.
    const refused = await api.request(
      NoiseEncryptionSetKeyRequest,
      { key: new TextEncoder().encode(TEST_PSK) },
      NoiseEncryptionSetKeyResponse,
    );
    expect(refused.success).toBe(false);
    // The relay itself is the proxy's one subscriber.
    expect(node.server.sessions.size).toBe(1);
    // A long-lived listener keeps no per-message history of its clients.
    expect([...relay.proxies[0]!.server!.sessions].map((session) => session.received)).toEqual([[]]);
    await api.close();
  });

  it('relay - DeviceInfo says a Bluetooth proxy and nothing else: no web server, areas, sub-devices, voice, Z-Wave, serial', async () => {
    const node = await startUpstream(closers, { name: 'busy-node', mac: 'A4:CF:12:AB:34:CD', esphomeVersion: '2026.8.1' });
    // A node that does much more than proxy Bluetooth.
    node.server.plugins.push({
      deviceInfo: () => ({
        usesPassword: true,
        hasDeepSleep: true,
        projectName: 'esphome.bluetooth-proxy',
        projectVersion: '25.1.0',
        webserverPort: 80,
        legacyVoiceAssistantVersion: 2,
        voiceAssistantFeatureFlags: 7,
        suggestedArea: 'Kitchen',
        devices: [{ deviceId: 11, name: 'Plug', areaId: 3 }],
        areas: [{ areaId: 3, name: 'Kitchen' }],
        area: { areaId: 3, name: 'Kitchen' },
        zwaveProxyFeatureFlags: 1,
        zwaveHomeId: 0x1234,
        serialProxies: [{ name: 'uart0', portType: 0 }],
        apiEncryptionSupported: true,
        apiEncryptionProvisionable: true,
      }),
    });
    const { port } = await startRelay(closers, node);
    const raw = await rawClient(closers, port, { subscribe: null });
    raw.send(DeviceInfoRequest, {});
    expect(await raw.next(DeviceInfoResponse)).toEqual(
      DeviceInfoResponse.create({
        name: 'busy-node',
        friendlyName: 'busy-node',
        macAddress: 'A4:CF:12:AB:34:CD',
        esphomeVersion: '2026.8.1',
        compilationTime: 'Aug 21 2026, 12:00:00',
        model: 'esp32dev',
        manufacturer: 'Espressif',
        projectName: 'esphome.bluetooth-proxy',
        projectVersion: '25.1.0',
        bluetoothProxyFeatureFlags: 0xff,
        bluetoothMacAddress: node.bluetooth.bluetoothMac,
      }),
    );
  });

  it('relay - two clients on one proxy both receive every advertisement, byte for byte', async () => {
    const node = await startUpstream(closers, { profile: { name: 'quiet', description: '', peripherals: [] } });
    const { port } = await startRelay(closers, node);
    const ours = await ourClient(closers, port);
    const raw = await rawClient(closers, port);
    const heard: number[] = [];
    ours.proxy.onAdvertisement((ad) => heard.push(ad.address));
    const sent = [0x100000, 0x200000, 0x300000].map(batch);
    for (const b of sent) node.bluetooth.sendRawBatch(b);
    await until(() => heard.length === 48 && raw.all(BluetoothLERawAdvertisementsResponse).length === 3, 'all advertisements');
    expect(heard).toEqual(sent.flatMap((b) => b.advertisements!.map((a) => a.address)));
    // The raw client gets exactly the upstream's encoding: the relay forwards bytes, it does not re-encode per client.
    const wire = raw.received.filter((m) => m.type === 93).map((m) => Buffer.from(m.payload).toString('hex'));
    expect(wire).toEqual(
      sent.map((b) =>
        Buffer.from(BluetoothLERawAdvertisementsResponse.toBinary(BluetoothLERawAdvertisementsResponse.create(b))).toString('hex'),
      ),
    );
  });

  it('relay - an advertisement batch is framed once for all plaintext subscribers: each socket is written the same bytes object', async () => {
    const node = await startUpstream(closers, { profile: { name: 'quiet', description: '', peripherals: [] } });
    const { relay, port } = await startRelay(closers, node);
    const clients = [await rawClient(closers, port), await rawClient(closers, port), await rawClient(closers, port)];
    // What the relay hands each client socket, by identity: one encode per batch means one object for everyone.
    const written: Uint8Array[][] = [];
    for (const session of relay.proxies[0]!.server!.sessions) {
      const frames: Uint8Array[] = [];
      written.push(frames);
      const socket = session.socket;
      const write = socket.write.bind(socket) as (chunk: Uint8Array, ...rest: unknown[]) => boolean;
      (socket as unknown as { write: typeof write }).write = (chunk, ...rest) => {
        // A plaintext frame: 0x00, varint length, varint type (93 is one byte, 0x5d).
        let at = 1;
        while ((chunk[at] ?? 0) & 0x80) at++;
        if (chunk[0] === 0 && chunk[at + 1] === RAW_ADVERTISEMENTS_MESSAGE_ID) frames.push(chunk);
        return write(chunk, ...rest);
      };
    }
    node.bluetooth.sendRawBatch(batch(0x600));
    node.bluetooth.sendRawBatch(batch(0x700));
    await until(() => clients.every((c) => c.all(BluetoothLERawAdvertisementsResponse).length === 2), 'both batches everywhere');
    const [first, ...others] = written;
    expect(written).toHaveLength(3);
    expect(first).toHaveLength(2);
    for (const frames of others) {
      expect(frames).toHaveLength(2);
      for (const [i, frame] of frames.entries()) expect(frame).toBe(first![i]);
    }
  });

  it('relay - a client that stops reading loses advertisements, never anything else, and the relay buffers a bounded amount', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const { relay, port } = await startRelay(closers, node);
    const fast = await rawClient(closers, port);
    const slow = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    slow.socket.pause();
    const sessions = [...relay.proxies[0]!.server!.sessions];
    const slowId = relay.snapshot().proxies[0]!.clients[1]!.id;
    const events: RelayStatus[] = [];
    const watching = (async () => {
      for await (const event of relay.status()) if (event.type === 'clientSlow') events.push(event);
    })();
    // Full batches (16 reports of 62 bytes, about 1.3 kB) until the loopback buffers are full and the relay drops.
    const full = {
      advertisements: Array.from({ length: 16 }, (_, i) => ({ address: 0x900000 + i, rssi: -60, data: new Uint8Array(62).fill(i) })),
    };
    let sent = 0;
    const dropped = (): number => relay.snapshot().proxies[0]!.clients.find((c) => c.id === slowId)!.droppedAdvertisements;
    while (dropped() === 0) {
      if (sent > 40_000) throw new Error('the relay never dropped an advertisement');
      for (let i = 0; i < 200; i++) node.bluetooth.sendRawBatch(full);
      sent += 200;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    for (let i = 0; i < 200; i++) node.bluetooth.sendRawBatch(full);
    sent += 200;
    const flood = (client: RawClient): number =>
      client.all(BluetoothLERawAdvertisementsResponse).filter((m) => m.advertisements[0]?.address === 0x900000).length;
    await until(() => flood(fast) === sent, 'the fast client to get every batch', 10_000);
    // What the relay holds for the slow client stays near the limit (one batch past it at most).
    const backlog = Math.max(...sessions.map((s) => s.socket.writableLength));
    expect(backlog).toBeLessThanOrEqual(CLIENT_AD_BACKLOG_LIMIT_BYTES + 2_000);
    expect(relay.snapshot().proxies[0]!.clients.find((c) => c.id !== slowId)!.droppedAdvertisements).toBe(0);

    // A slot change while it is backed up still reaches it: only advertisements are dropped.
    const mark = slow.received.length;
    fast.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await fast.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
    slow.socket.resume();
    await slow.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1, mark, 10_000);
    // Whole batches were skipped; the simulated peripheral's own advertisements may have been dropped too.
    expect(flood(slow)).toBeLessThan(sent);
    expect(dropped()).toBeGreaterThanOrEqual((sent - flood(slow)) * 16);
    await until(() => events.length > 0, 'a clientSlow event');
    expect(events[0]).toMatchObject({ type: 'clientSlow', client: slowId });
    await relay.close();
    await watching;
  });

  it('relay - without a quota slots are shared first come, first served; a third connect when full gets 0x100', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(2), slots: 2 });
    const { relay, port } = await startRelay(closers, node, { slotsPerClient: Number.POSITIVE_INFINITY });
    const ours = await ourClient(closers, port);
    const raw = await rawClient(closers, port);
    expect(ours.proxy.slots).toEqual({ free: 2, limit: 2, allocated: [] });

    const link = await ours.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
    // The other client sees one slot fewer, and not whose it is.
    await raw.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1);
    expect(raw.all(BluetoothConnectionsFreeResponse).every((m) => m.allocated.length === 0)).toBe(true);

    const mark = raw.received.length;
    raw.send(BluetoothDeviceRequest, connectRequest(CLONE));
    expect(await raw.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE, mark)).toMatchObject({ connected: true });
    await raw.next(BluetoothConnectionsFreeResponse, (m) => m.free === 0 && m.allocated.includes(CLONE), mark);
    await until(() => ours.proxy.slots?.free === 0, 'our client to see the proxy full');
    expect(ours.proxy.slots?.allocated).toEqual([DEMO]);
    expect(relay.snapshot().proxies[0]?.clients.map((c) => c.slots)).toEqual([['C0:FF:EE:00:00:01'], ['C0:FF:EE:00:01:00']]);

    // Third connect, by either client: the relay answers like a proxy out of resources, without asking upstream.
    const requestsBefore = node.bluetooth.connectRequests;
    const third = raw.received.length;
    raw.send(BluetoothDeviceRequest, connectRequest(CLONE2));
    expect(await raw.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE2, third)).toEqual(
      BluetoothDeviceConnectionResponse.create({ address: CLONE2, connected: false, mtu: 0, error: RELAY_OUT_OF_SLOTS_ERROR }),
    );
    const refused = await ours.proxy.connect(CLONE2, { addressType: 1, timeout: STEP_MS }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BleConnectError);
    expect(refused).toMatchObject({ reason: 0x100, reasonName: 'ESP_GATT_CONN_CONN_CANCEL', failureClass: 'outOfSlots' });
    expect(node.bluetooth.connectRequests).toBe(requestsBefore);

    // Released: our disconnect gives the slot back to the other client.
    const released = raw.received.length;
    await link.disconnect({ timeout: STEP_MS });
    await raw.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1, released);
    expect(node.bluetooth.free).toBe(1);
  });

  it("relay - every slot report adds up as the firmware's do: limit - free = the client's own allocated (bleak-esphome checks it)", async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(2), slots: 3 });
    const { port } = await startRelay(closers, node);
    const a = await rawClient(closers, port);
    const b = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    const consistent = (m: BluetoothConnectionsFreeResponse): boolean => m.allocated.length === m.limit - m.free;
    // Default quota on three slots: two per client.

    a.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await a.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
    await b.next(BluetoothConnectionsFreeResponse, (m) => m.free === 2);
    const mark = b.received.length;
    b.send(BluetoothDeviceRequest, connectRequest(CLONE));
    await b.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected, mark);
    // Each sees the proxy as if it had only the slots the other does not hold: its own links, and what is free.
    expect(await b.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1, mark)).toEqual(
      BluetoothConnectionsFreeResponse.create({ free: 1, limit: 2, allocated: [CLONE] }),
    );
    await a.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1 && m.limit === 2);

    const end = a.received.length;
    const bEnd = b.received.length;
    a.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await a.next(BluetoothConnectionsFreeResponse, (m) => m.free === 2 && m.allocated.length === 0, end);
    // Two slots free again, of which b, holding one, may take one more.
    expect(await b.next(BluetoothConnectionsFreeResponse, () => true, bEnd)).toEqual(
      BluetoothConnectionsFreeResponse.create({ free: 1, limit: 2, allocated: [CLONE] }),
    );
    // A proxy with an `allocated` list never sends a report that does not add up; neither does the relay.
    const reports = [...a.all(BluetoothConnectionsFreeResponse), ...b.all(BluetoothConnectionsFreeResponse)];
    expect(reports.filter((m) => !consistent(m))).toEqual([]);
  });

  for (const firmware of ['2022.12', '2024.10'] as const) {
    it(`relay - in front of ${firmware} firmware (no \`allocated\` in slot reports) free counts stay right and three slots take three links`, async () => {
      const node = await startUpstream(closers, { firmware, slots: 3, profile: await profileWithDevices(2) });
      const { relay, port } = await startRelay(closers, node);
      const ours = await ourClient(closers, port);
      const raw = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
      const free = (): number | undefined => relay.snapshot().proxies[0]?.slots.free;
      expect(free()).toBe(3);

      const first = await ours.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
      await until(() => free() === 2, 'one slot taken');
      const mark = raw.received.length;
      raw.send(BluetoothDeviceRequest, connectRequest(CLONE));
      await raw.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected, mark);
      // The proxy's own count is the truth: two links, one slot left, for everyone.
      await until(() => free() === 1 && ours.proxy.slots?.free === 1, 'the proxy to report one slot free');
      await raw.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1, mark);
      expect(node.bluetooth.free).toBe(1);

      const third = await ours.proxy.connect(CLONE2, { addressType: 1, timeout: STEP_MS });
      await until(() => free() === 0, 'the proxy full');
      expect(relay.snapshot().proxies[0]?.clients.map((c) => c.slots.length)).toEqual([2, 1]);

      // Links still route to their owners, and everything comes back.
      expect(new TextDecoder().decode(await first.read(STATUS_HANDLE, { timeout: STEP_MS }))).toBe('ready');
      await Promise.all([first.disconnect({ timeout: STEP_MS }), third.disconnect({ timeout: STEP_MS })]);
      raw.send(BluetoothDeviceRequest, { address: CLONE, requestType: BluetoothDeviceRequestType.DISCONNECT });
      // Every slot back; the default quota shows each client all but one of the three.
      await until(() => free() === 3 && ours.proxy.slots?.free === 2, 'every slot back');
      expect(relay.snapshot().proxies[0]?.clients.map((c) => c.slots)).toEqual([[], []]);
    });
  }

  it('relay - in front of 2024.10 firmware the listener authenticates as that firmware: AuthenticationRequest answered, required', async () => {
    const node = await startUpstream(closers, { firmware: '2024.10' });
    const { port } = await startRelay(closers, node);
    const client = await rawClient(closers, port, { subscribe: null });
    expect(await client.next(HelloResponse)).toMatchObject({ apiVersionMajor: 1, apiVersionMinor: 10, serverInfo: '2024.10.3' });
    expect(await client.next(AuthenticationResponse)).toEqual(AuthenticationResponse.create({ invalidPassword: false }));
    client.send(SubscribeBluetoothConnectionsFreeRequest, {});
    // Not subscribed: the proxy's counts (README "Relay": message 80 of a client that has not subscribed).
    expect(await client.next(BluetoothConnectionsFreeResponse)).toMatchObject({ free: 2, limit: 2 });
    // Without the login the session is only set up: a Bluetooth request closes it, as that firmware does.
    const bare = await rawClient(closers, port, { subscribe: null, login: false });
    const closed = new Promise((resolve) => bare.socket.once('close', resolve));
    bare.send(SubscribeBluetoothLEAdvertisementsRequest, { flags: 1 });
    await closed;
    expect(bare.all(AuthenticationResponse)).toEqual([]);
  });

  it("relay - one client's link never answers to the other", async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const { port } = await startRelay(closers, node);
    const ours = await ourClient(closers, port);
    const raw = await rawClient(closers, port);
    // From here on nothing of our link may reach the other client: its connection report, services, reads.
    const mark = raw.received.length;
    const link = await ours.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
    await link.getServices({ timeout: STEP_MS });

    // The other client reads from, and tries to disconnect, our link: not-connected answers, and nothing reaches the link.
    raw.send(BluetoothGATTReadRequest, { address: DEMO, handle: STATUS_HANDLE });
    expect(await raw.next(BluetoothGATTErrorResponse, () => true, mark)).toEqual(
      BluetoothGATTErrorResponse.create({ address: DEMO, handle: STATUS_HANDLE, error: -1 }),
    );
    raw.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    expect(await raw.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO, mark)).toMatchObject({
      connected: false,
      error: 0,
    });
    raw.send(BluetoothDeviceRequest, connectRequest(DEMO));
    expect(await raw.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.error !== 0, mark)).toMatchObject({
      connected: false,
      error: RELAY_OUT_OF_SLOTS_ERROR,
    });

    expect(new TextDecoder().decode(await link.read(STATUS_HANDLE, { timeout: STEP_MS }))).toBe('ready');
    expect(link.isConnected).toBe(true);
    expect(node.bluetooth.allocated).toEqual([DEMO]);
    // Our replies and connection reports never went to the other client.
    const seen = raw.received.slice(mark).map((m) => m.type);
    expect(seen.filter((t) => [71, 72, 74].includes(t))).toEqual([]);
    expect(raw.all(BluetoothDeviceConnectionResponse).filter((m) => m.connected)).toEqual([]);
    await link.disconnect({ timeout: STEP_MS });
  });

  it('relay - pairing and connection parameters go to the link owner; a non-owner gets the firmware answers, the owner nothing of theirs', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const { port } = await startRelay(closers, node);
    const owner = await rawClient(closers, port);
    const other = await rawClient(closers, port);
    owner.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await owner.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
    const mark = { owner: owner.received.length, other: other.received.length };

    // Someone else's link: pair is silent (the firmware does not answer a pair without a connection), connection
    // parameters get -1, unpair and clear-cache ESP_ERR_INVALID_STATE; none of it reaches the proxy.
    const requestsBefore = [...node.server.sessions][0]!.received.length;
    other.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.PAIR });
    other.send(BluetoothSetConnectionParamsRequest, { address: DEMO, minInterval: 6, maxInterval: 12, latency: 0, timeout: 500 });
    expect(await other.next(BluetoothSetConnectionParamsResponse, () => true, mark.other)).toEqual(
      BluetoothSetConnectionParamsResponse.create({ address: DEMO, error: -1 }),
    );
    other.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.UNPAIR });
    expect(await other.next(BluetoothDevicePairingResponse, () => true, mark.other)).toEqual(
      BluetoothDevicePairingResponse.create({ address: DEMO, paired: false, error: 0x103 }),
    );
    other.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.CLEAR_CACHE });
    expect(await other.next(BluetoothDeviceClearCacheResponse, () => true, mark.other)).toEqual(
      BluetoothDeviceClearCacheResponse.create({ address: DEMO, success: false, error: 0x103 }),
    );
    expect([...node.server.sessions][0]!.received.length).toBe(requestsBefore);

    // The owner's requests reach the proxy and their answers reach the owner only.
    owner.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.PAIR });
    expect(await owner.next(BluetoothDevicePairingResponse, () => true, mark.owner)).toMatchObject({ address: DEMO, paired: true });
    owner.send(BluetoothSetConnectionParamsRequest, { address: DEMO, minInterval: 6, maxInterval: 12, latency: 0, timeout: 500 });
    expect(await owner.next(BluetoothSetConnectionParamsResponse, () => true, mark.owner)).toMatchObject({ address: DEMO, error: 0 });
    const unpaired = owner.received.length;
    owner.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.UNPAIR });
    expect(await owner.next(BluetoothDevicePairingResponse, () => true, unpaired)).toMatchObject({ address: DEMO, paired: true });
    owner.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.CLEAR_CACHE });
    expect(await owner.next(BluetoothDeviceClearCacheResponse, () => true, mark.owner)).toMatchObject({ address: DEMO, success: true });
    owner.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await owner.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1 && m.allocated.length === 0, mark.owner);

    const seen = other.received.slice(mark.other).map((m) => m.type);
    expect(seen.filter((t) => t === 85)).toHaveLength(1); // its own 0x103 answer, nothing of the owner's
    expect(seen.filter((t) => t === 88)).toHaveLength(1);
    expect(seen.filter((t) => t === 146)).toHaveLength(1);
    expect(other.all(BluetoothDeviceConnectionResponse).filter((m) => m.address === DEMO)).toEqual([]);
  });

  it('relay - unpair and clear-cache of a device nobody holds answer each requester, also two at once', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const { port } = await startRelay(closers, node);
    const a = await rawClient(closers, port);
    const b = await rawClient(closers, port);
    const mark = { a: a.received.length, b: b.received.length };
    for (const kind of [BluetoothDeviceRequestType.UNPAIR, BluetoothDeviceRequestType.CLEAR_CACHE]) {
      a.send(BluetoothDeviceRequest, { address: CLONE, requestType: kind });
      b.send(BluetoothDeviceRequest, { address: CLONE, requestType: kind });
    }
    for (const client of [a, b]) {
      const since = client === a ? mark.a : mark.b;
      expect(await client.next(BluetoothDevicePairingResponse, () => true, since)).toMatchObject({ address: CLONE, paired: true });
      expect(await client.next(BluetoothDeviceClearCacheResponse, () => true, since)).toMatchObject({ address: CLONE, success: true });
    }
    // One answer each, not two to one of them.
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const client of [a, b]) {
      expect(client.all(BluetoothDevicePairingResponse)).toHaveLength(1);
      expect(client.all(BluetoothDeviceClearCacheResponse)).toHaveLength(1);
    }
  });

  it('relay - a client that vanishes mid-GATT frees its slot for the others', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1, { responseDelayMs: 150 }) });
    const { relay, port } = await startRelay(closers, node);
    const ours = await ourClient(closers, port);
    const raw = await rawClient(closers, port);
    raw.send(BluetoothDeviceRequest, connectRequest(CLONE));
    await raw.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);
    const free = (): number | undefined => relay.snapshot().proxies[0]?.slots.free;
    await until(() => free() === 1, 'the slot to be taken');
    raw.send(BluetoothGATTReadRequest, { address: CLONE, handle: STATUS_HANDLE });
    await until(
      () => node.server.sessions.size === 1 && [...node.server.sessions][0]!.received.includes(73),
      'the read to reach the proxy',
    );
    raw.close();

    await until(() => node.bluetooth.allocated.length === 0, 'the proxy to drop the link');
    await until(() => free() === 2, 'the slot to come back');
    await until(() => relay.snapshot().proxies[0]?.clients.length === 1, 'the relay to forget the client');
    // The slot is really free: we can take the device the vanished client held.
    const a = await ours.proxy.connect(CLONE, { addressType: 1, timeout: STEP_MS });
    await a.disconnect({ timeout: STEP_MS });
  });

  it('relay - a silent client is pinged and, when it stays silent, dropped with its links, as the firmware does', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const { relay, port } = await startRelay(closers, node, { clientKeepaliveInterval: 60 });
    const alive = await rawClient(closers, port);
    const dead = await rawClient(closers, port);
    dead.answerPings = false;
    dead.send(BluetoothDeviceRequest, connectRequest(CLONE));
    await dead.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);
    const closed = new Promise((resolve) => dead.socket.once('close', resolve));
    await dead.next(PingRequest, () => true, 0, 1000);
    await closed;
    await until(() => node.bluetooth.allocated.length === 0, "the dead client's link to be dropped");
    expect(alive.all(PingRequest).length).toBeGreaterThan(0);
    expect(alive.socket.destroyed).toBe(false);
    expect(relay.snapshot().proxies[0]?.clients).toHaveLength(1);
  });

  for (const listener of ['plaintext', 'noise'] as const) {
    it(`relay - an idle TCP connect to a ${listener} listener is never pinged and is closed after the handshake deadline; the relay lives on`, async () => {
      const node = await startUpstream(closers);
      const { relay, port } = await startRelay(closers, node, {
        clientKeepaliveInterval: 40,
        clientHandshakeTimeout: 300,
        ...(listener === 'noise' ? { downstreamPsk: OTHER_PSK } : {}),
      });
      const idle = netConnect({ host: '127.0.0.1', port });
      const received: Buffer[] = [];
      idle.on('data', (chunk: Buffer) => received.push(chunk));
      const closed = new Promise<number>((resolve) => {
        const opened = Date.now();
        idle.once('close', () => resolve(Date.now() - opened));
      });
      closers.push(() => {
        idle.destroy();
      });
      // Several keep-alive checks pass while the socket says nothing; then the handshake deadline closes it.
      expect(await closed).toBeGreaterThanOrEqual(250);
      expect(Buffer.concat(received).length).toBe(0);
      expect(relay.snapshot().proxies[0]?.clients).toEqual([]);
      // The relay still serves.
      const ours = await ourClient(closers, port, listener === 'noise' ? OTHER_PSK : undefined);
      // One of the two slots: the default quota leaves the other to the rest.
      expect(ours.proxy.slots).toEqual({ free: 1, limit: 1, allocated: [] });
    });
  }

  it('relay - close() says goodbye as a proxy shutting down: DisconnectRequest, answering clients go at once, a silent one at the deadline', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const { relay, port } = await startRelay(closers, node);
    const ours = await ourClient(closers, port);
    const answering = await rawClient(closers, port);
    const silent = await rawClient(closers, port, { subscribe: null });
    silent.answerDisconnects = false;
    const link = await ours.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
    const preHello = netConnect({ host: '127.0.0.1', port });
    closers.push(() => {
      preHello.destroy();
    });
    const preHelloBytes: Buffer[] = [];
    preHello.on('data', (chunk: Buffer) => preHelloBytes.push(chunk));
    await new Promise((resolve) => preHello.once('connect', resolve));
    const started = Date.now();
    const closedAt = (socket: Socket): Promise<number> =>
      new Promise((resolve) => socket.once('close', () => resolve(Date.now() - started)));
    const [answeredAt, silentAt, preHelloAt] = [closedAt(answering.socket), closedAt(silent.socket), closedAt(preHello)];
    // A deadline far above an in-process answer's delay, even on a loaded machine, keeps the two apart.
    const closing = relay.close({ timeout: 1500 });
    expect(relay.close()).toBe(closing);
    await closing;
    const elapsed = Date.now() - started;
    // Ours took it for the expected close of a device going down; its link ended with the session.
    expect(await ours.api.closed()).toMatchObject({ code: 'ESPAPI_ERR_CONNECTION_CLOSED', byDevice: true });
    expect(link.isConnected).toBe(false);
    expect(answering.all(DisconnectRequest)).toHaveLength(1);
    expect(silent.all(DisconnectRequest)).toHaveLength(1);
    expect(await answeredAt).toBeLessThan(1000);
    expect(await silentAt).toBeGreaterThanOrEqual(1450);
    // A session still in its handshake is not sent anything, only dropped.
    await preHelloAt;
    expect(Buffer.concat(preHelloBytes).length).toBe(0);
    expect(elapsed).toBeGreaterThanOrEqual(1450);
    expect(elapsed).toBeLessThan(4000);
    await until(() => node.bluetooth.allocated.length === 0, 'the link to be released upstream');
  });

  it('relay - an upstream restart is recovered without losing the downstream clients', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const upstreamPort = node.server.address.port;
    const { relay, port } = await startRelay(closers, node);
    const ours = await ourClient(closers, port);
    const raw = await rawClient(closers, port);
    const link = await ours.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
    const lost = link.closed();

    const down = raw.received.length;
    await node.server.close();
    // Their view: the link drops (connected=false), slots reset, the scanner reads stopped, the session stays.
    expect(await lost).toMatchObject({ reason: UPSTREAM_LOST_REASON });
    expect(await raw.next(BluetoothScannerStateResponse, () => true, down)).toMatchObject({ state: 5 });
    await until(() => ours.proxy.slots?.free === 0, 'slots to reset');
    expect(ours.api.isClosed).toBe(false);
    expect(relay.snapshot().proxies[0]?.upstream.state).not.toBe('connected');

    const restarted = await startSimulatedProxy({
      name: 'relay-upstream',
      slots: 2,
      port: upstreamPort,
      profile: await profileWithDevices(1),
    });
    closers.push(() => restarted.server.close());
    await until(() => relay.snapshot().proxies[0]?.upstream.state === 'connected', 'the relay to reconnect', 3000);
    await until(() => ours.proxy.slots?.free === 1 && relay.snapshot().proxies[0]?.slots.free === 2, 'slots to come back');

    // Advertisements resume for both clients, and the link can be opened again.
    const mark = raw.received.length;
    const heard = new Promise<void>((resolve) => {
      const off = ours.proxy.onAdvertisement(() => {
        off();
        resolve();
      });
    });
    await heard;
    await raw.next(BluetoothLERawAdvertisementsResponse, () => true, mark);
    const again = await ours.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
    expect(again.isConnected).toBe(true);
    await again.disconnect({ timeout: STEP_MS });
    expect(raw.socket.destroyed).toBe(false);
  });

  it('relay - after the upstream comes back with new firmware, the listener speaks as it and asks its clients to reconnect', async () => {
    const node = await startUpstream(closers, { firmware: '2024.10' });
    const upstreamPort = node.server.address.port;
    const { relay, port } = await startRelay(closers, node);
    const before = await rawClient(closers, port);
    expect(before.all(HelloResponse)[0]).toMatchObject({ apiVersionMinor: 10, serverInfo: '2024.10.3' });
    expect(before.all(AuthenticationResponse)).toHaveLength(1);

    await node.server.close();
    const updated = await startSimulatedProxy({ name: 'relay-upstream', slots: 2, port: upstreamPort, firmware: '2026.1' });
    closers.push(() => updated.server.close());
    // As from the rebooting proxy itself: a DisconnectRequest, which the client answers.
    await before.next(DisconnectRequest, () => true, 0, 3000);
    await until(() => before.socket.destroyed || before.socket.readableEnded, 'the old session to end');
    await until(() => relay.snapshot().proxies[0]?.upstream.state === 'connected', 'the relay to reconnect', 3000);

    const after = await rawClient(closers, port, { subscribe: null, login: false });
    expect(after.all(HelloResponse)[0]).toMatchObject({ apiVersionMajor: 1, apiVersionMinor: 14, serverInfo: '2026.1.4' });
    // 2026.1 firmware authenticates on Hello: a Bluetooth request works without a login, and none is answered.
    after.send(SubscribeBluetoothConnectionsFreeRequest, {});
    expect(await after.next(BluetoothConnectionsFreeResponse)).toMatchObject({ free: 2, limit: 2 });
    after.send(DeviceInfoRequest, {});
    expect(await after.next(DeviceInfoResponse)).toMatchObject({ esphomeVersion: '2026.1.4', bluetoothProxyFeatureFlags: 0xff });
    expect(after.all(AuthenticationResponse)).toEqual([]);
  });

  it('relay - another device answering at the upstream address after a restart is refused, not impersonated', async () => {
    const node = await startUpstream(closers, { name: 'first-proxy' });
    const upstreamPort = node.server.address.port;
    const { relay, port } = await startRelay(closers, node);
    await node.server.close();
    const impostor = await startSimulatedProxy({ name: 'other-proxy', port: upstreamPort });
    closers.push(() => impostor.server.close());
    await until(() => relay.snapshot().proxies[0]?.upstream.state === 'stopped', 'the upstream to stop', 3000);
    expect(relay.snapshot().proxies[0]?.upstream.lastError).toMatch(/first-proxy.*other-proxy/);
    // The listener still answers as the first proxy.
    const api = await ApiConnection.connect({ host: '127.0.0.1', port, expectedName: 'first-proxy', timeout: STEP_MS });
    await api.close();
  });

  it('relay - a set-mode request from one client is honoured and its scanner states go to all', async () => {
    const node = await startUpstream(closers);
    const { port } = await startRelay(closers, node);
    const ours = await ourClient(closers, port);
    const raw = await rawClient(closers, port);
    // Subscribing got the current state at once, as from the firmware.
    expect((await raw.next(BluetoothScannerStateResponse)).mode).toBe(1);
    const mark = raw.received.length;
    raw.send(BluetoothScannerSetModeRequest, { mode: 0 });
    await raw.next(BluetoothScannerStateResponse, (m) => m.mode === 0 && m.state === 2, mark);
    await until(
      () => ours.proxy.scannerState?.mode === 'passive' && ours.proxy.scannerState.state === 'running',
      'our client to see passive',
    );
    expect(await ours.proxy.setScannerMode('active', { timeout: STEP_MS })).toMatchObject({ mode: 'active', state: 'running' });
    await raw.next(BluetoothScannerStateResponse, (m) => m.mode === 1 && m.state === 2, mark);
  });

  it('relay - subscribers with flags=0 get legacy advertisements when the upstream firmware predates 2025.8', async () => {
    const node = await startUpstream(closers, { esphomeVersion: '2025.6.2', profile: { name: 'quiet', description: '', peripherals: [] } });
    const { port } = await startRelay(closers, node);
    const legacy = await rawClient(closers, port, { subscribe: { flags: 0 } });
    const modern = await rawClient(closers, port, { subscribe: { flags: 1 } });
    node.bluetooth.sendRawBatch({
      advertisements: [
        { address: 0xa1, rssi: -50, addressType: 1, data: Buffer.from('0201060509616263640303121809ff4c000215aabbccdd', 'hex') },
        { address: 0xa2, rssi: -70, addressType: 0, data: Buffer.from('06161a18010203', 'hex') },
      ],
    });
    await legacy.next(BluetoothLEAdvertisementResponse, (m) => m.address === 0xa2);
    await modern.next(BluetoothLERawAdvertisementsResponse);
    expect(legacy.all(BluetoothLERawAdvertisementsResponse)).toEqual([]);
    expect(modern.all(BluetoothLEAdvertisementResponse)).toEqual([]);
    const [first, second] = legacy.all(BluetoothLEAdvertisementResponse);
    expect(first).toMatchObject({ address: 0xa1, rssi: -50, addressType: 1, serviceUuids: ['0x1812'] });
    expect(new TextDecoder().decode(first?.name)).toBe('abcd');
    expect(first?.manufacturerData.map((d) => [d.uuid, Buffer.from(d.data).toString('hex')])).toEqual([['0x004C', '0215aabbccdd']]);
    expect(second?.serviceData.map((d) => [d.uuid, Buffer.from(d.data).toString('hex')])).toEqual([['0x181A', '010203']]);
  });

  it('relay - current firmware sends raw batches to flags=0 subscribers too', async () => {
    const node = await startUpstream(closers, { profile: { name: 'quiet', description: '', peripherals: [] } });
    const { port } = await startRelay(closers, node);
    const client = await rawClient(closers, port, { subscribe: { flags: 0 } });
    node.bluetooth.sendRawBatch(batch(0x500));
    expect((await client.next(BluetoothLERawAdvertisementsResponse)).advertisements).toHaveLength(16);
  });

  it('relay - a client below API 1.12 gets GATT UUIDs as 128-bit words', async () => {
    const node = await startUpstream(closers);
    const { port } = await startRelay(closers, node);
    const raw = await rawClient(closers, port);
    raw.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await raw.next(BluetoothDeviceConnectionResponse, (m) => m.connected);
    const mark = raw.received.length;
    raw.send(BluetoothGATTGetServicesRequest, { address: DEMO });
    await raw.next(BluetoothGATTGetServicesDoneResponse, () => true, mark);
    const services = raw.all(BluetoothGATTGetServicesResponse).flatMap((m) => m.services);
    expect(services.map((s) => s.shortUuid)).toEqual([0, 0, 0]);
    expect(services[0]?.uuid).toEqual([0x0000180000001000n, 0x800000805f9b34fbn]);
    raw.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await raw.next(BluetoothConnectionsFreeResponse, (m) => m.allocated.length === 0, mark);
  });

  for (const upstreamMode of ['plaintext', 'noise'] as const) {
    it(`relay - Noise downstream with its own key, in front of a ${upstreamMode} upstream; advertisements encrypted per client`, async () => {
      const upstreamPsk = upstreamMode === 'noise' ? TEST_PSK : undefined;
      const node = await startUpstream(closers, { ...(upstreamPsk ? { psk: upstreamPsk } : {}), name: 'vault-proxy' });
      const { port } = await startRelay(closers, node, { downstreamPsk: OTHER_PSK }, upstreamPsk);
      // Only the relay's key opens the relay; the Noise server hello names the proxy.
      await expect(ApiConnection.connect({ host: '127.0.0.1', port, psk: TEST_PSK, timeout: STEP_MS })).rejects.toMatchObject({
        code: 'ESPAPI_ERR_INVALID_KEY',
      });
      await expect(ApiConnection.connect({ host: '127.0.0.1', port, timeout: STEP_MS })).rejects.toMatchObject({
        code: 'ESPAPI_ERR_ENCRYPTION_REQUIRED',
      });
      const [a, b] = await Promise.all([ourClient(closers, port, OTHER_PSK), ourClient(closers, port, OTHER_PSK)]);
      expect(a.api.encrypted).toBe(true);
      expect(a.api.hello.name).toBe('vault-proxy');
      const heard = (proxy: BluetoothProxy): Promise<void> =>
        new Promise((resolve) => {
          const off = proxy.onAdvertisement((ad) => {
            if (ad.address !== DEMO) return;
            off();
            resolve();
          });
        });
      await Promise.all([heard(a.proxy), heard(b.proxy)]);
      const link = await a.proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
      expect(new TextDecoder().decode(await link.read(STATUS_HANDLE, { timeout: STEP_MS }))).toBe('ready');
      await link.disconnect({ timeout: STEP_MS });
    });
  }

  it('relay - plaintext downstream in front of a Noise upstream; advertisements framed per client', async () => {
    const node = await startUpstream(closers, { psk: TEST_PSK, profile: { name: 'quiet', description: '', peripherals: [] } });
    const { port } = await startRelay(closers, node, {}, TEST_PSK);
    const raw = await rawClient(closers, port);
    node.bluetooth.sendRawBatch(batch(0x700));
    expect((await raw.next(BluetoothLERawAdvertisementsResponse)).advertisements.map((a) => a.address)[0]).toBe(0x700);
    raw.send(DeviceInfoRequest, {});
    expect(await raw.next(DeviceInfoResponse)).toMatchObject({ name: 'relay-upstream', bluetoothProxyFeatureFlags: 0xff });
  });

  it('relay - while another client holds the proxy subscription the relay retries, and takes over once it is free', async () => {
    const node = await startUpstream(closers);
    const direct = await ourClient(closers, node.server.address.port);
    const relay = new RelayServer({
      proxies: [{ host: '127.0.0.1', port: node.server.address.port }],
      backoff: FAST_BACKOFF,
      subscriberCheckTimeout: 100,
    });
    closers.push(() => relay.close());
    const events: string[] = [];
    const watching = (async () => {
      for await (const event of relay.status()) if (event.type === 'upstreamDown') events.push(event.error ?? '');
    })();
    await expect(relay.start({ timeout: 400 })).rejects.toMatchObject({ code: 'ESPAPI_ERR_TIMEOUT' });
    expect(events.some((e) => /holds its single Bluetooth subscription/.test(e))).toBe(true);
    await direct.api.close();
    const [listening] = await relay.start({ timeout: 3000 });
    const ours = await ourClient(closers, listening!.port);
    expect(ours.proxy.subscriberConfirmed).toBe(true);
    await relay.close();
    await watching;
  });

  it('relay - a wrong upstream key stops the start with the typed error', async () => {
    const node = await startUpstream(closers, { psk: TEST_PSK });
    const relay = new RelayServer({
      proxies: [{ host: '127.0.0.1', port: node.server.address.port, psk: OTHER_PSK }],
      backoff: FAST_BACKOFF,
    });
    closers.push(() => relay.close());
    await expect(relay.start({ timeout: STEP_MS })).rejects.toMatchObject({ code: 'ESPAPI_ERR_INVALID_KEY' });
    expect(relay.snapshot().proxies[0]?.upstream.state).toBe('stopped');
  });
});
