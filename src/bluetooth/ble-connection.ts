import type { ApiConnection } from '../connection/connection.js';
import { BleDisconnectedError, ConnectionClosedError, GattError, InvalidArgumentError, PairingError } from '../errors.js';
import {
  type BluetoothDevicePairingResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  type BluetoothGATTErrorResponse,
  BluetoothGATTGetServicesRequest,
  type BluetoothGATTGetServicesResponse,
  type BluetoothGATTNotifyDataResponse,
  BluetoothGATTNotifyRequest,
  type BluetoothGATTNotifyResponse,
  BluetoothGATTReadDescriptorRequest,
  BluetoothGATTReadRequest,
  type BluetoothGATTReadResponse,
  type BluetoothGATTService,
  BluetoothGATTWriteDescriptorRequest,
  BluetoothGATTWriteRequest,
  type BluetoothGATTWriteResponse,
  BluetoothSetConnectionParamsRequest,
  type BluetoothSetConnectionParamsResponse,
} from '../gen/api_pb.js';
import { type CallOptions, pendingReply, type Settler, withDeadline } from '../util/abort.js';
import { AsyncQueue, endOnAbort, type QueueOptions } from '../util/async-queue.js';
import { formatMac } from './address.js';
import { describeConnectionError, describeGattError } from './codes.js';
import { type ConnectionParams, validateParams } from './connection-params.js';
import { BluetoothProxyFeature } from './features.js';
import { type GattCharacteristic, GattServices, servicesFromProto } from './gatt.js';
import { formatHandle, GattOperations } from './gatt-operations.js';
import { NotifySubscriptions } from './notify-subscriptions.js';
import { BLE_DISCONNECT_TIMEOUT_MS, BLE_OPERATION_TIMEOUT_MS } from './timeouts.js';

/** The part of BluetoothProxy a link needs (kept narrow so the two modules do not knot together). */
export interface LinkHost {
  readonly api: ApiConnection;
  readonly label: string;
  requireFeature(feature: number, what: string): void;
  /** Called once the link is gone, so the proxy forgets it. */
  linkClosed(link: BleConnection): void;
  /** Resolves once the proxy has freed the slot of an ended link to `address`. */
  slotReleased(address: number, signal?: AbortSignal): Promise<void>;
}

export type { ConnectionParams } from './connection-params.js';

/** Why a link ended. */
export interface LinkClosed {
  /** ESP-IDF reason code from the proxy (0 when we closed it or the API session ended). */
  readonly reason: number;
  readonly reasonName: string;
  /** True when we asked for the disconnect. */
  readonly requested: boolean;
}

const EMPTY = new Uint8Array(0);

