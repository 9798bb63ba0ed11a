import { EspApiError, InvalidArgumentError } from '../errors.js';
import type { PooledConnection } from '../pool/pooled-connection.js';
import type { EstablishOptions, ProxyPool } from '../pool/proxy-pool.js';
import type { CallOptions } from '../util/abort.js';
import { addressOfNobleId } from './noble-format.js';
import { NobleGattTable } from './noble-gatt.js';
import type { ConnectParameters, NobleEmit, NobleScan } from './noble-scan.js';

/** HCI reason "connection terminated by local host", what noble's HCI layer reports for a disconnect we asked for. */
const LOCAL_HOST_TERMINATED = 0x16;
/** Deadline of each link's teardown when the bindings stop: a proxy confirms in milliseconds, one that is gone never. */
const STOP_DISCONNECT_TIMEOUT_MS = 2_000;

/** A connect in flight, under the id as noble spelled it (noble keeps an all-hex id exactly as the caller wrote it). */
interface PendingConnect {
  /**
   * What happened to it meanwhile: cancelConnect() wants no connect event, disconnect() a failed connect and a
   * disconnect; 'failed' was reported already (the adapter left poweredOn).
   */
  fate: 'connecting' | 'cancelled' | 'abandoned' | 'failed';
  readonly id: string;
  readonly address: number;
  readonly parameters: ConnectParameters;
  readonly controller: AbortController;
}

/** One link noble holds, with what noble's HCI GATT layer would know on it. */
export interface NobleLink {
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

/** What the links need from the bindings. */
export interface NobleLinksOptions {
  readonly pool: ProxyPool;
  readonly scan: NobleScan;
  /** Passed to every `pool.establishConnection`. */
  readonly connect: Omit<EstablishOptions, 'signal' | 'disconnectedCallback'> | undefined;
}

/**
 * noble's connections over the pool: connects in flight and established links, one per device whatever
 * spelling of its id noble used, with the `connect` and `disconnect` events noble's HCI layer reports.
 */
export class NobleLinks {
  readonly #emit: NobleEmit;
  readonly #options: NobleLinksOptions;
  /** Connects in flight and links, by lower-case id (one per device, whatever spelling noble used). */
  readonly #pending = new Map<string, PendingConnect>();
  readonly #links = new Map<string, NobleLink>();
  #closed = false;

  constructor(emit: NobleEmit, options: NobleLinksOptions) {
    this.#emit = emit;
    this.#options = options;
  }

  /**
   * Connects through the pool (best proxy, failover, slot leases, GATT cache); reports `connect` (id, error).
   * Throws InvalidArgumentError for an id that is not 12 hex digits; fails unless the adapter is poweredOn.
   */
  connect(id: string, parameters: ConnectParameters, adapterState: string): void {
    // noble waits for a connect event of a peripheral it knows, so a bad id can only be refused here.
    const address = addressOfNobleId(id);
    if (adapterState !== 'poweredOn') {
      const error = new EspApiError('ESPAPI_ERR_NO_PROXY', `Cannot connect while adapter state is ${adapterState} (not poweredOn)`);
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
    const { pool, connect } = this.#options;
    void pool.establishConnection(address, { ...connect, signal: pending.controller.signal }).then(
      (connection) => this.#adopt(pending, connection),
      (error: unknown) => {
        this.#settlePending(pending);
        if (pending.fate === 'cancelled' || pending.fate === 'failed') return;
        this.#connectFailed(id, address, parameters, asError(error));
        if (pending.fate === 'abandoned') this.#emit('disconnect', id, LOCAL_HOST_TERMINATED);
      },
    );
  }

  /** Abandons a pending connect; like noble's HCI layer, no `connect` event follows. */
  cancelConnect(id: string): void {
    this.#stopPending(id, 'cancelled', 'cancelled');
  }

  /** Disconnects; reports `disconnect` (id, reason) once the proxy has freed the slot. */
  disconnect(id: string): void {
    const link = this.linkOf(id);
    if (link !== undefined) {
      // The disconnect event comes from the link's close listener (with the proxy's reason).
      void link.connection.disconnect().catch(() => {});
      return;
    }
    if (this.#stopPending(id, 'abandoned', 'abandoned by a disconnect')) return;
    // Nothing to tear down: answer at once so noble's disconnect callback does not wait forever.
    queueMicrotask(() => this.#emit('disconnect', id, 'not connected'));
  }

  /** The link of the peripheral noble calls `id`: another spelling of its address is another peripheral to noble. */
  linkOf(id: string): NobleLink | undefined {
    const link = this.#links.get(id.toLowerCase());
    return link?.id === id ? link : undefined;
  }

  /**
   * The adapter left poweredOn: noble fails its pending connects and its HCI layer drops its connect queue, so
   * stop ours (freeing their slot leases) and fail each with `error` first, lest one comes up behind noble's back.
   */
  failPending(error: Error): void {
    for (const pending of [...this.#pending.values()]) {
      this.#abortPending(pending, 'failed', error);
      this.#connectFailed(pending.id, pending.address, pending.parameters, error);
    }
  }

  /** Stops every connect in flight and disconnects every link (`timeout` bounds each teardown, default 2 s). */
  async close(options: CallOptions): Promise<void> {
    this.#closed = true;
    for (const pending of this.#pending.values())
      pending.controller.abort(new EspApiError('ESPAPI_ERR_ABORTED', 'The noble bindings stopped'));
    const links = [...this.#links.values()];
    await Promise.allSettled(links.map((l) => l.connection.disconnect({ timeout: STOP_DISCONNECT_TIMEOUT_MS, ...options })));
  }

  #adopt(pending: PendingConnect, connection: PooledConnection): void {
    this.#settlePending(pending);
    const id = pending.id;
    if (pending.fate === 'cancelled' || pending.fate === 'failed' || this.#closed) {
      void connection.disconnect().catch(() => {});
      return;
    }
    if (pending.fate === 'abandoned') {
      // The link came up just as a disconnect abandoned the connect: take it down, and tell noble both.
      void connection.disconnect().catch(() => {});
      this.#emit('connect', id, new EspApiError('ESPAPI_ERR_ABORTED', `Connect to ${id} abandoned by a disconnect`));
      this.#emit('disconnect', id, LOCAL_HOST_TERMINATED);
      return;
    }
    const key = id.toLowerCase();
    const link: NobleLink = {
      id,
      connection,
      table: new NobleGattTable(connection.services, connection.mac),
      subscriptions: new Map(),
      known: new Map(),
    };
    this.#links.set(key, link);
    this.#options.scan.announce(id, connection.address, pending.parameters);
    this.#emit('connect', id, null);
    this.#emit('onMtu', id, connection.mtu);
    connection.link.onDisconnect((info) => {
      if (this.#links.get(key) === link) this.#links.delete(key);
      link.subscriptions.clear();
      this.#emit('disconnect', id, info.reason);
    });
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
    this.#options.scan.announce(id, address, parameters);
    this.#emit('connect', id, error);
  }
}

/** An Error of whatever a promise rejected with. */
export function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
