import type { MessageType } from '@protobuf-ts/runtime';
import { describe, expect, it } from 'vitest';
import type { BleConnection } from '../../src/bluetooth/ble-connection.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceClearCacheResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothGATTErrorResponse,
  BluetoothGATTGetServicesRequest,
  BluetoothGATTNotifyRequest,
  BluetoothGATTReadDescriptorRequest,
  BluetoothGATTReadRequest,
  BluetoothGATTWriteDescriptorRequest,
  BluetoothGATTWriteRequest,
  BluetoothSetConnectionParamsRequest,
  BluetoothSetConnectionParamsResponse,
} from '../../src/gen/api_pb.js';
import type { RelayServer } from '../../src/relay/relay-server.js';
import { RELAY_OUT_OF_SLOTS_ERROR } from '../../src/relay/request-guard.js';
import { useClosers } from '../helpers/closers.js';
import { profileWithDevices } from '../helpers/fleet.js';
import type { RawClient } from '../helpers/raw-client.js';
import {
  addressFieldCount,
  addressing,
  CLONE,
  COUNTER_CCCD_HANDLE,
  COUNTER_HANDLE,
  connectRequest,
  DEMO,
  ourClient,
  type ReceivedRequest,
  rawClient,
  recordUpstream,
  repeatedAddress,
  STATUS_HANDLE,
  settle,
  startRelay,
  startUpstream,
  WRITE_HANDLE,
} from '../helpers/relay.js';

const closers = useClosers();

/** Ids of every reply the proxy sends about a link: what must never reach a client that does not own it. */
const LINK_REPLY_IDS = [69, 71, 72, 74, 79, 82, 83, 84, 85, 86, 88, 146];
/** Beyond 48 bits: the firmware opens / unpairs the low 48 bits, which here are the victim's. */
const HIGH = 2 ** 48;

interface GattCase {
  readonly name: string;
  readonly type: MessageType<{ address: number }>;
  readonly message: Record<string, unknown>;
  /** The handle the not-connected answer echoes (GetServices: 0). */
  readonly handle: number;
}

// biome-ignore lint/suspicious/noExplicitAny: each case holds one generated message type
const gatt = (name: string, type: MessageType<any>, message: Record<string, unknown>, handle: number): GattCase => ({
  name,
  type,
  message,
  handle,
});

const GATT_CASES: readonly GattCase[] = [
  gatt('get services (70)', BluetoothGATTGetServicesRequest, {}, 0),
  gatt('read (73)', BluetoothGATTReadRequest, { handle: STATUS_HANDLE }, STATUS_HANDLE),
  gatt(
    'write (75)',
    BluetoothGATTWriteRequest,
    { handle: WRITE_HANDLE, response: true, data: new TextEncoder().encode('pwned') },
    WRITE_HANDLE,
  ),
  gatt('read descriptor (76)', BluetoothGATTReadDescriptorRequest, { handle: COUNTER_CCCD_HANDLE }, COUNTER_CCCD_HANDLE),
  gatt(
    'write descriptor (77)',
    BluetoothGATTWriteDescriptorRequest,
    { handle: COUNTER_CCCD_HANDLE, data: Uint8Array.of(1, 0) },
    COUNTER_CCCD_HANDLE,
  ),
  gatt('notify (78)', BluetoothGATTNotifyRequest, { handle: COUNTER_HANDLE, enable: true }, COUNTER_HANDLE),
  gatt(
    'connection parameters (145)',
    BluetoothSetConnectionParamsRequest,
    { minInterval: 6, maxInterval: 12, latency: 0, timeout: 500 },
    0,
  ),
];

interface Scene {
  victim: Awaited<ReturnType<typeof ourClient>>;
  victimLink: BleConnection;
  /** Link replies the victim's session received since the scene was set. */
  victimReplies: number[];
  attacker: RawClient;
  upstream: ReceivedRequest[];
  relay: RelayServer;
}

/**
 * A victim (our client) holding DEMO with its services read, an attacker (a raw client) holding CLONE; from here
 * on every request the upstream proxy receives is recorded. Three slots, so the default quota lets each have one.
 */
async function scene(): Promise<Scene> {
  const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3 });
  const { relay, port } = await startRelay(closers, node);
  const victim = await ourClient(closers, port);
  const victimLink = await victim.proxy.connect(DEMO, { addressType: 1, timeout: 2000 });
  await victimLink.getServices({ timeout: 2000 });
  const attacker = await rawClient(closers, port);
  attacker.send(BluetoothDeviceRequest, connectRequest(CLONE));
  await attacker.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);
  const victimReplies: number[] = [];
  for (const id of LINK_REPLY_IDS) {
    const off = victim.api.onRaw(id, () => victimReplies.push(id));
    closers.push(off);
  }
  return { victim, victimLink, victimReplies, attacker, upstream: recordUpstream(node), relay };
}

