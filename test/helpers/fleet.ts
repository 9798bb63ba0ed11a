import type { PartialMessage } from '@protobuf-ts/runtime';
import { expect } from 'vitest';
import { formatMac } from '../../src/bluetooth/address.js';
import type { Advertisement } from '../../src/bluetooth/advertisement.js';
import { type AttachOptions, BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection, type ConnectOptions } from '../../src/connection/connection.js';
import type { ProxyConfig } from '../../src/connection/proxy-session.js';
import {
  leakedSlots,
  SimulatedFleet,
  type SimulatedNode,
  type SimulatedNodeOptions,
  startSimulatedProxy,
} from '../../src/fixture-server/fleet.js';
import { DEFAULT_PROFILE_PATH, type DeviceProfile, loadProfile, type PeripheralProfile } from '../../src/fixture-server/profile.js';
import {
  type BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  type BluetoothLERawAdvertisementsResponse,
  BluetoothScannerStateResponse,
} from '../../src/gen/api_pb.js';
import { ProxyPool, type ProxyPoolOptions } from '../../src/pool/proxy-pool.js';
import type { ApiSession } from '../../src/server/api-server.js';
import type { Closers } from './closers.js';

/** The default profile's connectable peripheral. */
export const DEMO_MAC = 'C0:FF:EE:00:00:01';

/** The default profile with `extra` more connectable clones of its demo peripheral (C0:FF:EE:00:01:xx). */
export async function profileWithDevices(extra: number, overrides: Partial<PeripheralProfile['behaviour']> = {}): Promise<DeviceProfile> {
  const base = await loadProfile(DEFAULT_PROFILE_PATH);
  const demo = base.peripherals.find((p) => p.mac === DEMO_MAC)!;
  const clones: PeripheralProfile[] = Array.from({ length: extra }, (_, i) => {
    const address = 0xc0ffee000100 + i;
    return { ...demo, mac: formatMac(address), address, name: `clone-${i}`, behaviour: { ...demo.behaviour, ...overrides } };
  });
  return {
    ...base,
    peripherals: [
      ...base.peripherals.map((p) => (p.mac === DEMO_MAC ? { ...p, behaviour: { ...p.behaviour, ...overrides } } : p)),
      ...clones,
    ],
  };
}

/** The default profile's connectable demo peripheral, as a number. */
export const DEMO = 0xc0ffee000001;

/** A simulated proxy (default profile unless told otherwise), closed after the test. */
export async function startProxy(closers: Closers, options: SimulatedNodeOptions = {}): Promise<SimulatedNode> {
  const node = await startSimulatedProxy(options);
  closers.push(() => node.server.close());
  return node;
}

/** Where to reach `node` on loopback, for ApiConnection.connect. */
export const target = (node: SimulatedNode): { host: string; port: number } => ({ host: '127.0.0.1', port: node.server.address.port });

/** Our API client of `node` (or of a listener's port), 3 s connect timeout unless told otherwise; destroyed after the test. */
export async function openApi(
  closers: Closers,
  to: SimulatedNode | number,
  options: Omit<ConnectOptions, 'host' | 'port'> = {},
): Promise<ApiConnection> {
  const port = typeof to === 'number' ? to : to.server.address.port;
  const api = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: 3000, ...options });
  closers.push(() => api.destroy());
  return api;
}

/** A simulated proxy's client attached as the Bluetooth subscriber, with the session the proxy serves it on. */
export interface AttachedClient {
  api: ApiConnection;
  proxy: BluetoothProxy;
  session: ApiSession;
}

/** Opens an API client of `node` (with `psk` if given) and attaches a BluetoothProxy to it; destroyed after the test. */
export async function attachClient(
  closers: Closers,
  node: SimulatedNode,
  options: { psk?: string | undefined; attach?: AttachOptions } = {},
): Promise<AttachedClient> {
  const sessionReady = node.server.nextSession();
  const api = await openApi(closers, node, { psk: options.psk });
  const proxy = await BluetoothProxy.attach(api, options.attach);
  return { api, proxy, session: await sessionReady };
}

/** Resolves with the next advertisement `proxy` hears that `match` accepts (any, by default). */
export function nextAdvertisement(proxy: BluetoothProxy, match: (ad: Advertisement) => boolean = () => true): Promise<Advertisement> {
  return new Promise((resolve) => {
    const off = proxy.onAdvertisement((ad) => {
      if (!match(ad)) return;
      off();
      resolve(ad);
    });
  });
}

/** A BluetoothDeviceRequest connect for `address` (default the demo peripheral), as clients send it. */
export const connectRequest = (address = DEMO, addressType = 1): PartialMessage<BluetoothDeviceRequest> => ({
  address,
  requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
  hasAddressType: true,
  addressType,
});

/** Sixteen raw reports with consecutive addresses from `first`, as the firmware batches them (flags AD unless told). */
export function advertisementBatch(
  first: number,
  data: Uint8Array = Uint8Array.of(0x02, 0x01, 0x06),
): PartialMessage<BluetoothLERawAdvertisementsResponse> {
  return {
    advertisements: Array.from({ length: 16 }, (_, i) => ({ address: first + i, rssi: -40 - i, addressType: i % 2, data })),
  };
}

