import { EventEmitter } from 'node:events';
import type { Advertisement } from '../bluetooth/advertisement.js';
import type { BluetoothProxyFeature } from '../bluetooth/features.js';
import { CCCD_UUID, type GattCharacteristic, type GattDescriptor } from '../bluetooth/gatt.js';
import { BleDisconnectedError, EspApiError, InvalidArgumentError } from '../errors.js';
import type { PooledConnection } from '../pool/pooled-connection.js';
import { type EstablishOptions, ProxyPool, type ProxyPoolOptions, type ProxySpec } from '../pool/proxy-pool.js';
import type { CallOptions } from '../util/abort.js';
import { addressOfNobleId, fromNobleUuid, nobleAddress, nobleAddressType, toNobleUuid } from './noble-format.js';
import { NobleGattTable } from './noble-gatt.js';
import { MAX_TRACKED_DEVICES, ScanTracker, type TrackedDevice } from './scan-tracker.js';

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

/** RSSI noble's HCI layer reports for a peripheral it never heard (the HCI "not available" value). */
const RSSI_UNAVAILABLE = 127;
/** HCI reason "connection terminated by local host", what noble's HCI layer reports for a disconnect we asked for. */
const LOCAL_HOST_TERMINATED = 0x16;
/** Deadline of each link's teardown when the bindings stop: a proxy confirms in milliseconds, one that is gone never. */
const STOP_DISCONNECT_TIMEOUT_MS = 2_000;
/** The features the pool needs to connect through a proxy (as in its own check), by the names diagnostics() lists. */
const CONNECT_FEATURES: ReadonlyArray<keyof typeof BluetoothProxyFeature> = ['ACTIVE_CONNECTIONS', 'REMOTE_CACHING'];
/**
 * Ids the bindings remember announcing: every tracked device (its id leaves with it when the scan tracker drops
 * it) plus as many again that only a connect named, so rotating private addresses cannot grow the set forever.
 */
const MAX_ANNOUNCED = 2 * MAX_TRACKED_DEVICES;
/** CCCD bits 0 (notifications) and 1 (indications). */
const CCCD_NOTIFY_BITS = 0x0003;
/** Server Characteristic Configuration descriptor, whose bit 0 turns broadcasting on. */
const SCCD_UUID = '00002903-0000-1000-8000-00805f9b34fb';

/** What noble passes to a connect (its HCI layer reads the address type of an id it never heard from it). */
type ConnectParameters = { addressType?: 'public' | 'random' } | null | undefined;

/** A connect in flight, under the id as noble spelled it (noble keeps an all-hex id exactly as the caller wrote it). */
interface PendingConnect {
  readonly id: string;
  readonly address: number;
  readonly parameters: ConnectParameters;
  readonly controller: AbortController;
  /**
   * What happened to it meanwhile: cancelConnect() wants no connect event, disconnect() a failed connect and a
   * disconnect; 'failed' was reported already (the adapter left poweredOn).
   */
  fate: 'connecting' | 'cancelled' | 'abandoned' | 'failed';
}

interface Link {
  /** The id as noble spelled it in the connect: every event of the link uses it. */
  readonly id: string;
  readonly connection: PooledConnection;
  readonly table: NobleGattTable;
  /** Notification subscriptions by value handle: their stop functions. */
  readonly subscriptions: Map<number, () => Promise<void>>;
  /**
   * The characteristics noble's HCI GATT layer would know on this link, by value handle, under noble's
   * service and characteristic UUIDs: a notification of one also reaches noble as `read` (…, true).
   */
  readonly known: Map<number, { serviceUuid: string; characteristicUuid: string }>;
}

/**
 * noble's bindings interface on top of a ProxyPool: `new Noble(bindings)` scans, connects and does GATT
 * through ESPHome proxies. Events and argument shapes are those of noble's HCI bindings; errors noble's HCI
 * layer would swallow are reported in the error argument noble's other bindings use.
 */