/** One BLE link to a peripheral through a proxy: GATT services, read, write, notify, pairing. */
export class BleConnection {
  /** Peripheral address (48-bit number). */
  readonly address: number;
  /** Peripheral address as `AA:BB:CC:DD:EE:FF`. */
  readonly mac: string;
  /** ATT MTU of the link. */
  readonly mtu: number;
  /** True when connected with the proxy's v3 "with cache" request (services came from our cache). */
  readonly usedCache: boolean;
  readonly #host: LinkHost;
  #services: GattServices | undefined;
  #servicesRequested = false;
  readonly #ops = new GattOperations(
    () => ` on ${this.mac} via ${this.#host.label}`,
    () => this.#assertConnected(),
  );
  readonly #notify = new NotifySubscriptions(this, (handle, enable, options) => this.#sendNotifyRequest(handle, enable, options));
  #servicesCollect: (Settler<BluetoothGATTService[]> & { services: BluetoothGATTService[] }) | undefined;
  #pairing: Settler<{ paired: boolean; error: number }> | undefined;
  #params: Settler<number> | undefined;
  #disconnectWaiters = new Set<() => void>();
  #closedInfo: LinkClosed | undefined;
  #disconnectRequested = false;
  readonly #closed: Promise<LinkClosed>;
  #resolveClosed!: (info: LinkClosed) => void;
  readonly #closeListeners = new Set<(info: LinkClosed) => void>();

  /** Created by BluetoothProxy.connect(), not by users. */
  constructor(host: LinkHost, address: number, mtu: number, services: GattServices | undefined, usedCache: boolean) {
    this.#host = host;
    this.address = address;
    this.mac = formatMac(address);
    this.mtu = mtu;
    this.usedCache = usedCache;
    this.#services = services;
    this.#closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  /** True while the link is up. */
  get isConnected(): boolean {
    return this.#closedInfo === undefined;
  }

  /** The service table, once fetched or supplied from a cache. */
  get services(): GattServices | undefined {
    return this.#services;
  }

  /** Resolves when the link ends, with the reason. */
  closed(): Promise<LinkClosed> {
    return this.#closed;
  }

  /** Calls `listener` once when the link ends; returns an unsubscribe function. */
  onDisconnect(listener: (info: LinkClosed) => void): () => void {
    if (this.#closedInfo !== undefined) {
      listener(this.#closedInfo);
      return () => {};
    }
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /** Fetches the service table (once per link; the proxy never sends it twice). */
  async getServices(options: CallOptions = {}): Promise<GattServices> {
    if (this.#services !== undefined) return this.#services;
    this.#assertConnected();
    if (this.#servicesRequested) throw new InvalidArgumentError(`Services of ${this.mac} were already requested on this link`);
    this.#servicesRequested = true;
    const proto = await withDeadline(
      `Service discovery of ${this.mac} via ${this.#host.label}`,
      options,
      BLE_OPERATION_TIMEOUT_MS,
      (signal) =>
        pendingReply<BluetoothGATTService[]>(
          signal,
          (settle) => {
            this.#servicesCollect = { ...settle, services: [] };
            this.#host.api.send(BluetoothGATTGetServicesRequest, { address: this.address });
          },
          () => {
            this.#servicesCollect = undefined;
          },
        ),
    );
    this.#services = new GattServices(servicesFromProto(proto));
    return this.#services;
  }

  /** Reads a characteristic value. `key` is a value handle, or a UUID once services are known. */
  read(key: number | string, options: CallOptions = {}): Promise<Uint8Array> {
    const handle = this.#handleOf(key);
    return this.#ops.run(handle, 'read', `Read of handle ${formatHandle(handle)}`, options, () =>
      this.#host.api.send(BluetoothGATTReadRequest, { address: this.address, handle }),
    );
  }

  /** Writes a characteristic value; `withResponse` (default true) waits for the peripheral's acknowledgement. */
  async write(key: number | string, data: Uint8Array, options: CallOptions & { withResponse?: boolean } = {}): Promise<void> {
    const handle = this.#handleOf(key);
    const withResponse = options.withResponse ?? true;
    if (!withResponse) {
      options.signal?.throwIfAborted();
      this.#assertConnected();
      this.#host.api.send(BluetoothGATTWriteRequest, { address: this.address, handle, response: false, data });
      return;
    }
    await this.#ops.run(handle, 'write', `Write to handle ${formatHandle(handle)}`, options, () =>
      this.#host.api.send(BluetoothGATTWriteRequest, { address: this.address, handle, response: true, data }),
    );
  }

  /** Reads a descriptor by its handle. */
  readDescriptor(handle: number, options: CallOptions = {}): Promise<Uint8Array> {
    return this.#ops.run(handle, 'read', `Descriptor read of handle ${formatHandle(handle)}`, options, () =>
      this.#host.api.send(BluetoothGATTReadDescriptorRequest, { address: this.address, handle }),
    );
  }

  /** Writes a descriptor by its handle (the proxy always acknowledges descriptor writes). */
  async writeDescriptor(handle: number, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    await this.#ops.run(handle, 'write', `Descriptor write to handle ${formatHandle(handle)}`, options, () =>
      this.#host.api.send(BluetoothGATTWriteDescriptorRequest, { address: this.address, handle, data }),
    );
  }

  /**
   * Subscribes to notifications (or indications) of a characteristic: registers the handle with the
   * proxy, then writes the CCCD ourselves (proxies never write it on v3 connections). Returns an
   * unsubscribe function that disables both.
   */
  async startNotify(key: number | string, listener: (data: Uint8Array) => void, options: CallOptions = {}): Promise<() => Promise<void>> {
    const characteristic = this.#characteristicOf(key);
    return this.#notify.start(characteristic, characteristic?.handle ?? (key as number), listener, options);
  }

  /** Notification payloads of a characteristic as a stream; ending the loop unsubscribes. */
  async notifications(key: number | string, options: CallOptions & QueueOptions = {}): Promise<AsyncIterableIterator<Uint8Array>> {
    let stop: (() => Promise<void>) | undefined;
    const queue = new AsyncQueue<Uint8Array>(options, () => {
      void stop?.().catch(() => {});
    });
    stop = await this.startNotify(key, (data) => queue.push(data), options);
    const detach = endOnAbort(queue, options.signal);
    this.onDisconnect(() => {
      detach();
      queue.end();
    });
    return queue;
  }

  /** Pairs (bonds) with the peripheral using the proxy's IO capability. */
  async pair(options: CallOptions = {}): Promise<void> {
    this.#host.requireFeature(BluetoothProxyFeature.PAIRING, 'pairing');
    this.#assertConnected();
    const result = await withDeadline(`Pairing with ${this.mac}`, options, BLE_OPERATION_TIMEOUT_MS, (signal) =>
      pendingReply<{ paired: boolean; error: number }>(
        signal,
        (settle) => {
          this.#pairing = settle;
          this.#host.api.send(BluetoothDeviceRequest, { address: this.address, requestType: BluetoothDeviceRequestType.PAIR });
        },
        () => {
          this.#pairing = undefined;
        },
      ),
    );
    if (!result.paired) throw new PairingError(`Pairing with ${this.mac} failed (error ${result.error})`, this.address, result.error);
  }

  /** Asks the proxy to update the link's connection parameters. */
  async setConnectionParams(params: ConnectionParams, options: CallOptions = {}): Promise<void> {
    this.#host.requireFeature(BluetoothProxyFeature.CONNECTION_PARAMS_SETTING, 'connection parameters');
    validateParams(params);
    this.#assertConnected();
    const error = await withDeadline(`Connection parameters of ${this.mac}`, options, BLE_OPERATION_TIMEOUT_MS, (signal) =>
      pendingReply<number>(
        signal,
        (settle) => {
          this.#params = settle;
          this.#host.api.send(BluetoothSetConnectionParamsRequest, { address: this.address, ...params });
        },
        () => {
          this.#params = undefined;
        },
      ),
    );
    if (error !== 0) {
      const described = describeGattError(error);
      throw new GattError(`Connection parameter update for ${this.mac} failed: ${described.name}`, this.address, 0, error, described.name);
    }
  }

  /**
   * Disconnects and waits (bounded) until the proxy confirms the slot is free, so an immediate reconnect
   * is not ignored by a proxy still tearing the link down. Idempotent.
   */
  async disconnect(options: CallOptions = {}): Promise<void> {
    const what = `Disconnect of ${this.mac}`;
    if (this.#closedInfo !== undefined) {
      await withDeadline(what, options, BLE_DISCONNECT_TIMEOUT_MS, (signal) => this.#host.slotReleased(this.address, signal));
      return;
    }
    this.#disconnectRequested = true;
    try {
      this.#host.api.send(BluetoothDeviceRequest, { address: this.address, requestType: BluetoothDeviceRequestType.DISCONNECT });
    } catch (error) {
      this.handleLinkDown(0, error instanceof Error ? error.message : 'API session closed');
      return;
    }
    try {
      await withDeadline(what, options, BLE_DISCONNECT_TIMEOUT_MS, async (signal) => {
        await new Promise<void>((resolve, reject) => {
          const done = (): void => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          };
          const onAbort = (): void => {
            this.#disconnectWaiters.delete(done);
            reject(signal.reason);
          };
          signal.addEventListener('abort', onAbort, { once: true });
          this.#disconnectWaiters.add(done);
        });
        await this.#host.slotReleased(this.address, signal);
      });
    } finally {
      this.handleLinkDown(0, 'disconnected');
    }
  }

  /**
   * Sends DISCONNECT and ends the link locally at once, without waiting for the proxy's confirmation: for a
   * caller who gave up. The proxy still frees the slot, and the next connect to this address waits until it has.
   */
  release(): void {
    if (this.#closedInfo !== undefined) return;
    this.#disconnectRequested = true;
    try {
      this.#host.api.send(BluetoothDeviceRequest, { address: this.address, requestType: BluetoothDeviceRequestType.DISCONNECT });
    } catch (error) {
      this.handleLinkDown(0, error instanceof Error ? error.message : 'API session closed');
      return;
    }
    this.handleLinkDown(0, 'disconnected');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.disconnect();
  }

  // The proxy routes the answers for this link's address to one handler per message type.

  /** @internal a read (characteristic or descriptor) answered. */
  handleReadResponse(message: BluetoothGATTReadResponse): void {
    this.#ops.settle(message.handle, 'read', message.data);
  }

  /** @internal a write (characteristic or descriptor) acknowledged. */
  handleWriteResponse(message: BluetoothGATTWriteResponse): void {
    this.#ops.settle(message.handle, 'write', EMPTY);
  }

  /** @internal a notify registration acknowledged. */
  handleNotifyResponse(message: BluetoothGATTNotifyResponse): void {
    this.#ops.settle(message.handle, 'notify', EMPTY);
  }

  /** @internal a GATT error: fails the operation on its handle (handle 0: the service discovery). */
  handleGattError(message: BluetoothGATTErrorResponse): void {
    const { handle, error: status } = message;
    const described = describeGattError(status);
    const error = new GattError(
      `GATT error on ${this.mac} handle ${formatHandle(handle)} via ${this.#host.label}: ${described.name} (${status}) — ${described.description}`,
      this.address,
      handle,
      status,
      described.name,
    );
    if (this.#ops.fail(handle, error)) return;
    if (handle === 0 && this.#servicesCollect !== undefined) {
      const collect = this.#servicesCollect;
      this.#servicesCollect = undefined;
      collect.reject(error);
    }
  }

  /** @internal a notification or indication. */
  handleNotifyData(message: BluetoothGATTNotifyDataResponse): void {
    this.#notify.deliver(message.handle, message.data);
  }

  /** @internal a batch of the service table. */
  handleServices(message: BluetoothGATTGetServicesResponse): void {
    this.#servicesCollect?.services.push(...message.services);
  }

  /** @internal the service table is complete. */
  handleServicesDone(): void {
    const collect = this.#servicesCollect;
    this.#servicesCollect = undefined;
    collect?.resolve(collect.services);
  }

  /** @internal the answer to pair(). */
  handlePairing(message: BluetoothDevicePairingResponse): void {
    const pairing = this.#pairing;
    this.#pairing = undefined;
    pairing?.resolve({ paired: message.paired, error: message.error });
  }

  /** @internal the answer to setConnectionParams(). */
  handleConnectionParams(message: BluetoothSetConnectionParamsResponse): void {
    const params = this.#params;
    this.#params = undefined;
    params?.resolve(message.error);
  }

  /** @internal the proxy reported connected=false (or the API session ended). */
  handleLinkDown(reason: number, why?: string, cause?: Error): void {
    if (this.#closedInfo !== undefined) {
      for (const done of this.#disconnectWaiters) done();
      this.#disconnectWaiters.clear();
      return;
    }
    const reasonName = why ?? describeConnectionError(reason).name;
    const info: LinkClosed = { reason, reasonName, requested: this.#disconnectRequested };
    this.#closedInfo = info;
    const error =
      cause ??
      (reason === 0 && why === 'API session closed'
        ? new ConnectionClosedError(`API session to ${this.#host.label} closed; link to ${this.mac} lost`)
        : new BleDisconnectedError(`Link to ${this.mac} via ${this.#host.label} ended: ${reasonName} (${reason})`, this.address, reason));
    this.#ops.failAll(error);
    this.#servicesCollect?.reject(error);
    this.#servicesCollect = undefined;
    this.#pairing?.reject(error);
    this.#pairing = undefined;
    this.#params?.reject(error);
    this.#params = undefined;
    this.#notify.clear();
    for (const done of this.#disconnectWaiters) done();
    this.#disconnectWaiters.clear();
    this.#host.linkClosed(this);
    for (const listener of this.#closeListeners) listener(info);
    this.#closeListeners.clear();
    this.#resolveClosed(info);
  }

  #sendNotifyRequest(handle: number, enable: boolean, options: CallOptions): Promise<Uint8Array> {
    return this.#ops.run(handle, 'notify', `Notify ${enable ? 'enable' : 'disable'} on handle ${formatHandle(handle)}`, options, () =>
      this.#host.api.send(BluetoothGATTNotifyRequest, { address: this.address, handle, enable }),
    );
  }

  #handleOf(key: number | string): number {
    if (typeof key === 'number') return key;
    return this.#characteristicOf(key)!.handle;
  }

  #characteristicOf(key: number | string): GattCharacteristic | undefined {
    if (typeof key === 'number') return this.#services?.find(key);
    if (this.#services === undefined)
      throw new InvalidArgumentError(`Fetch the services of ${this.mac} before addressing characteristics by UUID`);
    return this.#services.get(key, this.mac);
  }

  #assertConnected(): void {
    if (this.#closedInfo !== undefined) {
      throw new BleDisconnectedError(
        `Link to ${this.mac} is closed (${this.#closedInfo.reasonName})`,
        this.address,
        this.#closedInfo.reason,
      );
    }
  }
}