/** Starts `count` simulated proxies sharing `profile`, with per-node overrides; closed after the test when `closers` is given. */
export async function startTestFleet(
  count: number,
  profile: DeviceProfile,
  perNode: SimulatedNodeOptions[] = [],
  closers?: Closers,
): Promise<SimulatedFleet> {
  const fleet = await SimulatedFleet.start(Array.from({ length: count }, (_, i) => ({ profile, ...(perNode[i] ?? {}) })));
  closers?.push(() => fleet.close());
  return fleet;
}

/** Fast pool reconnects and a short connect timeout, so failure tests take milliseconds. */
export const FAST_POOL: ProxyPoolOptions = { backoff: { initialDelay: 50, maxDelay: 200 }, connectTimeout: 2000 };

/** The pool entry of `node`, named as its proxy (`proxy-1`, … in a fleet) and with its key when it has one. */
export function proxyEntry(node: SimulatedNode): ProxyConfig {
  return {
    host: '127.0.0.1',
    port: node.server.address.port,
    name: node.server.name,
    ...(node.server.psk === undefined ? {} : { psk: Buffer.from(node.server.psk).toString('base64') }),
  };
}

/** What a pool may be built from: simulated proxies (as proxyEntry), proxy configs or `host:port` specs. */
export type PoolMember = SimulatedNode | ProxyConfig | string;

/** A pool of `members` (FAST_POOL unless told otherwise), closed after the test; not awaited ready. */
export function poolOf(closers: Closers, members: readonly PoolMember[], options: ProxyPoolOptions = FAST_POOL): ProxyPool {
  const pool = new ProxyPool(
    members.map((m) => (typeof m === 'object' && 'server' in m ? proxyEntry(m) : m)),
    options,
  );
  closers.push(() => pool.close());
  return pool;
}

/**
 * After the test, while `pool` and `nodes` are still open: wait until no proxy holds a slot the pool has no link for
 * and no connect is in flight (leakedSlots), else fail the test.
 */
export function watchSlots(closers: Closers, nodes: readonly SimulatedNode[], pool: ProxyPool): void {
  closers.push(() => expect.poll(() => leakedSlots(nodes, pool.proxies()), { timeout: 3000 }).toEqual([]));
}

/** What startPooledFleet starts. */
export interface PooledFleetOptions {
  /** Per-node options; their number is the fleet's size (default one node with the defaults). */
  perNode?: SimulatedNodeOptions[];
  /** The shared profile (default: the default profile). */
  profile?: DeviceProfile;
  /** The pool's options (default FAST_POOL). */
  pool?: ProxyPoolOptions;
  /** How many proxies must hear the demo peripheral before it resolves (default all of them). */
  heardBy?: number;
  /** After the test, before closing anything: watchSlots. */
  checkSlots?: boolean;
}

/** A fleet and a ready pool of it that hears the demo peripheral, both closed after the test. */
export async function startPooledFleet(
  closers: Closers,
  options: PooledFleetOptions = {},
): Promise<{ fleet: SimulatedFleet; pool: ProxyPool }> {
  const perNode = options.perNode ?? [{}];
  const fleet = await startTestFleet(perNode.length, options.profile ?? (await profileWithDevices(0)), perNode, closers);
  const pool = poolOf(closers, fleet.nodes, options.pool);
  if (options.checkSlots === true) watchSlots(closers, fleet.nodes, pool);
  await pool.ready({ timeout: 3000 });
  // pool.explain applies the pool's routes: a route that requires one proxy shows that one only.
  await waitHeard(pool, DEMO_MAC, options.heardBy ?? perNode.length);
  return { fleet, pool };
}

/** Resolves once every proxy in the pool hears `mac` (advertisements arrive every ~100 ms). */
export async function waitHeard(pool: ProxyPool, mac: string, proxies: number, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pool.explain(mac).length < proxies) {
    if (Date.now() > deadline) throw new Error(`only ${pool.explain(mac).length}/${proxies} proxies hear ${mac}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** SubscribeBluetoothLEAdvertisementsRequest (66). */
const MSG_SUBSCRIBE_ADVERTISEMENTS = 66;

/**
 * Another client (as Home Assistant) subscribes to `node`'s advertisements and holds the subscription (2026.7
 * firmware hands it over; earlier first-wins firmware only if nobody holds it). Destroyed after the test when
 * `closers` is given, else by the caller.
 */
export async function subscribeAsOther(node: SimulatedNode, closers?: Closers): Promise<ApiConnection> {
  const api = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, timeout: 3000 });
  closers?.push(() => api.destroy());
  const before = node.bluetooth.subscriber;
  api.sendRaw(MSG_SUBSCRIBE_ADVERTISEMENTS, Uint8Array.of(0x08, 0x01));
  try {
    await expect.poll(() => node.bluetooth.subscriber !== undefined && node.bluetooth.subscriber !== before).toBe(true);
  } catch (error) {
    api.destroy();
    throw error;
  }
  return api;
}

/**
 * subscribeAsOther for a proxy in another process (`esphome-ble serve`): resolves once the scanner state that the
 * firmware sends its new subscriber arrives (so only for proxies with FEATURE_STATE_AND_MODE). The caller destroys it.
 */
export async function subscribeAsOtherAt(port: number): Promise<ApiConnection> {
  const api = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: 3000 });
  try {
    const proof = api.waitFor(BluetoothScannerStateResponse, () => true, { timeout: 3000 });
    api.sendRaw(MSG_SUBSCRIBE_ADVERTISEMENTS, Uint8Array.of(0x08, 0x01));
    await proof;
  } catch (error) {
    api.destroy();
    throw error;
  }
  return api;
}
