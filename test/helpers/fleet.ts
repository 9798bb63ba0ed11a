import { expect } from 'vitest';
import { formatMac } from '../../src/bluetooth/address.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { SimulatedFleet, type SimulatedNode, type SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import { DEFAULT_PROFILE_PATH, type DeviceProfile, loadProfile, type PeripheralProfile } from '../../src/fixture-server/profile.js';
import { BluetoothScannerStateResponse } from '../../src/gen/api_pb.js';
import type { ProxyPool } from '../../src/pool/proxy-pool.js';

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

/** Starts `count` simulated proxies sharing `profile`, with per-node overrides. */
export function startTestFleet(count: number, profile: DeviceProfile, perNode: SimulatedNodeOptions[] = []): Promise<SimulatedFleet> {
  return SimulatedFleet.start(Array.from({ length: count }, (_, i) => ({ profile, ...(perNode[i] ?? {}) })));
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
 * firmware hands it over; earlier first-wins firmware only if nobody holds it). The caller destroys the session.
 */
export async function subscribeAsOther(node: SimulatedNode): Promise<ApiConnection> {
  const api = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, timeout: 3000 });
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