/** The victim's link is up, its device reads as before (nothing was written to it), and nothing of the attack reached it. */
async function expectVictimUntouched(s: Scene): Promise<void> {
  expect(s.victimLink.isConnected).toBe(true);
  expect(new TextDecoder().decode(await s.victimLink.read(STATUS_HANDLE, { timeout: 2000 }))).toBe('ready');
  // The read above is the victim's own: exactly its reply, nothing else.
  expect(s.victimReplies).toEqual([74]);
}

describe('relay isolation: decode, authorise, re-encode', () => {
  for (const c of GATT_CASES) {
    it(`relay isolation - ${c.name} with the address field [own, victim] is refused; the victim's link and data are untouched`, async () => {
      const s = await scene();
      const mark = s.attacker.received.length;
      const id = Number(c.type.options.id);
      // A reader of the first address field sees the attacker's own link; the proxy would act on the victim's.
      s.attacker.sendRaw(id, repeatedAddress(c.type, c.type.create({ ...c.message, address: 0 }), CLONE, DEMO));
      if (id === 145) {
        expect(await s.attacker.next(BluetoothSetConnectionParamsResponse, () => true, mark)).toEqual(
          BluetoothSetConnectionParamsResponse.create({ address: DEMO, error: -1 }),
        );
      } else {
        expect(await s.attacker.next(BluetoothGATTErrorResponse, () => true, mark)).toEqual(
          BluetoothGATTErrorResponse.create({ address: DEMO, handle: c.handle, error: -1 }),
        );
      }
      await settle(50);
      expect(addressing(s.upstream, DEMO)).toEqual([]);
      expect(s.upstream.filter((r) => r.type === id)).toEqual([]);
      await expectVictimUntouched(s);
    });

    it(`relay isolation - ${c.name}: what reaches the proxy is the decoded request encoded again, one address, no unknown fields`, async () => {
      const s = await scene();
      const id = Number(c.type.options.id);
      // The owner's request with the victim's address first and an unknown field: decoded, it is the owner's.
      const crafted = Uint8Array.from([...repeatedAddress(c.type, c.type.create({ ...c.message, address: 0 }), DEMO, CLONE), 0x78, 0x2a]);
      s.attacker.sendRaw(id, crafted);
      const reached = (): ReceivedRequest[] => s.upstream.filter((r) => r.type === id);
      await expect.poll(() => reached().length, { timeout: 2000 }).toBe(1);
      const [request] = reached();
      expect(request!.message).toEqual(c.type.create({ ...c.message, address: CLONE }));
      expect([...request!.payload]).toEqual([...c.type.toBinary(c.type.create({ ...c.message, address: CLONE }))]);
      expect(addressFieldCount(request!.payload)).toBe(1);
      expect(addressing(s.upstream, DEMO)).toEqual([]);
      await expectVictimUntouched(s);
    });
  }

  it("relay isolation - device requests with the address field [own, victim] get the firmware's answers for the victim's address and never reach it", async () => {
    const s = await scene();
    const send = (requestType: BluetoothDeviceRequestType): number => {
      const mark = s.attacker.received.length;
      const message = BluetoothDeviceRequest.create({ requestType, hasAddressType: true, addressType: 1 });
      s.attacker.sendRaw(68, repeatedAddress(BluetoothDeviceRequest, message, CLONE, DEMO));
      return mark;
    };
    // Disconnect: the firmware's answer for an address without a slot, and a slot report.
    let mark = send(BluetoothDeviceRequestType.DISCONNECT);
    expect(await s.attacker.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO, mark)).toEqual(
      BluetoothDeviceConnectionResponse.create({ address: DEMO, connected: false, mtu: 0, error: 0 }),
    );
    await s.attacker.next(BluetoothConnectionsFreeResponse, () => true, mark);
    // Connect: someone else's device, out of slots for this client.
    mark = send(BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE);
    expect(await s.attacker.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO, mark)).toMatchObject({
      connected: false,
      error: RELAY_OUT_OF_SLOTS_ERROR,
    });
    // Unpair and clear-cache: ESP_ERR_INVALID_STATE while another client holds the device.
    mark = send(BluetoothDeviceRequestType.UNPAIR);
    expect(await s.attacker.next(BluetoothDevicePairingResponse, () => true, mark)).toEqual(
      BluetoothDevicePairingResponse.create({ address: DEMO, paired: false, error: 0x103 }),
    );
    mark = send(BluetoothDeviceRequestType.CLEAR_CACHE);
    expect(await s.attacker.next(BluetoothDeviceClearCacheResponse, () => true, mark)).toEqual(
      BluetoothDeviceClearCacheResponse.create({ address: DEMO, success: false, error: 0x103 }),
    );
    // Pair: the firmware does not answer a pair for an address it has no connection to.
    mark = send(BluetoothDeviceRequestType.PAIR);
    await settle(100);
    expect(s.attacker.received.slice(mark).filter((m) => m.type === 85)).toEqual([]);
    expect(addressing(s.upstream, DEMO)).toEqual([]);
    expect(s.upstream.filter((r) => r.type === 68)).toEqual([]);
    await expectVictimUntouched(s);
  });

  it('relay isolation - addresses beyond 48 bits never reach the proxy, which would act on the low 48 bits (the victim)', async () => {
    const s = await scene();
    let mark = s.attacker.received.length;
    s.attacker.send(BluetoothDeviceRequest, connectRequest(HIGH + DEMO));
    expect(await s.attacker.next(BluetoothDeviceConnectionResponse, (m) => m.address === HIGH + DEMO, mark)).toEqual(
      BluetoothDeviceConnectionResponse.create({ address: HIGH + DEMO, connected: false, mtu: 0, error: 0 }),
    );
    for (const requestType of [BluetoothDeviceRequestType.UNPAIR, BluetoothDeviceRequestType.CLEAR_CACHE]) {
      mark = s.attacker.received.length;
      s.attacker.send(BluetoothDeviceRequest, { address: HIGH + DEMO, requestType });
      const error = await (requestType === BluetoothDeviceRequestType.UNPAIR
        ? s.attacker.next(BluetoothDevicePairingResponse, () => true, mark)
        : s.attacker.next(BluetoothDeviceClearCacheResponse, () => true, mark));
      expect(error).toMatchObject({ address: HIGH + DEMO, error: 0x102 }); // ESP_ERR_INVALID_ARG
    }
    // Its own device's low 48 bits under a high address: not its link.
    mark = s.attacker.received.length;
    s.attacker.send(BluetoothGATTReadRequest, { address: HIGH + CLONE, handle: STATUS_HANDLE });
    expect(await s.attacker.next(BluetoothGATTErrorResponse, () => true, mark)).toMatchObject({ address: HIGH + CLONE, error: -1 });
    await settle(50);
    expect(s.upstream.filter((r) => Number(r.message?.address ?? 0) >= HIGH)).toEqual([]);
    expect(addressing(s.upstream, DEMO)).toEqual([]);
    await expectVictimUntouched(s);
  });

  it('relay isolation - an address protobuf-ts reads as a negative number (a uint64 near 2^64) is a malformed request, not an untyped crash', async () => {
    const s = await scene();
    const errors: unknown[] = [];
    s.relay.proxies[0]!.server!.options.onSessionError = (_session, error) => errors.push(error);
    // Just below 2^64: protobuf-ts's number for it is -1000, a safe integer (nearer 2^63 it throws while decoding).
    let big = 2n ** 64n - 1000n;
    const bytes = [0x08];
    while (big >= 0x80n) {
      bytes.push(Number(big & 0x7fn) | 0x80);
      big >>= 7n;
    }
    bytes.push(Number(big));
    const closed = new Promise((resolve) => s.attacker.socket.once('close', resolve));
    // Found by the relay fuzz target: the not-connected answer echoed the address, which does not encode back.
    s.attacker.sendRaw(145, Uint8Array.from([...bytes, 0x10, 0x06]));
    await closed;
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ name: 'FrameError', code: 'ESPAPI_ERR_DECODE' });
    await settle(50);
    expect(s.upstream.filter((r) => r.type === 145)).toEqual([]);
    await expectVictimUntouched(s);
  });

  it('relay isolation - a request that does not decode drops that client only; nothing reaches the proxy', async () => {
    const s = await scene();
    const closed = new Promise((resolve) => s.attacker.socket.once('close', resolve));
    s.attacker.sendRaw(75, Uint8Array.of(0x08, 0x81, 0x80)); // truncated address varint
    await closed;
    await settle(50);
    // The relay disconnects the dropped client's own link, and nothing else.
    expect(s.upstream.map((r) => [r.type, r.message?.address, r.message?.requestType])).toEqual([
      [68, CLONE, BluetoothDeviceRequestType.DISCONNECT],
    ]);
    await expectVictimUntouched(s);
  });
});
