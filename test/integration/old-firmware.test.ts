import { connect as netConnect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BluetoothProxyFeature as F } from '../../src/bluetooth/features.js';
import { BluetoothProxy, type ConnectionStateChange } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { InvalidPasswordError, NotSubscriberError } from '../../src/errors.js';
import { FIRMWARE_GENERATIONS, type FirmwareGeneration, firmwareProfile } from '../../src/fixture-server/firmware.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import { encodePlaintextFrame, PlaintextFrameDecoder } from '../../src/frame/plaintext.js';
import { HelloRequest } from '../../src/gen/api_pb.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import type { ApiSession } from '../../src/server/api-server.js';
import { startCliServer } from '../helpers/cli.js';
import { useClosers } from '../helpers/closers.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { nextAdvertisement, openApi, startProxy } from '../helpers/fleet.js';
import { AT_ONCE_MS } from '../helpers/wait.js';

const DEMO = 0xc0ffee000001;
const TILT = 0x04a3169b095a;
/**
 * The deadline of every set-up call here, and what "without waiting" may take (AT_ONCE_MS, for a loaded machine):
 * far below the library's own set-up timeouts (10 s per request, 30 s per connect), so a call that waited for an
 * answer old firmware never sends would fail.
 */
const FAST_MS = AT_ONCE_MS;
const MSG_CAPABILITIES_REQUEST = 149;
const MSG_CAPABILITIES_RESPONSE = 150;
/** Longer than the simulation's 100 ms check for a proxy without Bluetooth clients, which drops every link. */
const LINK_CHECK_MS = 300;

const closers = useClosers();

const startNode = (options: SimulatedNodeOptions): Promise<SimulatedNode> => startProxy(closers, { name: 'proxy-old', ...options });

/** Connects and attaches with deadlines far below the library's defaults; returns the elapsed ms. */
async function connectAndAttach(
  port: number,
  extra: { password?: string } = {},
): Promise<{ api: ApiConnection; proxy: BluetoothProxy; ms: number }> {
  const started = performance.now();
  const api = await openApi(closers, port, { timeout: FAST_MS, ...extra });
  const proxy = await BluetoothProxy.attach(api, { timeout: FAST_MS, subscriberCheckTimeout: FAST_MS });
  return { api, proxy, ms: performance.now() - started };
}

const hex = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? []).toString('hex');
const count = (list: readonly number[], id: number): number => list.filter((t) => t === id).length;

