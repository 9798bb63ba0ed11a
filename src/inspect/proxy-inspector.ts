import { setMaxListeners } from 'node:events';
import { BluetoothProxy } from '../bluetooth/proxy-client.js';
import { type ApiConnection, DEFAULT_API_PORT } from '../connection/connection.js';
import { type BackoffOptions, ReconnectingConnection, type ReconnectOptions } from '../connection/reconnect.js';
import { EspApiError, InvalidArgumentError } from '../errors.js';
import { parseProxySpec } from '../pool/proxy-pool.js';
import { type CallOptions, sleep } from '../util/abort.js';
import { type SlotInspection, SlotInspector } from './slot-inspector.js';
import { HOLD_EVIDENCE_MS } from './subscriber-verdict.js';

/** The whole of one look (inspectProxies(), ProxyInspector.look()) without a `timeout`: connecting, asking, asking again. */
export const DEFAULT_INSPECT_TIMEOUT_MS = 5_000;
/** The second look is skipped when the deadline leaves less than this after HOLD_EVIDENCE_MS for its slot queries. */
const SECOND_LOOK_QUERY_MS = 250;
/** Poll interval of watch() without one: slot changes show within a second, one small request per proxy. */
export const DEFAULT_WATCH_INTERVAL_MS = 1_000;
/** The shortest poll interval watch() accepts: the firmware answers at once, but a fleet should not be flooded. */
export const MIN_WATCH_INTERVAL_MS = 100;

/** One proxy to inspect. */
export interface InspectTarget {
  readonly host: string;
  readonly port?: number | undefined;
  /** Base64 Noise key; absent = plaintext. */
  readonly psk?: string | undefined;
  /** Legacy API password (firmware before 2026.1). */
  readonly password?: string | undefined;
  /** Its id in the results (default `host:port`). */
  readonly name?: string | undefined;
}

/** Options of a ProxyInspector (and of inspectProxies). */
export interface ProxyInspectorOptions {
  /**
   * Take each proxy's Bluetooth subscription (off by default). It brings slot pushes, the scanner mode and proof of
   * orphaned slots, at a price: on ESPHome 2026.7+ the newest subscriber wins, so this takes the subscription from
   * Home Assistant — its open links' events come to us meanwhile, and once we close the proxy has no subscriber and
   * drops every link, Home Assistant's included; it gets nothing from the proxy until it subscribes again. On older
   * firmware the first one wins and our subscribe is ignored where Home Assistant holds it (the inspection then says
   * another client holds it). We never fight for it (no resubscribe) and never send the subscriber probe, whose
   * answer would reach Home Assistant (firmware without scanner state then leaves our subscription unconfirmed).
   */
  readonly subscribe?: boolean | undefined;
  /** Sent in HelloRequest (default `esphome-ble inspect`). */
  readonly clientInfo?: string | undefined;
  /** Deadline of each connect attempt in ms. */
  readonly connectTimeout?: number | undefined;
  /** Reconnect backoff of each session. */
  readonly backoff?: BackoffOptions | undefined;
  /** A fresh message tap per session (recordings). */
  readonly tapFor?: ReconnectOptions['tapFor'];
  /** 'retry': keep retrying a proxy that failed for a cause retrying cannot fix (default: it stops, with that error). */
  readonly permanentErrors?: ReconnectOptions['permanentErrors'];
}

/** One proxy in the results of an inspection. */
export interface ProxyInspection {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** The node name, once a session said Hello (kept while offline). */
  readonly name: string | undefined;
  readonly online: boolean;
  /** Why it is offline (its last connect error), or why the last poll failed. */
  readonly error: { readonly code: string; readonly message: string } | undefined;
  /** The latest inspection while online; undefined while offline. */
  readonly inspection: SlotInspection | undefined;
}

interface Entry {
  readonly id: string;
  readonly target: InspectTarget;
  readonly session: ReconnectingConnection;
  inspector: SlotInspector | undefined;
  name: string | undefined;
  pollError: Error | undefined;
}

/**
 * Inspects a set of proxies over sessions of its own that it keeps alive (reconnecting with backoff): slot counts
 * and holders, who holds each proxy's Bluetooth subscription, releases on request. By default it takes nothing
 * from the other clients of the proxies (see SlotInspector); `subscribe: true` is the explicit opt-in.
 */
export class ProxyInspector {
  readonly options: ProxyInspectorOptions;
  readonly #entries = new Map<string, Entry>();
  #started = false;
  #closed = false;

  /** `targets` as objects or `host[:port]` strings (IPv6 as `[::1]:6053`). */
  constructor(targets: ReadonlyArray<InspectTarget | string> = [], options: ProxyInspectorOptions = {}) {
    this.options = options;
    for (const target of targets) this.add(target);
  }

