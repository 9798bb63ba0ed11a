// One adapter per library for the scenarios the benchmarks share: connect until device info is known,
// subscribe to advertisements, connect a BLE device and read a characteristic, close.
import { createRequire } from 'node:module';
import { DEMO, loadDist } from './common.mjs';

const require = createRequire(import.meta.url);
const ours = await loadDist('index.js');
const { EspHomeClient } = await import('esphome-client');
const { Client: TwoColorsClient } = require('@2colors/esphome-native-api');

const HOST = '127.0.0.1';
/** esphome-client arms an AbortSignal.timeout per request (unref'd); short ones keep the process tidy. */
const EC_TIMEOUT_MS = 5000;
const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** Our library: ApiConnection (+ BluetoothProxy when Bluetooth is needed). */
export const oursAdapter = {
  name: 'esphome-ble',
  async connect({ port, psk }) {
    const api = await ours.ApiConnection.connect({ host: HOST, port, psk, clientInfo: 'bench' });
    if (api.deviceInfo === undefined) throw new Error('no device info');
    return { close: () => api.close(), api };
  },
  async subscribe({ port, psk }, onAd) {
    const api = await ours.ApiConnection.connect({ host: HOST, port, psk, clientInfo: 'bench' });
    const proxy = await ours.BluetoothProxy.attach(api);
    const off = onAd ? proxy.onAdvertisement(onAd) : () => {};
    return {
      proxy,
      api,
      async close() {
        off();
        await api.close();
      },
    };
  },
  async subscribeIterator({ port, psk }, onAd, total) {
    const session = await oursAdapter.subscribe({ port, psk });
    const abort = new AbortController();
    const loop = (async () => {
      for await (const ad of session.proxy.advertisements({ highWaterMark: total, signal: abort.signal })) onAd(ad);
    })().catch(() => {});
    return {
      async close() {
        abort.abort();
        await loop;
        await session.close();
      },
    };
  },
  async gatt({ port, psk }) {
    const session = await oursAdapter.subscribe({ port, psk });
    const link = await session.proxy.connect(DEMO.address, { addressType: DEMO.addressType });
    return {
      read: (handle) => link.read(handle),
      async close() {
        await link.disconnect();
        await session.close();
      },
    };
  },
};

function ecClient({ port, psk, name }) {
  return new EspHomeClient({
    host: HOST,
    port,
    clientId: 'bench',
    logger: silent,
    reconnect: false,
    keepAlive: false,
    connectTimeoutMs: EC_TIMEOUT_MS,
    handshakeTimeoutMs: EC_TIMEOUT_MS,
    gracefulDisconnectTimeoutMs: EC_TIMEOUT_MS,
    ...(psk ? { psk, serverName: name } : {}),
  });
}

/** esphome-client 2.x (hjdhjd). */
export const esphomeClientAdapter = {
  name: 'esphome-client',
  async connect(target) {
    const c = ecClient(target);
    await c.connect();
    if (c.deviceInfo() === null) throw new Error('no device info');
    return { close: () => c.disconnectAsync() };
  },
  /** Callback delivery (client.on); an idle advertisements() iterator holds the wire subscription. */
  async subscribe(target, onAd) {
    const c = ecClient(target);
    await c.connect();
    const off = c.on('bluetoothAdvertisement', onAd);
    const holder = c.bluetooth.advertisements({ highWaterMark: 1 })[Symbol.asyncIterator]();
    return {
      client: c,
      async close() {
        off[Symbol.dispose]();
        await holder.return?.();
        await c.disconnectAsync();
      },
    };
  },
  async subscribeIterator(target, onAd, total) {
    const c = ecClient(target);
    await c.connect();
    const abort = new AbortController();
    const stream = c.bluetooth.advertisements({ highWaterMark: total, signal: abort.signal });
    const loop = (async () => {
      for await (const ad of stream) onAd(ad);
    })().catch(() => {});
    return {
      async close() {
        abort.abort();
        await loop;
        await c.disconnectAsync();
      },
    };
  },
  async gatt(target) {
    const c = ecClient(target);
    await c.connect();
    // The proxy answers GATT only to its advertisement subscriber.
    const holder = c.bluetooth.advertisements({ highWaterMark: 1 })[Symbol.asyncIterator]();
    const address = BigInt(DEMO.address);
    await c.bluetooth.connect(address, { addressType: DEMO.addressType, useCache: false, timeoutMs: EC_TIMEOUT_MS });
    return {
      read: (handle) => c.bluetooth.readCharacteristic(address, handle, { timeoutMs: EC_TIMEOUT_MS }),
      async close() {
        await c.bluetooth.disconnect(address, { timeoutMs: EC_TIMEOUT_MS });
        await holder.return?.();
        await c.disconnectAsync();
      },
    };
  },
};

function twoColorsClient({ port, psk, name }, ble) {
  const client = new TwoColorsClient({
    host: HOST,
    port,
    clientInfo: 'bench',
    reconnect: false,
    initializeDeviceInfo: true,
    initializeListEntities: false,
    initializeSubscribeStates: false,
    initializeSubscribeBLEAdvertisements: ble,
    ...(psk ? { encryptionKey: psk, expectedServerName: name } : {}),
  });
  return client;
}

/** Connects and resolves once 'initialized' fired (device info read; BLE subscribed when asked). */
function twoColorsReady(client) {
  return new Promise((resolve, reject) => {
    const onError = (error) => {
      client.off('initialized', onReady);
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    const onReady = () => {
      client.off('error', onError);
      resolve();
    };
    client.once('initialized', onReady);
    client.once('error', onError);
    client.connect();
  });
}

/** @2colors/esphome-native-api 1.x (google-protobuf, noise-c wasm). */
export const twoColorsAdapter = {
  name: '@2colors',
  async connect(target) {
    const client = twoColorsClient(target, false);
    await twoColorsReady(client);
    if (client.deviceInfo === null) throw new Error('no device info');
    client.on('error', () => {});
    return {
      close: async () => {
        client.disconnect();
      },
    };
  },
  async subscribe(target, onAd) {
    const client = twoColorsClient(target, true);
    client.on('ble', onAd);
    await twoColorsReady(client);
    client.on('error', () => {});
    return {
      async close() {
        client.disconnect();
      },
    };
  },
  async gatt(target) {
    const client = twoColorsClient(target, true);
    await twoColorsReady(client);
    client.on('error', () => {});
    const api = client.connection;
    await api.connectBluetoothDeviceService(DEMO.address, DEMO.addressType);
    return {
      read: (handle) => api.readBluetoothGATTCharacteristicService(DEMO.address, handle),
      async close() {
        await api.disconnectBluetoothDeviceService(DEMO.address);
        client.disconnect();
      },
    };
  },
};

export const ADAPTERS = [oursAdapter, esphomeClientAdapter, twoColorsAdapter];
