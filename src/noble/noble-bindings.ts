import { EventEmitter } from 'node:events';
import type { BluetoothProxyFeature } from '../bluetooth/features.js';
import { EspApiError, InvalidArgumentError } from '../errors.js';
import { type EstablishOptions, ProxyPool, type ProxyPoolOptions, type ProxySpec } from '../pool/proxy-pool.js';
import type { CallOptions } from '../util/abort.js';
import { NobleGattRequests } from './noble-gatt-requests.js';
import { NobleLinks } from './noble-links.js';
import { type ConnectParameters, type NobleEmit, NobleScan } from './noble-scan.js';

/** noble's adapter states (the subset these bindings report). */
export type NobleAdapterState = 'unknown' | 'poweredOn' | 'poweredOff';

/** Where the bindings get their radios: an existing pool (yours to close), or proxies/options for a pool they own. */
export type NobleBindingsSource = ProxyPool | readonly ProxySpec[] | ({ proxies: readonly ProxySpec[] } & ProxyPoolOptions);

/** Options of createNobleBindings. */
export interface NobleBindingsOptions {
  /** Passed to every `pool.establishConnection` behind `peripheral.connect()` (attempts, timeouts, proxy choice). */
  connect?: Omit<EstablishOptions, 'signal' | 'disconnectedCallback'>;
  /** How long a connectable device's first report waits for its scan response or next report (default 2000 ms). */
  scanResponseTimeout?: number;
}

/** The features the pool needs to connect through a proxy (as in its own check), by the names diagnostics() lists. */
const CONNECT_FEATURES: ReadonlyArray<keyof typeof BluetoothProxyFeature> = ['ACTIVE_CONNECTIONS', 'REMOTE_CACHING'];

/**
 * noble's bindings interface on top of a ProxyPool: `new Noble(bindings)` scans, connects and does GATT
 * through ESPHome proxies. Events and argument shapes are those of noble's HCI bindings; errors noble's HCI
 * layer would swallow are reported in the error argument noble's other bindings use. This class keeps the
 * adapter state; what noble hears is noble-scan's, its connections noble-links', its GATT noble-gatt-requests'.
 */
export class NobleBindings extends EventEmitter {
  /** The pool carrying every scan and link. */
  readonly pool: ProxyPool;
  readonly #ownsPool: boolean;
  readonly #scan: NobleScan;
  readonly #links: NobleLinks;
  readonly #gatt: NobleGattRequests;
  readonly #connectable = new Map<string, boolean>();
  readonly #stopStatus = new AbortController();
  #state: NobleAdapterState = 'unknown';
  #offAdvertisements: (() => void) | undefined;
  #started = false;
  #closing: Promise<void> | undefined;

  /** Use createNobleBindings(). */
  constructor(pool: ProxyPool, ownsPool: boolean, options: NobleBindingsOptions = {}) {
    super();
    this.pool = pool;
    this.#ownsPool = ownsPool;
    // Through `this.emit` at each call, so listeners noble (or installNobleBindings) adds later are reached.
    const emit: NobleEmit = (event, ...args) => this.emit(event, ...args);
    this.#scan = new NobleScan(emit, { scanResponseTimeout: options.scanResponseTimeout, canConnect: (proxy) => this.#canConnect(proxy) });
    this.#links = new NobleLinks(emit, { pool, scan: this.#scan, connect: options.connect });
    this.#gatt = new NobleGattRequests(emit, (id) => this.#links.linkOf(id));
  }

  /** The adapter state last reported to noble. */
  get state(): NobleAdapterState {
    return this.#state;
  }

  // ---- noble's bindings interface ----