export class NobleBindings extends EventEmitter {
  /** The pool carrying every scan and link. */
  readonly pool: ProxyPool;
  readonly #ownsPool: boolean;
  readonly #options: NobleBindingsOptions;
  readonly #tracker: ScanTracker;
  readonly #connectable = new Map<string, boolean>();
  /** Peripheral ids noble has had a `discover` for (a connect to any other needs a synthetic one first, as in noble's HCI layer). */
  readonly #announced = new Set<string>();
  /** Connects in flight and links, by lower-case id (one per device, whatever spelling noble used). */
  readonly #pending = new Map<string, PendingConnect>();
  readonly #links = new Map<string, Link>();
  readonly #stopStatus = new AbortController();
  #state: NobleAdapterState = 'unknown';
  #offAdvertisements: (() => void) | undefined;
  #heldTimer: NodeJS.Timeout | undefined;
  #started = false;
  #closing: Promise<void> | undefined;

  /** Use createNobleBindings(). */
  constructor(pool: ProxyPool, ownsPool: boolean, options: NobleBindingsOptions = {}) {
    super();
    this.pool = pool;
    this.#ownsPool = ownsPool;
    this.#options = options;
    this.#tracker = new ScanTracker({
      scanResponseTimeout: options.scanResponseTimeout,
      canConnect: (proxy) => this.#canConnect(proxy),
      onEvict: (device) => this.#announced.delete(device.id),
    });
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
    this.#offAdvertisements = this.pool.onAdvertisement((ad, proxy) => this.#onAdvertisement(ad, proxy));
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
    this.#tracker.start(serviceUuids ?? [], allowDuplicates === true);
    queueMicrotask(() => this.emit('scanStart', allowDuplicates !== true));
  }

  /** Stops reporting `discover`. */
  stopScanning(): void {
    this.#tracker.stop();
    this.#clearHeldTimer();
    queueMicrotask(() => this.emit('scanStop'));
  }

  /**
   * Connects through the pool (best proxy, failover, slot leases, GATT cache); reports `connect` (id, error).
   * Throws InvalidArgumentError for an id that is not 12 hex digits, as noble throws for an invalid address.
   */
  connect(peripheralUuid: string, parameters?: ConnectParameters): void {
    const id = String(peripheralUuid);
    // noble waits for a connect event of a peripheral it knows, so a bad id can only be refused here.
    const address = addressOfNobleId(id);
    if (this.#state !== 'poweredOn') {
      const error = new EspApiError('ESPAPI_ERR_NO_PROXY', `Cannot connect while adapter state is ${this.#state} (not poweredOn)`);
      queueMicrotask(() => this.#connectFailed(id, address, parameters, error));
      return;
    }
    const key = id.toLowerCase();
    const busy = this.#pending.get(key) ?? this.#links.get(key);
    if (busy !== undefined) {
      // noble's HCI layer ignores a second connect to a peripheral already queued or connected; under another
      // spelling noble holds a second peripheral that would wait forever, and a controller refuses a second link.
      if (busy.id === id) return;
      const error = new InvalidArgumentError(`${id} is already connecting or connected as ${busy.id} through these bindings`);
      queueMicrotask(() => this.#connectFailed(id, address, parameters, error));
      return;
    }
    const pending: PendingConnect = { id, address, parameters, controller: new AbortController(), fate: 'connecting' };
    this.#pending.set(key, pending);
    void this.pool.establishConnection(address, { ...this.#options.connect, signal: pending.controller.signal }).then(
      (connection) => this.#adopt(pending, connection),
      (error: unknown) => {
        this.#settlePending(pending);
        if (pending.fate === 'cancelled' || pending.fate === 'failed') return;
        this.#connectFailed(id, address, parameters, asError(error));
        if (pending.fate === 'abandoned') this.emit('disconnect', id, LOCAL_HOST_TERMINATED);
      },
    );
  }

  /** Abandons a pending connect; like noble's HCI layer, no `connect` event follows. */
  cancelConnect(peripheralUuid: string): void {
    this.#stopPending(String(peripheralUuid), 'cancelled', 'cancelled');
  }

  /** Disconnects; reports `disconnect` (id, reason) once the proxy has freed the slot. */
  disconnect(peripheralUuid: string): void {
    const id = String(peripheralUuid);
    const link = this.#linkOf(id);
    if (link !== undefined) {
      // The disconnect event comes from the link's close listener (with the proxy's reason).
      void link.connection.disconnect().catch(() => {});
      return;
    }
    if (this.#stopPending(id, 'abandoned', 'abandoned by a disconnect')) return;
    // Nothing to tear down: answer at once so noble's disconnect callback does not wait forever.
    queueMicrotask(() => this.emit('disconnect', id, 'not connected'));
  }

  /** Reports the RSSI of the device's latest advertisement from its best proxy (`rssiUpdate`). */
  updateRssi(peripheralUuid: string): void {
    const id = String(peripheralUuid);
    let device: TrackedDevice | undefined;
    try {
      device = this.#tracker.get(addressOfNobleId(id));
    } catch {
      device = undefined;
    }
    queueMicrotask(() => {
      if (device !== undefined) this.emit('rssiUpdate', id, device.rssi);
      else this.emit('rssiUpdate', id, RSSI_UNAVAILABLE, new EspApiError('ESPAPI_ERR_DEVICE_NOT_FOUND', `No proxy has heard ${id}`));
    });
  }

  /** Reports `servicesDiscovered` (every service with its handle range) and `servicesDiscover` (the UUIDs asked for). */
  discoverServices(peripheralUuid: string, uuids?: readonly string[] | null): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.table.services(),
      (id, services, error) => {
        if (error !== undefined) {
          this.emit('servicesDiscover', id, [], error);
          return;
        }
        const wanted = new Set((uuids ?? []).map(asNobleUuid));
        const selected: string[] = [];
        for (const s of services ?? []) if ((wanted.size === 0 || wanted.has(s.uuid)) && !selected.includes(s.uuid)) selected.push(s.uuid);
        this.emit('servicesDiscovered', id, services ?? []);
        this.emit('servicesDiscover', id, selected);
      },
    );
  }

  /** ESPHome proxies do not report included services: always an empty list, as noble's D-Bus bindings do. */
  discoverIncludedServices(peripheralUuid: string, serviceUuid: string, _serviceUuids?: readonly string[] | null): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.table.characteristicEntries(serviceUuid),
      (id, _entries, error) => this.emit('includedServicesDiscover', id, serviceUuid, [], ...(error ? [error] : [])),
    );
  }

  /** Reports `characteristicsDiscovered` (records with handles) and `characteristicsDiscover` ({uuid, properties} asked for). */
  discoverCharacteristics(peripheralUuid: string, serviceUuid: string, characteristicUuids?: readonly string[] | null): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const entries = link.table.characteristicEntries(serviceUuid);
        // noble's HCI layer records every characteristic of the service, also those the filter leaves out.
        for (const e of entries) link.known.set(e.valueHandle, { serviceUuid, characteristicUuid: e.uuid });
        return entries;
      },
      (id, entries, error) => {
        if (error !== undefined) {
          this.emit('characteristicsDiscover', id, serviceUuid, [], error);
          return;
        }
        const wanted = new Set((characteristicUuids ?? []).map(asNobleUuid));
        const selected = (entries ?? [])
          .filter((e) => wanted.size === 0 || wanted.has(e.uuid))
          .map((e) => ({ properties: [...e.propsDecoded], uuid: e.uuid }));
        this.emit('characteristicsDiscovered', id, serviceUuid, entries ?? []);
        this.emit('characteristicsDiscover', id, serviceUuid, selected);
      },
    );
  }

  /** Reads a characteristic: `read` (id, service, characteristic, data, false[, error]). */
  read(peripheralUuid: string, serviceUuid: string, characteristicUuid: string): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.connection.read(link.table.characteristic(serviceUuid, characteristicUuid).handle),
      (id, data, error) => this.emit('read', id, serviceUuid, characteristicUuid, toBuffer(data), false, ...(error ? [error] : [])),
    );
  }

  /** Writes a characteristic, with or without response: `write` (id, service, characteristic[, error]). */
  write(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, data: Uint8Array, withoutResponse?: boolean): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const handle = link.table.characteristic(serviceUuid, characteristicUuid).handle;
        await link.connection.write(handle, bytesOf(data), { withResponse: withoutResponse !== true });
      },
      (id, _none, error) => this.emit('write', id, serviceUuid, characteristicUuid, ...(error ? [error] : [])),
    );
  }

  /** Sets or clears the broadcast bit of the Server Characteristic Configuration descriptor, as noble's HCI layer does. */
  broadcast(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, broadcast: boolean): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const descriptor = link.table.descriptor(serviceUuid, characteristicUuid, SCCD_UUID);
        const current = await link.connection.readDescriptor(descriptor.handle);
        const value = (((current[0] ?? 0) | ((current[1] ?? 0) << 8)) & 0xfffe) | (broadcast ? 1 : 0);
        await link.connection.writeDescriptor(descriptor.handle, Uint8Array.of(value & 0xff, value >> 8));
      },
      (id, _none, error) => this.emit('broadcast', id, serviceUuid, characteristicUuid, error ?? broadcast),
    );
  }

  /**
   * Turns notifications (or indications) on or off: registers the handle with the proxy and writes the CCCD,
   * as noble's HCI layer writes it; reports `notify` (id, service, characteristic, state[, error]). Data then
   * arrives as `handleNotify` (id, handle, data) and `read` (…, data, true).
   */
  notify(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, notify: boolean): void {
    let state = false;
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const characteristic = link.table.characteristic(serviceUuid, characteristicUuid);
        link.known.set(characteristic.handle, { serviceUuid, characteristicUuid });
        if (notify) await this.#subscribe(link, characteristic);
        else await this.#unsubscribe(link, characteristic.handle);
        state = link.subscriptions.has(characteristic.handle);
      },
      (id, _none, failure) => {
        // An unsubscribe whose link is gone, before it ran or while it did, has what it asked for: no
        // subscription is left (the proxy drops a link's registrations with it). noble's HCI layer never
        // fails one either; reporting it made commissioners that unsubscribe before they disconnect log errors.
        const error = !notify && failure !== undefined && linkGone(failure) ? undefined : failure;
        this.emit('notify', id, serviceUuid, characteristicUuid, error ? state : notify, ...(error ? [error] : []));
      },
    );
  }

  /** Reports `descriptorsDiscover` (id, service, characteristic, descriptor UUIDs). */
  discoverDescriptors(peripheralUuid: string, serviceUuid: string, characteristicUuid: string): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.table.characteristic(serviceUuid, characteristicUuid).descriptors.map((d) => toNobleUuid(d.uuid)),
      (id, uuids, error) => this.emit('descriptorsDiscover', id, serviceUuid, characteristicUuid, uuids ?? [], ...(error ? [error] : [])),
    );
  }

  /** Reads a descriptor: `valueRead` (id, service, characteristic, descriptor, data[, error]). */
  readValue(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.connection.readDescriptor(link.table.descriptor(serviceUuid, characteristicUuid, descriptorUuid).handle),
      (id, data, error) =>
        this.emit('valueRead', id, serviceUuid, characteristicUuid, descriptorUuid, toBuffer(data), ...(error ? [error] : [])),
    );
  }

  /**
   * Writes a descriptor: `valueWrite` (id, service, characteristic, descriptor[, error]). A CCCD write that
   * enables or disables notifications also (un)registers the handle with the proxy, which a peripheral's
   * notifications need to get through ESPHome (noble's HCI layer receives them once the CCCD is set).
   */
  writeValue(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string, data: Uint8Array): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const descriptor = link.table.descriptor(serviceUuid, characteristicUuid, descriptorUuid);
        const characteristic = link.table.characteristic(serviceUuid, characteristicUuid);
        link.known.set(characteristic.handle, { serviceUuid, characteristicUuid });
        await this.#writeDescriptor(link, characteristic, descriptor, bytesOf(data));
      },
      (id, _none, error) => this.emit('valueWrite', id, serviceUuid, characteristicUuid, descriptorUuid, ...(error ? [error] : [])),
    );
  }

  /** Reads an attribute by handle (characteristic value or descriptor): `handleRead` (id, handle, data[, error]). */
  readHandle(peripheralUuid: string, handle: number): void {
    this.#gatt(
      peripheralUuid,
      async (link) =>
        link.table.descriptorAt(handle) !== undefined ? link.connection.readDescriptor(handle) : link.connection.read(handle),
      (id, data, error) => this.emit('handleRead', id, handle, toBuffer(data), ...(error ? [error] : [])),
    );
  }

  /** Writes an attribute by handle: `handleWrite` (id, handle[, error]); a CCCD turns notifications on or off as in writeValue(). */
  writeHandle(peripheralUuid: string, handle: number, data: Uint8Array, withoutResponse?: boolean): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const bytes = bytesOf(data);
        const at = link.table.descriptorAt(handle);
        if (at !== undefined) await this.#writeDescriptor(link, at.characteristic, at.descriptor, bytes);
        else await link.connection.write(handle, bytes, { withResponse: withoutResponse !== true });
      },
      (id, _none, error) => this.emit('handleWrite', id, handle, ...(error ? [error] : [])),
    );
  }

  /** Pairs (bonds) through the proxy with its IO capability: `pair` (id, paired[, error]). */
  pair(peripheralUuid: string, _kind?: number, _protectionLevel?: number): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.connection.pair(),
      (id, _none, error) => this.emit('pair', id, error === undefined, ...(error ? [error] : [])),
    );
  }

  /** noble's id of an address text (`AA:BB:…` → `aabb…`). */
  addressToId(address: string): string {
    return String(address).replace(/:/g, '').toLowerCase();
  }

  // ---- internals ----

  #onAdvertisement(ad: Advertisement, proxy: string): void {
    const device = this.#tracker.ingest(ad, proxy);
    if (device !== undefined) this.#discover(device);
    else if (this.#heldTimer === undefined) this.#scheduleHeld();
  }

  #scheduleHeld(): void {
    const due = this.#tracker.nextHeldDue();
    if (due === undefined || this.#closing !== undefined) return;
    this.#heldTimer = setTimeout(
      () => {
        this.#heldTimer = undefined;
        for (const device of this.#tracker.releaseHeld(Date.now())) this.#discover(device);
        this.#scheduleHeld();
      },
      Math.max(0, due - Date.now()),
    );
  }

  #clearHeldTimer(): void {
    clearTimeout(this.#heldTimer);
    this.#heldTimer = undefined;
  }

  #discover(device: TrackedDevice): void {
    this.#markAnnounced(device.id);
    this.emit(
      'discover',
      device.id,
      device.nobleAddress,
      nobleAddressType(device.addressType),
      device.connectable,
      device.advertisement,
      device.rssi,
      false,
    );
  }

  #adopt(pending: PendingConnect, connection: PooledConnection): void {
    this.#settlePending(pending);
    const id = pending.id;
    if (pending.fate === 'cancelled' || pending.fate === 'failed' || this.#closing !== undefined) {
      void connection.disconnect().catch(() => {});
      return;
    }
    if (pending.fate === 'abandoned') {
      // The link came up just as a disconnect abandoned the connect: take it down, and tell noble both.
      void connection.disconnect().catch(() => {});
      this.emit('connect', id, new EspApiError('ESPAPI_ERR_ABORTED', `Connect to ${id} abandoned by a disconnect`));
      this.emit('disconnect', id, LOCAL_HOST_TERMINATED);
      return;
    }
    const key = id.toLowerCase();
    const link: Link = {
      id,
      connection,
      table: new NobleGattTable(connection.services, connection.mac),
      subscriptions: new Map(),
      known: new Map(),
    };
    this.#links.set(key, link);
    this.#announce(id, connection.address, pending.parameters);
    this.emit('connect', id, null);
    this.emit('onMtu', id, connection.mtu);
    connection.link.onDisconnect((info) => {
      if (this.#links.get(key) === link) this.#links.delete(key);
      link.subscriptions.clear();
      this.emit('disconnect', id, info.reason);
    });
  }

  /** The link of the peripheral noble calls `id`: another spelling of its address is another peripheral to noble. */
  #linkOf(id: string): Link | undefined {
    const link = this.#links.get(id.toLowerCase());
    return link?.id === id ? link : undefined;
  }

  #markAnnounced(id: string): void {
    if (this.#announced.has(id)) return;
    if (this.#announced.size >= MAX_ANNOUNCED) this.#announced.delete(this.#announced.values().next().value!);
    this.#announced.add(id);
  }

  /** Stops a pending connect for `fate`; false when there is none. */
  #stopPending(peripheralUuid: string, fate: 'cancelled' | 'abandoned', why: string): boolean {
    const pending = this.#pending.get(peripheralUuid.toLowerCase());
    if (pending === undefined || pending.id !== peripheralUuid) return false;
    this.#abortPending(pending, fate, new EspApiError('ESPAPI_ERR_ABORTED', `Connect to ${pending.id} ${why}`));
    return true;
  }

  #abortPending(pending: PendingConnect, fate: PendingConnect['fate'], reason: Error): void {
    pending.fate = fate;
    // Out of the map at once, so a new connect to the device can start while this one winds down.
    this.#settlePending(pending);
    pending.controller.abort(reason);
  }

  #settlePending(pending: PendingConnect): void {
    const key = pending.id.toLowerCase();
    if (this.#pending.get(key) === pending) this.#pending.delete(key);
  }

  /** Reports a failed connect; noble fires a connect callback only for a peripheral it knows, so announce the id first. */
  #connectFailed(id: string, address: number, parameters: ConnectParameters, error: Error): void {
    this.#announce(id, address, parameters);
    this.emit('connect', id, error);
  }

  /** The `discover` noble's HCI layer makes up for a peripheral it connects to without having heard it. */
  #announce(id: string, address: number, parameters: ConnectParameters): void {
    if (this.#announced.has(id)) return;
    this.#markAnnounced(id);
    const heard = this.#tracker.get(address);
    const addressType = heard !== undefined ? nobleAddressType(heard.addressType) : (parameters?.addressType ?? 'random');
    // The address in noble's lower-case text whatever the id's spelling, as its HCI layer reports addresses.
    this.emit('discover', id, nobleAddress(address), addressType, true, { serviceUuids: [], serviceData: [] }, RSSI_UNAVAILABLE, false);
  }

  /**
   * Writes a descriptor. A 2-byte CCCD value also registers (any notify/indicate bit) or unregisters its
   * characteristic with the proxy first: ESPHome forwards notifications only for registered handles (§6.11),
   * while noble's HCI layer receives them once the CCCD is set.
   */
  async #writeDescriptor(link: Link, characteristic: GattCharacteristic, descriptor: GattDescriptor, bytes: Uint8Array): Promise<void> {
    if (descriptor.uuid === CCCD_UUID && bytes.length === 2) {
      if ((bytes[0]! & CCCD_NOTIFY_BITS) !== 0) await this.#subscribe(link, characteristic);
      else await this.#unsubscribe(link, characteristic.handle);
    }
    await link.connection.writeDescriptor(descriptor.handle, bytes);
  }

  /** Registers notifications of `c` with the proxy (which also writes its CCCD); data arrives as noble's HCI layer reports it. */
  async #subscribe(link: Link, c: GattCharacteristic): Promise<void> {
    if (link.subscriptions.has(c.handle)) return;
    const stop = await link.connection.startNotify(c.handle, (data) => {
      const buffer = Buffer.from(data);
      // noble's HCI layer gets each packet in its own I/O callback, so a write's callback (and what its caller does
      // next) has run before a notification that followed the write response. Here both can come in one TCP read,
      // and the write's outcome reaches noble through promise callbacks: without a turn of the event loop the
      // notification would overtake it (node-switchbot then misses the answer to its command).
      setImmediate(() => {
        // noble's HCI GATT layer: handleNotify always, then a notification for the characteristic it knows at that handle.
        this.emit('handleNotify', link.id, c.handle, buffer);
        const known = link.known.get(c.handle);
        if (known !== undefined) this.emit('read', link.id, known.serviceUuid, known.characteristicUuid, buffer, true);
      });
    });
    link.subscriptions.set(c.handle, stop);
  }

  async #unsubscribe(link: Link, handle: number): Promise<void> {
    const stop = link.subscriptions.get(handle);
    if (stop === undefined) return;
    link.subscriptions.delete(handle);
    await stop();
  }

  /** Runs one GATT request of noble on the peripheral's link and reports its outcome through `report`. */
  #gatt<T>(
    peripheralUuid: string,
    run: (link: Link) => Promise<T>,
    report: (id: string, value: T | undefined, error?: Error) => void,
  ): void {
    const id = String(peripheralUuid);
    const link = this.#linkOf(id);
    const operation =
      link === undefined
        ? Promise.reject(new BleDisconnectedError(`Peripheral ${id} is not connected through these bindings`, addressOrZero(id), 0))
        : run(link);
    void operation.then(
      (value) => report(id, value),
      (error: unknown) => report(id, undefined, asError(error)),
    );
  }

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
      // noble fails its pending connects and drops every peripheral when the adapter leaves poweredOn, and its
      // HCI layer drops its connect queue: stop ours (freeing their slot leases) so none comes up behind noble's
      // back, and fail each with a typed error first. Links are gone already: no subscribed proxy is left.
      const error = new EspApiError('ESPAPI_ERR_NO_PROXY', `Connect abandoned: adapter state is ${next} (no subscribed proxy)`);
      for (const pending of [...this.#pending.values()]) {
        this.#abortPending(pending, 'failed', error);
        this.#connectFailed(pending.id, pending.address, pending.parameters, error);
      }
      // Announce them afresh when it is back.
      this.#announced.clear();
      this.#tracker.forgetReported();
    }
    this.#state = next;
    this.emit('stateChange', next);
  }

  async #close(options: CallOptions): Promise<void> {
    this.#tracker.stop();
    this.#clearHeldTimer();
    this.#offAdvertisements?.();
    this.#stopStatus.abort();
    for (const pending of this.#pending.values())
      pending.controller.abort(new EspApiError('ESPAPI_ERR_ABORTED', 'The noble bindings stopped'));
    const links = [...this.#links.values()];
    await Promise.allSettled(links.map((l) => l.connection.disconnect({ timeout: STOP_DISCONNECT_TIMEOUT_MS, ...options })));
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

/** A UUID a noble user passed, in noble's spelling (noble compares them as strings; we accept any spelling). */
function asNobleUuid(uuid: string): string {
  try {
    return toNobleUuid(fromNobleUuid(uuid));
  } catch {
    return uuid;
  }
}

function addressOrZero(id: string): number {
  try {
    return addressOfNobleId(id);
  } catch {
    return 0;
  }
}

function toBuffer(data: Uint8Array | undefined): Buffer {
  return data === undefined ? Buffer.alloc(0) : Buffer.from(data.buffer, data.byteOffset, data.length);
}

/** The bytes of what noble passes as data (Buffer, Uint8Array, Uint16Array, Uint32Array). */
function bytesOf(data: ArrayBufferView): Uint8Array {
  if (!ArrayBuffer.isView(data)) throw new InvalidArgumentError('data must be a Buffer or a typed array');
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** The link (or the proxy session carrying it) ended: what a request on it fails with then. */
function linkGone(error: Error): boolean {
  const code = (error as Partial<EspApiError>).code;
  return code === 'ESPAPI_ERR_BLE_DISCONNECTED' || code === 'ESPAPI_ERR_CONNECTION_CLOSED';
}
