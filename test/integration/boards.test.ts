import { describe, expect, it } from 'vitest';
import { formatMac } from '../../src/bluetooth/address.js';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import type { ApiConnection } from '../../src/connection/connection.js';
import { BleConnectError, NoProxyAvailableError } from '../../src/errors.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceRequest,
  BluetoothGATTReadRequest,
  PingRequest,
  PingResponse,
  SubscribeBluetoothConnectionsFreeRequest,
} from '../../src/gen/api_pb.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { RELAY_OUT_OF_SLOTS_ERROR } from '../../src/relay/relay-proxy.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import { useClosers } from '../helpers/closers.js';
import { connectRequest, DEMO_MAC, openApi, profileWithDevices, startProxy, waitHeard } from '../helpers/fleet.js';
import { AT_ONCE_MS, LONG_WAIT_MS } from '../helpers/wait.js';

const DEMO = 0xc0ffee000001;
/** The first clone of profileWithDevices(). */
const CLONE = 0xc0ffee000100;

const closers = useClosers();

const startNode = (name: string, options: SimulatedNodeOptions = {}): Promise<SimulatedNode> => startProxy(closers, { name, ...options });

const addr = (node: SimulatedNode): string => `127.0.0.1:${node.server.address.port}`;

const session = (node: SimulatedNode): Promise<ApiConnection> => openApi(closers, node);

function pool(specs: string[]): ProxyPool {
  const p = new ProxyPool(specs, { backoff: { initialDelay: 50, maxDelay: 100 } });
  closers.push(() => p.close());
  return p;
}