describe('older firmware generations', () => {
  for (const generation of FIRMWARE_GENERATIONS) {
    const profile = firmwareProfile(generation);
    const legacyAds = profile.advertisements === 'legacy';

    it(`old-firmware ${generation} - connect + attach without waiting, advertisements and GATT`, async () => {
      const node = await startNode({ firmware: generation });
      const sessionReady = node.server.nextSession();
      const { api, proxy, ms } = await connectAndAttach(node.server.address.port);
      const session: ApiSession = await sessionReady;
      expect(ms).toBeLessThan(FAST_MS);
      expect(api.hello.apiVersionMinor).toBe(profile.apiVersion.minor);
      expect(api.deviceInfo.esphomeVersion).toBe(profile.esphomeVersion);
      expect(proxy.features).toBe(profile.featureFlags);
      expect(api.deviceInfo.legacyBluetoothProxyVersion).toBe(profile.legacyProxyVersion);
      expect(session.state).toBe('authenticated');
      if (profile.apiVersion.minor < 15) {
        // The capabilities request rode along with Hello; this firmware has no handler and stays silent.
        expect(count(session.received, MSG_CAPABILITIES_REQUEST)).toBe(1);
        expect(await api.ping({ timeout: FAST_MS })).toBeGreaterThanOrEqual(0);
      }
      if (proxy.hasFeature(F.FEATURE_STATE_AND_MODE)) expect(proxy.scannerState?.state).toBe('running');
      else expect(proxy.scannerState).toBeUndefined();
      expect(proxy.subscription).toMatchObject({ state: 'subscribed', confirmed: true });

      // Advertisements arrive in the generation's form and parse the same.
      const tilt = await nextAdvertisement(proxy, (ad) => ad.address === TILT);
      expect(hex(tilt.manufacturerData.get(0x004c)).slice(0, 8)).toBe('0215a495');
      expect(tilt.raw.length === 0).toBe(legacyAds);
      const named = await nextAdvertisement(proxy, (ad) => ad.address === DEMO && ad.localName !== undefined);
      expect(named.localName).toBe('esphome-ble-demo');

      // GATT (every generation here has v3 connections with remote caching).
      const link = await proxy.connect(DEMO, { timeout: 3000 });
      const services = await link.getServices({ timeout: 3000 });
      expect(services.services.length).toBeGreaterThan(0);
      expect(new TextDecoder().decode(await link.read('2a00', { timeout: 3000 }))).toBe('esphome-ble-demo');
      await link.disconnect({ timeout: 3000 });
      expect(node.bluetooth.allocated).toEqual([]);
      if (proxy.hasFeature(F.CACHE_CLEARING)) await proxy.clearCache(DEMO, { timeout: 3000 });
      // 2023.5 answers UNPAIR with its own message (86), later generations with the pairing message (85).
      if (proxy.hasFeature(F.PAIRING)) await proxy.unpair(DEMO, { timeout: 3000 });
      await proxy.detach({ timeout: 3000 });
    });
  }

  it('old-firmware - every generation also connects and attaches over Noise (server hello with name, MAC from 2025.5)', async () => {
    for (const generation of FIRMWARE_GENERATIONS) {
      const node = await startNode({ firmware: generation, psk: TEST_PSK });
      const started = performance.now();
      const api = await openApi(closers, node, { psk: TEST_PSK, timeout: FAST_MS, expectedName: 'proxy-old' });
      const proxy = await BluetoothProxy.attach(api, { timeout: FAST_MS });
      expect(performance.now() - started, generation).toBeLessThan(FAST_MS);
      expect(proxy.subscription.confirmed, generation).toBe(true);
    }
  });

  it('old-firmware 2024.10 - with a password the capabilities request is not sent at all', async () => {
    const node = await startNode({ firmware: '2024.10', password: 'sesame' });
    const sessionReady = node.server.nextSession();
    const { ms } = await connectAndAttach(node.server.address.port, { password: 'sesame' });
    const session = await sessionReady;
    expect(ms).toBeLessThan(FAST_MS);
    expect(count(session.received, MSG_CAPABILITIES_REQUEST)).toBe(0);
  });

  for (const generation of ['2024.10', '2025.5'] as const) {
    it(`old-firmware ${generation} - a missing password fails fast with InvalidPasswordError, not a timeout`, async () => {
      const node = await startNode({ firmware: generation, password: 'sesame' });
      const started = performance.now();
      const error = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, timeout: FAST_MS }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(InvalidPasswordError);
      expect(performance.now() - started).toBeLessThan(FAST_MS);
    });
  }

  it('old-firmware 2026.7 - capabilities are requested and answered (API 1.15)', async () => {
    const node = await startNode({ firmware: '2026.7' });
    const sessionReady = node.server.nextSession();
    const { api } = await connectAndAttach(node.server.address.port);
    const session = await sessionReady;
    expect(count(session.received, MSG_CAPABILITIES_REQUEST)).toBe(1);
    expect(api.deviceInfo.bluetoothMacAddress).toBe(node.bluetooth.bluetoothMac);
  });

  for (const [generation, expected] of [
    ['2024.10', 'ignored'],
    ['2025.5', 'closed'],
  ] as const satisfies ReadonlyArray<readonly [FirmwareGeneration, string]>) {
    it(`old-firmware ${generation} - a capabilities request before authentication is ${expected}`, async () => {
      // A password keeps the session unauthenticated after Hello on both generations.
      const node = await startNode({ firmware: generation, password: 'sesame' });
      const socket = netConnect({ host: '127.0.0.1', port: node.server.address.port });
      closers.push(() => socket.destroy());
      const received: number[] = [];
      const decoder = new PlaintextFrameDecoder((type) => received.push(type));
      socket.on('data', (chunk: Buffer) => decoder.push(chunk));
      const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
      const hello = HelloRequest.toBinary(HelloRequest.create({ clientInfo: 'raw', apiVersionMajor: 1, apiVersionMinor: 15 }));
      socket.write(Buffer.concat([encodePlaintextFrame(1, hello), encodePlaintextFrame(MSG_CAPABILITIES_REQUEST, new Uint8Array(0))]));
      socket.write(encodePlaintextFrame(9, new Uint8Array(0)));
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([closed, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 300)))]);
      clearTimeout(timer);
      expect(received).not.toContain(MSG_CAPABILITIES_RESPONSE);
      if (expected === 'closed') {
        expect(outcome).toBe(true);
      } else {
        expect(outcome).toBe(false);
        expect(received).toEqual([2, 10]); // Hello and DeviceInfo answered, the unknown id skipped
      }
    });
  }

  for (const generation of ['2022.12', '2023.5'] as const) {
    it(`old-firmware ${generation} - no single subscriber yet: a second client attaches too, every client hears every answer`, async () => {
      const node = await startNode({ firmware: generation });
      const port = node.server.address.port;
      const first = await connectAndAttach(port);
      // The probe's answer goes to every client, so the second attach is confirmed at once: it does get everything.
      const second = await connectAndAttach(port);
      expect(second.ms).toBeLessThan(FAST_MS);
      expect(second.proxy.subscription).toMatchObject({ state: 'subscribed', confirmed: true });
      await Promise.all([nextAdvertisement(first.proxy, () => true), nextAdvertisement(second.proxy, () => true)]);
      const seenByFirst: ConnectionStateChange[] = [];
      first.proxy.onConnectionState((state) => seenByFirst.push(state));
      const link = await second.proxy.connect(DEMO, { timeout: 3000 });
      await link.getServices({ timeout: 3000 });
      expect(new TextDecoder().decode(await link.read('2a00', { timeout: 3000 }))).toBe('esphome-ble-demo');
      expect(seenByFirst).toContainEqual(expect.objectContaining({ address: DEMO, connected: true }));
      // The firmware drops its links only once no client at all is connected.
      second.api.destroy();
      await new Promise((resolve) => setTimeout(resolve, LINK_CHECK_MS));
      expect(node.bluetooth.allocated).toEqual([DEMO]);
      first.api.destroy();
      await expect.poll(() => node.bluetooth.allocated).toEqual([]);
    });
  }

  it('old-firmware 2023.6 - the subscriber probe tells a second client at once that it is not the subscriber', async () => {
    const node = await startNode({ firmware: '2023.6' });
    await connectAndAttach(node.server.address.port);
    const second = await openApi(closers, node, { timeout: FAST_MS });
    const started = performance.now();
    // No scanner state on this firmware; the probe's answer (sent to the subscriber only) decides, no timeout needed.
    await expect(BluetoothProxy.attach(second, { subscriberCheckTimeout: 10_000 })).rejects.toBeInstanceOf(NotSubscriberError);
    expect(performance.now() - started).toBeLessThan(FAST_MS);
  });

  it('old-firmware 2023.6 - raw batches only for a subscriber that asks for them', async () => {
    const node = await startNode({ firmware: '2023.6' });
    const api = await openApi(closers, node, { timeout: FAST_MS });
    const ids: number[] = [];
    api.onRaw(67, () => ids.push(67));
    api.onRaw(93, () => ids.push(93));
    api.sendRaw(66, new Uint8Array(0)); // flags = 0
    await expect.poll(() => ids.length).toBeGreaterThan(0);
    expect(new Set(ids)).toEqual(new Set([67]));
  });

  it('old-firmware 2024.10 - a pooled link survives slot reports that carry no allocated list', async () => {
    const node = await startNode({ firmware: '2024.10' });
    const pool = new ProxyPool([`127.0.0.1:${node.server.address.port}`]);
    try {
      const device = await pool.establishConnection(DEMO, { timeout: 5000 });
      node.bluetooth.setBusySlots(1); // a slot report without `allocated`
      await expect.poll(() => pool.proxies()[0]?.slots?.free).toBe(1);
      expect(device.isConnected).toBe(true);
      expect(new TextDecoder().decode(await device.read('2a00'))).toBe('esphome-ble-demo');
      await device.disconnect();
    } finally {
      await pool.close();
    }
  });

  it('old-firmware - esphome-ble serve --firmware 2022.12 plays the generation', async () => {
    const server = await startCliServer(['--port', '0', '--firmware', '2022.12']);
    try {
      const { port } = server.lines[0] as { port: number };
      const { api, proxy, ms } = await connectAndAttach(port);
      expect(ms).toBeLessThan(FAST_MS);
      expect(api.hello.apiVersionMinor).toBe(7);
      expect(proxy.features).toBe(F.PASSIVE_SCAN | F.ACTIVE_CONNECTIONS | F.REMOTE_CACHING);
      const ad = await nextAdvertisement(proxy, () => true);
      expect(ad.raw.length).toBe(0);
      api.destroy();
    } finally {
      await server.stop();
    }
  });
});