  /** Starts the pool and reports `stateChange` (poweredOn once a proxy is subscribed). */
  start(): void {
    if (this.#started || this.#closing !== undefined) return;
    // No `addressChange`, so noble.address stays 'unknown': there is no one local adapter whose address it could
    // be (each proxy has its own Bluetooth MAC, a link goes through whichever proxy the pool picks, and proxies
    // come and go), and one proxy's MAC would be wrong for every link through another.
    this.#started = true;
    this.pool.start();
    this.#offAdvertisements = this.pool.onAdvertisement((ad, proxy) => this.#scan.ingest(ad, proxy));
    void this.#followStatus();
    this.#updateState();
  }

  /**
   * start() under the name noble 1.x and @abandonware/noble call (their Noble runs `_bindings.init()`, noble 2.x
   * `_bindings.start()`): libraries pinned to those, such as node-switchbot 3, construct that Noble.
   */
  init(): void {
    this.start();
  }

  /** Stops scanning, drops this bindings' links and, when it owns the pool, closes it. */
  stop(): void {
    void this.close();
  }

  /** Like stop(), awaitable and idempotent; `timeout` bounds each link's teardown (default 2 s). */
  close(options: CallOptions = {}): Promise<void> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Nothing to set on a proxy: reports `scanParametersSet` as noble expects. */
  setScanParameters(_interval?: number, _window?: number): void {
    queueMicrotask(() => this.emit('scanParametersSet'));
  }

  /** Starts reporting `discover`; `serviceUuids` filters on advertised service UUIDs and service data, as noble does. */
  startScanning(serviceUuids?: readonly string[] | null, allowDuplicates?: boolean): void {
    this.#scan.start(serviceUuids ?? [], allowDuplicates === true);
    queueMicrotask(() => this.emit('scanStart', allowDuplicates !== true));
  }

  /** Stops reporting `discover`. */
  stopScanning(): void {
    this.#scan.stop();
    queueMicrotask(() => this.emit('scanStop'));
  }

  /**
   * Connects through the pool (best proxy, failover, slot leases, GATT cache); reports `connect` (id, error).
   * Throws InvalidArgumentError for an id that is not 12 hex digits, as noble throws for an invalid address.
   */
  connect(peripheralUuid: string, parameters?: ConnectParameters): void {
    this.#links.connect(String(peripheralUuid), parameters, this.#state);
  }

  /** Abandons a pending connect; like noble's HCI layer, no `connect` event follows. */
  cancelConnect(peripheralUuid: string): void {
    this.#links.cancelConnect(String(peripheralUuid));
  }

  /** Disconnects; reports `disconnect` (id, reason) once the proxy has freed the slot. */
  disconnect(peripheralUuid: string): void {
    this.#links.disconnect(String(peripheralUuid));
  }

  /** Reports the RSSI of the device's latest advertisement from its best proxy (`rssiUpdate`). */
  updateRssi(peripheralUuid: string): void {
    this.#scan.updateRssi(String(peripheralUuid));
  }

  /** Reports `servicesDiscovered` (every service with its handle range) and `servicesDiscover` (the UUIDs asked for). */
  discoverServices(peripheralUuid: string, uuids?: readonly string[] | null): void {
    this.#gatt.discoverServices(peripheralUuid, uuids);
  }

  /** ESPHome proxies do not report included services: always an empty list, as noble's D-Bus bindings do. */
  discoverIncludedServices(peripheralUuid: string, serviceUuid: string, _serviceUuids?: readonly string[] | null): void {
    this.#gatt.discoverIncludedServices(peripheralUuid, serviceUuid);
  }

  /** Reports `characteristicsDiscovered` (records with handles) and `characteristicsDiscover` ({uuid, properties} asked for). */
  discoverCharacteristics(peripheralUuid: string, serviceUuid: string, characteristicUuids?: readonly string[] | null): void {
    this.#gatt.discoverCharacteristics(peripheralUuid, serviceUuid, characteristicUuids);
  }

  /** Reads a characteristic: `read` (id, service, characteristic, data, false[, error]). */
  read(peripheralUuid: string, serviceUuid: string, characteristicUuid: string): void {
    this.#gatt.read(peripheralUuid, serviceUuid, characteristicUuid);
  }

  /** Writes a characteristic, with or without response: `write` (id, service, characteristic[, error]). */
  write(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, data: Uint8Array, withoutResponse?: boolean): void {
    this.#gatt.write(peripheralUuid, serviceUuid, characteristicUuid, data, withoutResponse);
  }

  /** Sets or clears the broadcast bit of the Server Characteristic Configuration descriptor, as noble's HCI layer does. */
  broadcast(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, broadcast: boolean): void {
    this.#gatt.broadcast(peripheralUuid, serviceUuid, characteristicUuid, broadcast);
  }

  /**
   * Turns notifications (or indications) on or off: registers the handle with the proxy and writes the CCCD,
   * as noble's HCI layer writes it; reports `notify` (id, service, characteristic, state[, error]). Data then
   * arrives as `handleNotify` (id, handle, data) and `read` (…, data, true).
   */
  notify(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, notify: boolean): void {
    this.#gatt.notify(peripheralUuid, serviceUuid, characteristicUuid, notify);
  }

  /** Reports `descriptorsDiscover` (id, service, characteristic, descriptor UUIDs). */
  discoverDescriptors(peripheralUuid: string, serviceUuid: string, characteristicUuid: string): void {
    this.#gatt.discoverDescriptors(peripheralUuid, serviceUuid, characteristicUuid);
  }

  /** Reads a descriptor: `valueRead` (id, service, characteristic, descriptor, data[, error]). */
  readValue(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string): void {
    this.#gatt.readValue(peripheralUuid, serviceUuid, characteristicUuid, descriptorUuid);
  }

  /**
   * Writes a descriptor: `valueWrite` (id, service, characteristic, descriptor[, error]). A CCCD write that
   * enables or disables notifications also (un)registers the handle with the proxy, which a peripheral's
   * notifications need to get through ESPHome (noble's HCI layer receives them once the CCCD is set).
   */
  writeValue(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string, data: Uint8Array): void {
    this.#gatt.writeValue(peripheralUuid, serviceUuid, characteristicUuid, descriptorUuid, data);
  }

  /** Reads an attribute by handle (characteristic value or descriptor): `handleRead` (id, handle, data[, error]). */
  readHandle(peripheralUuid: string, handle: number): void {
    this.#gatt.readHandle(peripheralUuid, handle);
  }

  /** Writes an attribute by handle: `handleWrite` (id, handle[, error]); a CCCD turns notifications on or off as in writeValue(). */
  writeHandle(peripheralUuid: string, handle: number, data: Uint8Array, withoutResponse?: boolean): void {
    this.#gatt.writeHandle(peripheralUuid, handle, data, withoutResponse);
  }

  /** Pairs (bonds) through the proxy with its IO capability: `pair` (id, paired[, error]). */
  pair(peripheralUuid: string, _kind?: number, _protectionLevel?: number): void {
    this.#gatt.pair(peripheralUuid);
  }

  /** noble's id of an address text (`AA:BB:…` → `aabb…`). */
  addressToId(address: string): string {
    return String(address).replace(/:/g, '').toLowerCase();
  }

  // ---- adapter state ----

  async #followStatus(): Promise<void> {
    try {
      for await (const status of this.pool.status({ signal: this.#stopStatus.signal })) {
        if (status.type === 'proxyUp' || status.type === 'proxyDown' || status.type === 'subscription') this.#updateState();
      }
    } catch {
      // the stream ends when the bindings close
    }
  }

  /** Whether the pool can connect through `proxy` now (as of its last status event). */
  #canConnect(proxy: string): boolean {
    let connectable = this.#connectable.get(proxy);
    if (connectable === undefined) {
      this.#refreshProxies();
      connectable = this.#connectable.get(proxy) ?? false;
      this.#connectable.set(proxy, connectable);
    }
    return connectable;
  }

  /**
   * Rereads which proxies count: only those whose subscription we hold. After a takeover a proxy's session
   * stays up, but its advertisements go to the other client and the pool refuses to connect through it.
   */
  #refreshProxies(): boolean {
    let online = false;
    for (const proxy of this.pool.diagnostics()) {
      const subscribed = proxy.state === 'online';
      const connects = CONNECT_FEATURES.every((feature) => proxy.features.includes(feature));
      this.#connectable.set(proxy.id, subscribed && connects);
      online ||= subscribed;
    }
    return online;
  }

