import type { BleConnection, ConnectionParams, LinkClosed } from '../bluetooth/ble-connection.js';
import type { GattServices } from '../bluetooth/gatt.js';
import { type AttemptRecord, GattError } from '../errors.js';
import type { CallOptions } from '../util/abort.js';
import type { QueueOptions } from '../util/async-queue.js';

/** What the pool lends a PooledConnection: cache clearing on both sides. */
export interface PooledConnectionHost {
  clearCache(connection: PooledConnection, options: CallOptions): Promise<void>;
  /** Drops our cache entry for this device via this proxy (the table proved stale). */
  invalidateCache(connection: PooledConnection): void;
  /** The device bonded through this proxy: route it here first from now on. */
  paired(connection: PooledConnection): void;
  /** Deletes the bond in this proxy's controller and forgets it. */
  unpair(connection: PooledConnection, options: CallOptions): Promise<void>;
}

/** GATT statuses that mean "this handle is not what the cached table says": ESP_GATT_INVALID_HANDLE, ESP_GATT_NOT_FOUND. */
const STALE_HANDLE_STATUSES = new Set([0x01, 0x0a]);

/**
 * A connected peripheral handed out by `ProxyPool.establishConnection` (the
 * BleakClientWithServiceCache analogue): services resolved, GATT by UUID or handle.
 */
export class PooledConnection {
  /** Peripheral address (48-bit number). */
  readonly address: number;
  /** `AA:BB:CC:DD:EE:FF`. */
  readonly mac: string;
  /** Id of the proxy carrying the link. */
  readonly proxy: string;
  /** The connect attempts it took, in order. */
  readonly timeline: readonly AttemptRecord[];
  /** True when services came from the GATT cache (no discovery on the proxy). */
  readonly fromCache: boolean;
  readonly link: BleConnection;
  readonly #services: GattServices;
  readonly #host: PooledConnectionHost;

  /** Created by the pool, not by users. */
  constructor(link: BleConnection, services: GattServices, proxy: string, timeline: readonly AttemptRecord[], host: PooledConnectionHost) {
    this.link = link;
    this.address = link.address;
    this.mac = link.mac;
    this.proxy = proxy;
    this.timeline = timeline;
    this.fromCache = link.usedCache;
    this.#services = services;
    this.#host = host;
  }

  /** The peripheral's services. */
  get services(): GattServices {
    return this.#services;
  }

  /** ATT MTU of the link. */
  get mtu(): number {
    return this.link.mtu;
  }

  /** True while the link is up. */
  get isConnected(): boolean {
    return this.link.isConnected;
  }

  /** Reads a characteristic by UUID or value handle. */
  read(key: string | number, options?: CallOptions): Promise<Uint8Array> {
    return this.#watch(this.link.read(this.#handle(key), options));
  }

  /** Writes a characteristic by UUID or value handle; `withResponse` defaults to true. */
  write(key: string | number, data: Uint8Array, options?: CallOptions & { withResponse?: boolean }): Promise<void> {
    return this.#watch(this.link.write(this.#handle(key), data, options));
  }

  /** Reads a descriptor by handle. */
  readDescriptor(handle: number, options?: CallOptions): Promise<Uint8Array> {
    return this.#watch(this.link.readDescriptor(handle, options));
  }

  /** Writes a descriptor by handle. */
  writeDescriptor(handle: number, data: Uint8Array, options?: CallOptions): Promise<void> {
    return this.#watch(this.link.writeDescriptor(handle, data, options));
  }

  /** Subscribes to notifications; returns the unsubscribe function. */
  startNotify(key: string | number, listener: (data: Uint8Array) => void, options?: CallOptions): Promise<() => Promise<void>> {
    return this.link.startNotify(this.#handle(key), listener, options);
  }

  /** Notifications as a stream; breaking out of the loop unsubscribes. */
  notifications(key: string | number, options?: CallOptions & QueueOptions): Promise<AsyncIterableIterator<Uint8Array>> {
    return this.link.notifications(this.#handle(key), options);
  }

  /** Pairs with the peripheral; the pool then routes the device through this proxy first (its bond lives here). */
  async pair(options?: CallOptions): Promise<void> {
    await this.link.pair(options);
    this.#host.paired(this);
  }

  /** Deletes the bond with the peripheral in this proxy's controller; the pool forgets it too (no more routing here first). */
  unpair(options: CallOptions = {}): Promise<void> {
    return this.#host.unpair(this, options);
  }

  /** Updates the link's connection parameters. */
  setConnectionParams(params: ConnectionParams, options?: CallOptions): Promise<void> {
    return this.link.setConnectionParams(params, options);
  }

  /** Forgets the cached services (ours and, when supported, the proxy's). Takes effect on the next connect. */
  clearCache(options: CallOptions = {}): Promise<void> {
    return this.#host.clearCache(this, options);
  }

  /** Resolves when the link ends. */
  closed(): Promise<LinkClosed> {
    return this.link.closed();
  }

  /** Disconnects and waits for the proxy to free the slot. */
  disconnect(options?: CallOptions): Promise<void> {
    return this.link.disconnect(options);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.disconnect();
  }

  /** A cached table whose handles the peripheral rejects is stale: forget it so the next connect rediscovers. */
  async #watch<T>(operation: Promise<T>): Promise<T> {
    try {
      return await operation;
    } catch (error) {
      if (this.fromCache && error instanceof GattError && STALE_HANDLE_STATUSES.has(error.status)) this.#host.invalidateCache(this);
      throw error;
    }
  }

  #handle(key: string | number): number {
    return typeof key === 'number' ? key : this.#services.get(key, this.mac).handle;
  }
}