describe('boards', () => {
  it('boards - an advertisement-only ESP32 says so in its flags and leaves connect, GATT and slot requests unanswered', async () => {
    const node = await startNode('adv-only', { board: 'esp32-adv-only' });
    const api = await session(node);
    expect(api.deviceInfo.bluetoothProxyFeatureFlags).toBe(0x61);
    expect(api.deviceInfo).toMatchObject({ manufacturer: 'Espressif', model: 'esp32dev' });
    api.send(BluetoothDeviceRequest, connectRequest());
    api.send(BluetoothGATTReadRequest, { address: DEMO, handle: 12 });
    const slots = api.request(SubscribeBluetoothConnectionsFreeRequest, {}, BluetoothConnectionsFreeResponse, () => true, { timeout: 300 });
    // The session is alive (a ping behind the requests is answered), yet none of them is.
    await api.request(PingRequest, {}, PingResponse, () => true, { timeout: 1000 });
    await expect(slots).rejects.toMatchObject({ code: 'ESPAPI_ERR_TIMEOUT' });
    expect(node.bluetooth.connectRequests).toBe(0);
    expect(node.bluetooth.linkAddresses).toEqual([]);
    // Advertisements still flow to the subscriber.
    const proxy = await BluetoothProxy.attach(api, { timeout: 3000 });
    const heard = await new Promise<string>((resolve) => {
      const off = proxy.onAdvertisement((ad) => {
        off();
        resolve(ad.mac);
      });
    });
    expect(heard).toMatch(/^[0-9A-F:]{17}$/);
    await expect(proxy.connect(DEMO)).rejects.toMatchObject({ code: 'ESPAPI_ERR_FEATURE_MISSING' });
  });

  it('boards - a LibreTiny hub forwards advertisements only, without scanner state (0x21); RP2040/RP2350 have one slot', async () => {
    const [bk, rp, rp2] = await Promise.all([
      startNode('bk', { board: 'bk72xx' }),
      startNode('pico', { board: 'rp2040' }),
      startNode('pico2', { board: 'rp2350' }),
    ]);
    const [bkApi, rpApi, rp2Api] = await Promise.all([session(bk!), session(rp!), session(rp2!)]);
    expect(bkApi.deviceInfo).toMatchObject({ bluetoothProxyFeatureFlags: 0x21, manufacturer: 'Beken' });
    expect(rpApi.deviceInfo).toMatchObject({ bluetoothProxyFeatureFlags: 0xef, manufacturer: 'Raspberry Pi', model: 'rpipicow' });
    expect(rp2Api.deviceInfo).toMatchObject({ bluetoothProxyFeatureFlags: 0xef, model: 'rpipico2w' });
    const slots = await rpApi.request(SubscribeBluetoothConnectionsFreeRequest, {}, BluetoothConnectionsFreeResponse);
    expect(slots).toMatchObject({ free: 1, limit: 1 });
    // The board combines with a firmware generation: its bits are masked by the board.
    const old = await startNode('pico-2026-1', { board: 'rp2040', firmware: '2026.1' });
    expect((await session(old)).deviceInfo.bluetoothProxyFeatureFlags).toBe(0xef);
  });

  it('boards - the pool keeps an advertisement-only proxy out of connects, even when it hears the device best', async () => {
    const advOnly = await startNode('adv-near', { board: 'esp32-adv-only', rssiOffset: 25 });
    const full = await startNode('full-far');
    const p = pool([addr(advOnly), addr(full)]);
    await p.ready({ timeout: 3000 });
    await waitHeard(p, DEMO_MAC, 2);
    const ranking = p.explain(DEMO_MAC);
    expect(ranking.map((r) => [r.proxy, r.eligible, r.reason])).toEqual([
      [addr(full), true, undefined],
      [addr(advOnly), false, 'no active connections'],
    ]);
    const diagnostics = p.diagnostics();
    expect(diagnostics.map((d) => [d.name, d.advertisementOnly, d.state, d.slots])).toEqual([
      ['adv-near', true, 'online', undefined],
      ['full-far', false, 'online', expect.objectContaining({ limit: 3 })],
    ]);
    const connection = await p.establishConnection(DEMO_MAC, { timeout: 5000 });
    expect(connection.proxy).toBe(addr(full));
    await connection.disconnect();
    expect(advOnly.bluetooth.connectRequests).toBe(0);
  });

  it('boards - with only advertisement-only proxies hearing it, a connect fails at once and asks none of them', async () => {
    const advOnly = await startNode('adv-alone', { board: 'bk72xx' });
    const p = pool([addr(advOnly)]);
    await p.ready({ timeout: 3000 });
    await waitHeard(p, DEMO_MAC, 1);
    const started = Date.now();
    const error = await p.establishConnection(DEMO_MAC, { maxAttempts: 2, timeout: LONG_WAIT_MS }).catch((e: unknown) => e);
    // An advertisement-only proxy can never connect (a permanent cause in the failure table): no attempt is spent.
    expect(error).toBeInstanceOf(NoProxyAvailableError);
    expect((error as NoProxyAvailableError).proxies).toEqual([
      expect.objectContaining({ proxy: addr(advOnly), code: 'ESPAPI_ERR_FEATURE_MISSING' }),
    ]);
    // At once: not after the call's timeout, nor a second attempt.
    expect(Date.now() - started).toBeLessThan(AT_ONCE_MS);
    expect(advOnly.bluetooth.connectRequests).toBe(0);
  });

  it('boards - a one-slot proxy in the pool: a second device waits for the slot and gets it when the first lets go', async () => {
    const pico = await startNode('pico', { board: 'rp2040', profile: await profileWithDevices(1) });
    const p = pool([addr(pico)]);
    await p.ready({ timeout: 3000 });
    await waitHeard(p, DEMO_MAC, 1);
    await waitHeard(p, formatMac(CLONE), 1);
    const first = await p.establishConnection(DEMO_MAC, { timeout: 5000 });
    expect(p.proxies()[0]!.slots).toMatchObject({ free: 0, limit: 1 });
    const second = p.establishConnection(CLONE, { timeout: 8000, slotWait: 5000 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(pico.bluetooth.linkAddresses).toEqual([DEMO]);
    await first.disconnect();
    const connection = await second;
    expect(connection.mac).toBe(formatMac(CLONE));
    expect(pico.bluetooth.linkAddresses).toEqual([CLONE]);
    await connection.disconnect();
  });

  it('boards - a one-slot proxy behind the relay: the second client gets 0x100 until the first lets go', async () => {
    const pico = await startNode('pico-relayed', { board: 'rp2040', profile: await profileWithDevices(1) });
    const relay = new RelayServer({
      proxies: [{ host: '127.0.0.1', port: pico.server.address.port }],
      backoff: { initialDelay: 20, maxDelay: 100, jitter: 0, expectedDisconnectDelay: 20 },
    });
    closers.push(() => relay.close());
    const [listening] = await relay.start({ timeout: 3000 });
    const client = async (): Promise<BluetoothProxy> => {
      const api = await openApi(closers, listening!.port);
      return BluetoothProxy.attach(api, { timeout: 3000 });
    };
    const [one, two] = await Promise.all([client(), client()]);
    expect(two.api.deviceInfo.bluetoothProxyFeatureFlags).toBe(0xef);
    const link = await one.connect(DEMO, { addressType: 1, timeout: 3000 });
    const refused = await two.connect(CLONE, { addressType: 1, timeout: 3000 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BleConnectError);
    expect((refused as BleConnectError).reason).toBe(RELAY_OUT_OF_SLOTS_ERROR);
    await link.disconnect({ timeout: 3000 });
    await expect.poll(() => pico.bluetooth.linkAddresses, { timeout: 3000 }).toEqual([]);
    const second = await two.connect(CLONE, { addressType: 1, timeout: 3000 });
    expect(pico.bluetooth.linkAddresses).toEqual([CLONE]);
    await second.disconnect({ timeout: 3000 });
  });
});