  #updateState(): void {
    if (this.#closing !== undefined) return;
    const online = this.#refreshProxies();
    // 'unknown' until the first proxy is up: libraries treat an early poweredOff as "no adapter" and give up.
    const next: NobleAdapterState = online ? 'poweredOn' : this.#state === 'unknown' ? 'unknown' : 'poweredOff';
    if (next === this.#state) return;
    if (this.#state === 'poweredOn') {
      // noble fails its pending connects and drops every peripheral when the adapter leaves poweredOn. Links are
      // gone already: no subscribed proxy is left.
      this.#links.failPending(new EspApiError('ESPAPI_ERR_NO_PROXY', `Connect abandoned: adapter state is ${next} (no subscribed proxy)`));
      this.#scan.forgetAnnounced();
    }
    this.#state = next;
    this.emit('stateChange', next);
  }

  async #close(options: CallOptions): Promise<void> {
    this.#scan.close();
    this.#offAdvertisements?.();
    this.#stopStatus.abort();
    await this.#links.close(options);
    if (this.#ownsPool) await this.pool.close(options);
  }
}

/** Bindings for `new Noble(bindings)` (from `@stoprocent/noble/lib/noble`) over a ProxyPool or the proxies to pool. */
export function createNobleBindings(source: NobleBindingsSource, options: NobleBindingsOptions = {}): NobleBindings {
  if (source instanceof ProxyPool) return new NobleBindings(source, false, options);
  if (Array.isArray(source)) return new NobleBindings(new ProxyPool(source as readonly ProxySpec[]), true, options);
  if (typeof source === 'object' && source !== null && Array.isArray((source as { proxies?: unknown }).proxies)) {
    const { proxies, ...poolOptions } = source as { proxies: readonly ProxySpec[] } & ProxyPoolOptions;
    return new NobleBindings(new ProxyPool(proxies, poolOptions), true, options);
  }
  throw new InvalidArgumentError('createNobleBindings needs a ProxyPool, a list of proxies, or { proxies, ...poolOptions }');
}