  /** Adds a proxy (started at once when the inspector runs); returns its id. A known id is left as it is. */
  add(spec: InspectTarget | string): string {
    if (this.#closed) throw new InvalidArgumentError('The inspector is closed');
    const target = typeof spec === 'string' ? parseProxySpec(spec) : spec;
    if (target.host === '') throw new InvalidArgumentError('An inspect target needs a host');
    const port = target.port ?? DEFAULT_API_PORT;
    const id = target.name ?? `${target.host}:${port}`;
    if (this.#entries.has(id)) return id;
    const entry: Entry = {
      id,
      target,
      inspector: undefined,
      name: undefined,
      pollError: undefined,
      session: new ReconnectingConnection({
        host: target.host,
        port,
        psk: target.psk,
        password: target.password,
        clientInfo: this.options.clientInfo ?? 'esphome-ble inspect',
        ...(this.options.connectTimeout === undefined ? {} : { connectTimeout: this.options.connectTimeout }),
        ...(this.options.backoff === undefined ? {} : { backoff: this.options.backoff }),
        ...(this.options.tapFor === undefined ? {} : { tapFor: this.options.tapFor }),
        ...(this.options.permanentErrors === undefined ? {} : { permanentErrors: this.options.permanentErrors }),
        onConnect: (connection) => this.#onConnect(entry, connection),
      }),
    };
    this.#entries.set(id, entry);
    if (this.#started) entry.session.start();
    return id;
  }

  /** Starts every session (idempotent). */
  start(): this {
    if (this.#started || this.#closed) return this;
    this.#started = true;
    for (const entry of this.#entries.values()) entry.session.start();
    return this;
  }

  /** Waits until every proxy has connected or given up for good, at most `timeout`; resolves with the snapshot either way. */
  async ready(options: CallOptions = {}): Promise<ProxyInspection[]> {
    this.start();
    const signal = options.signal === undefined ? undefined : AbortSignal.any([options.signal]);
    if (signal !== undefined) setMaxListeners(0, signal);
    await Promise.allSettled([...this.#entries.values()].map((e) => e.session.waitConnected({ signal, timeout: options.timeout })));
    options.signal?.throwIfAborted();
    return this.snapshot();
  }

  /**
   * Polls every online proxy once (in parallel, each bounded by `timeout`, default SLOT_QUERY_TIMEOUT_MS, so the
   * whole poll is too) and returns the snapshot; a failed poll is noted in `error`. Rejects only on `signal`.
   */
  async poll(options: CallOptions = {}): Promise<ProxyInspection[]> {
    options.signal?.throwIfAborted();
    await Promise.all([...this.#entries.values()].map((entry) => this.#pollEntry(entry, options)));
    options.signal?.throwIfAborted();
    return this.snapshot();
  }

  /**
   * One look within one deadline (`timeout`, default DEFAULT_INSPECT_TIMEOUT_MS): each proxy is asked for its slots
   * as soon as it is connected, and where a slot of another client was seen only once, every proxy is asked again
   * HOLD_EVIDENCE_MS later, so that holding can prove who is subscribed — if the deadline leaves time for it
   * (`settle: false` skips it). Resolves with the snapshot when done or at the deadline (a proxy not connected by
   * then is offline with its last error, one that did not answer carries a TimeoutError); rejects only on `signal`.
   */
  async look(options: CallOptions & { readonly settle?: boolean | undefined } = {}): Promise<ProxyInspection[]> {
    const signal = options.signal;
    signal?.throwIfAborted();
    this.start();
    const deadline = Date.now() + (options.timeout ?? DEFAULT_INSPECT_TIMEOUT_MS);
    const left = (): number => Math.max(0, deadline - Date.now());
    await Promise.all(
      [...this.#entries.values()].map(async (entry) => {
        try {
          await entry.session.waitConnected({ signal, timeout: left() });
        } catch {
          return; // not connected by the deadline: the snapshot says why
        }
        await this.#pollEntry(entry, { signal, timeout: left() });
      }),
    );
    signal?.throwIfAborted();
    const first = this.snapshot();
    if (options.settle === false || !needsSecondLook(first) || left() < HOLD_EVIDENCE_MS + SECOND_LOOK_QUERY_MS) return first;
    await sleep(HOLD_EVIDENCE_MS, signal);
    return this.poll({ signal, timeout: left() });
  }

  /** What is known now, in the order the proxies were added. */
  snapshot(now = Date.now()): ProxyInspection[] {
    return [...this.#entries.values()].map((entry) => {
      const inspector = entry.inspector;
      const online = inspector !== undefined && !inspector.api.isClosed;
      const error = online ? entry.pollError : (entry.session.lastError ?? (this.#started ? undefined : new Error('not started')));
      return {
        id: entry.id,
        host: entry.target.host,
        port: entry.target.port ?? DEFAULT_API_PORT,
        name: entry.name,
        online,
        error: error === undefined ? undefined : { code: error instanceof EspApiError ? error.code : error.name, message: error.message },
        inspection: online ? inspector.inspection(now) : undefined,
      };
    });
  }

  /**
   * Polls every `interval` ms (default DEFAULT_WATCH_INTERVAL_MS, at least MIN_WATCH_INTERVAL_MS), each poll bounded by
   * `timeout` (see poll()), and yields each snapshot, the first at once; ends when `signal` aborts or the inspector closes.
   */
  async *watch(
    options: { interval?: number | undefined; signal?: AbortSignal | undefined; timeout?: number | undefined } = {},
  ): AsyncIterableIterator<ProxyInspection[]> {
    const interval = Math.max(MIN_WATCH_INTERVAL_MS, options.interval ?? DEFAULT_WATCH_INTERVAL_MS);
    const signal = options.signal;
    this.start();
    while (!this.#closed && signal?.aborted !== true) {
      let snapshot: ProxyInspection[];
      try {
        snapshot = await this.poll({ signal, timeout: options.timeout });
      } catch (error) {
        if (signal?.aborted) return;
        throw error;
      }
      yield snapshot;
      try {
        await sleep(interval, signal);
      } catch {
        return;
      }
    }
  }

  /**
   * Frees the slot of `address` on proxy `id` (SlotInspector.release): resolves true once the proxy no longer lists
   * it, false when it still does after `timeout`. Ends whatever link holds the slot, another client's included.
   */
  async release(id: string, address: number, options: CallOptions = {}): Promise<boolean> {
    const entry = this.#entries.get(id);
    if (entry === undefined) throw new InvalidArgumentError(`No proxy ${JSON.stringify(id)} in this inspection`);
    const inspector = entry.inspector;
    if (inspector === undefined) throw entry.session.lastError ?? new InvalidArgumentError(`Proxy ${id} is not connected`);
    return inspector.release(address, options);
  }

  /** Closes every session (gracefully; a subscription we held ends with it). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#entries.values()].map((entry) => entry.session.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #pollEntry(entry: Entry, options: CallOptions): Promise<void> {
    const inspector = entry.inspector;
    if (inspector === undefined) return;
    try {
      await inspector.poll(options);
      entry.pollError = undefined;
    } catch (error) {
      if (options.signal?.aborted) return;
      entry.pollError = error instanceof Error ? error : new Error(String(error));
    }
  }

  async #onConnect(entry: Entry, connection: ApiConnection): Promise<void> {
    entry.name = connection.hello.name || connection.deviceInfo.name || entry.name;
    // Only a proxy can be subscribed; any other node is still inspected (it simply has no slots). Never the subscriber
    // probe: where another client holds the subscription, its answer would land there.
    const bluetooth =
      this.options.subscribe === true && connection.deviceInfo.bluetoothProxyFeatureFlags !== 0
        ? await BluetoothProxy.attach(connection, { requireSubscriber: false, resubscribe: false, probe: false })
        : undefined;
    const inspector = new SlotInspector(connection, { bluetooth });
    entry.inspector = inspector;
    entry.pollError = undefined;
    void connection.closed().then(() => {
      inspector.close();
      if (entry.inspector === inspector) entry.inspector = undefined;
    });
  }
}

/**
 * One look at `targets` (ProxyInspector.look): connects to each, asks each for its slots and, where a slot of
 * another client was seen only once, asks again HOLD_EVIDENCE_MS later — all within `timeout` (default
 * DEFAULT_INSPECT_TIMEOUT_MS). Takes nothing unless `subscribe` says so; closes its sessions.
 */
export async function inspectProxies(
  targets: ReadonlyArray<InspectTarget | string>,
  options: ProxyInspectorOptions & CallOptions & { settle?: boolean } = {},
): Promise<ProxyInspection[]> {
  options.signal?.throwIfAborted();
  const inspector = new ProxyInspector(targets, options);
  try {
    return await inspector.look({ signal: options.signal, timeout: options.timeout, settle: options.settle });
  } finally {
    await inspector.close();
  }
}

/** True when some proxy lists a slot of another client that has not been seen long enough to prove anything. */
export function needsSecondLook(inspections: readonly ProxyInspection[]): boolean {
  return inspections.some((p) => p.inspection?.allocations.some((a) => !a.owned && a.heldMs < HOLD_EVIDENCE_MS) ?? false);
}
