import { setMaxListeners } from 'node:events';
import type { ResubscribePolicy, WatchdogOptions } from '../bluetooth/subscription-watchdog.js';
import { checkKeepaliveInterval } from '../connection/connection.js';
import type { BackoffOptions, ReconnectOptions } from '../connection/reconnect.js';
import { ConnectionClosedError, InvalidArgumentError } from '../errors.js';
import { isZeroPsk, parsePsk } from '../noise/psk.js';
import { assertListenerAllowed } from '../server/listener-policy.js';
import type { BacklogLimits } from '../server/session-backlog.js';
import { type CallOptions, MAX_TIMER_MS, withDeadline } from '../util/abort.js';
import { type AsyncQueue, openQueue, type QueueOptions } from '../util/async-queue.js';
import { compileClientPolicy, compileSlotQuotas, type RelayClientPolicy, type RelaySlotRule } from './client-policy.js';
import { RelayProxy, type RelayUpstreamConfig } from './relay-proxy.js';
import type { RelayProxySnapshot, RelayStatus } from './relay-status.js';

/** How often ads/s is measured and a `stats` event sent: once a second reads naturally in a live table. */
export const DEFAULT_STATS_INTERVAL_MS = 1_000;

/** The firmware pings a silent client after 60 s and drops it after 150 s (spec §5.6). */
export const DEFAULT_CLIENT_KEEPALIVE_INTERVAL_MS = 60_000;

/**
 * Clients each listener serves at once: the firmware's default for a host build (ESP32 builds allow 5, spec §2).
 * A relay's clients are Home Assistant, a backend or two and tools; a connection beyond is closed at once.
 */
export const DEFAULT_RELAY_MAX_CLIENTS = 8;

/** Options of a RelayServer. */
export interface RelayServerOptions {
  /** The upstream proxies; each gets its own downstream listener. */
  proxies: readonly RelayUpstreamConfig[];
  /** Where downstream listeners bind (default 127.0.0.1, port 0 = a free port each; port P = P, P+1, … per proxy). */
  listen?: { host?: string; port?: number };
  /** Base64 Noise key that downstream clients must use (the relay's own key); absent = plaintext listeners. */
  downstreamPsk?: string;
  /** Sent upstream in HelloRequest. */
  clientInfo?: string;
  /** Upstream reconnect backoff. */
  backoff?: BackoffOptions;
  /**
   * An upstream failing for a reason retrying cannot fix (wrong key or password, another device at the address):
   * 'stop' (default) stops that upstream and start() rejects with the cause; 'retry' keeps reconnecting with the
   * backoff, for a proxy whose key will be fixed while the relay runs.
   */
  permanentErrors?: 'stop' | 'retry';
  /** A fresh message tap per upstream session (recordings, a protocol trace); the relay's own keeps working. */
  tapFor?: ReconnectOptions['tapFor'];
  /** Deadline of each upstream connect attempt. */
  connectTimeout?: number;
  /** Upstream keep-alive interval (ms, default 20 s; from 1 ms to 477218588 ms, else InvalidArgumentError at construction). */
  keepaliveInterval?: number;
  /**
   * How long the ping the relay sends upstream behind each client's connect may go unanswered before the upstream is
   * taken for dead (ms; default 90 s, however short `keepaliveInterval` is): until it is answered the connect's slot
   * stays booked, and the ping waits behind everything the clients queued before it for a proxy that may read slowly.
   */
  connectPingTimeout?: number;
  /** How long each upstream attach waits to be confirmed as the proxy's subscriber (default 2 s; another client may hold it). */
  subscriberCheckTimeout?: number;
  /**
   * The watchdog of each upstream subscription (on by default; false switches it off): notices when the proxy
   * stopped serving the relay as its subscriber (another client took it over, 2026.7+ firmware).
   */
  watchdog?: false | WatchdogOptions;
  /** Resubscribe after an upstream subscription was lost (default backoff 10 s, 30 s, then every 60 s); false only reports it. */
  resubscribe?: ResubscribePolicy;
  /** A downstream client silent this long is pinged, and dropped (its links closed) after 2.5 times this (default 60 s). */
  clientKeepaliveInterval?: number;
  /** Time a downstream client has from accept to a processed HelloRequest, Noise handshake included, before it is dropped (default 60 s, as the firmware). */
  clientHandshakeTimeout?: number;
  /** Clients each listener serves at once (default 8, the firmware's host default); one beyond is closed at once (`clientRefused`). */
  maxClients?: number;
  /**
   * When a listener is full, a newcomer takes the place of its oldest client that has not said Hello yet (over Noise:
   * not proven it has the key), reported as `clientDropped` reason 'evicted' (default true). False refuses the
   * newcomer as the firmware does: then a few idle sockets keep everyone out until the connect deadline, and an
   * attacker who reconnects keeps them out for good.
   */
  evictUnauthenticated?: boolean;
  /**
   * Listen beyond loopback without `downstreamPsk`. Refused otherwise (InsecureListenerError, before anything
   * connects): whoever reaches a plaintext listener drives the proxies' Bluetooth.
   */
  allowPlaintext?: boolean;
  /** What may wait to be written to one client before advertisements are dropped, reading stops, it is closed (bytes). */
  clientBacklog?: Partial<BacklogLimits>;
  /**
   * Which subscribers get legacy parsed advertisements (message 67): 'auto' (default) mirrors the upstream
   * firmware (before 2025.8, subscribers with flags=0; newer firmware sends raw batches to everyone), 'flags'
   * sends them to every flags=0 subscriber.
   */
  legacyAdvertisements?: 'auto' | 'flags';
  /** Period of the ads/s measurement and `stats` events (ms). */
  statsInterval?: number;
  /**
   * Slots one downstream client may hold on a proxy, counted over all its sessions: a client is its remote IP
   * address, so every client on one host shares one quota (the in-process pool counts as one client). Default:
   * all but one of the proxy's slots, at least one — beside one busy client, Home Assistant always finds a slot
   * on a proxy with two or more; a client alone also gets only that many. A client at its quota is shown
   * `free: 0` and a connect gets 0x100, as when the proxy is full. `Infinity` turns the quota off.
   */
  slotsPerClient?: number;
  /** Other quotas for some client addresses (the first rule listing an address decides; others get `slotsPerClient`). */
  slotsFor?: readonly RelaySlotRule[];
  /**
   * Who may send the requests that change what the other clients see: scanner mode, unpair and clear-cache (of
   * any device, the client's own links included: the bond and the GATT cache are the proxy's). Each rule lists
   * client addresses or CIDR blocks (or is a predicate); absent = everyone, as the firmware. A refused request
   * gets the firmware's answer shape (see README, Relay). A predicate that throws denies the client what its
   * rule guards and is reported as a `clientPolicyError` status event.
   */
  clientPolicy?: RelayClientPolicy;
}

/** Where one downstream listener is, once open. */
export interface RelayListening {
  readonly proxy: string;
  readonly host: string;
  readonly port: number;
  readonly name: string;
  readonly mac: string;
  readonly encryption: 'noise' | 'plaintext';
}

/** The whole relay at one moment. */
export interface RelaySnapshot {
  readonly proxies: readonly RelayProxySnapshot[];
}

/**
 * Shares ESPHome Bluetooth proxies among many API clients: holds each proxy's single Bluetooth subscription
 * and serves the native API downstream, one listener per proxy under the proxy's own name and MAC, so Home
 * Assistant, a Node backend and tools can all use the same proxies at once.
 */
export class RelayServer {
  /** One entry per upstream proxy; each is also a shared session for `ProxyPool.addSession()`. */
  readonly proxies: readonly RelayProxy[];
  readonly #queues = new Set<AsyncQueue<RelayStatus>>();
  readonly #statsMs: number;
  /** Ends every upstream's first connect; each waiting upstream listens on it, so the count grows with the proxies. */
  readonly #stop = (() => {
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    return controller;
  })();
  #statsTimer: NodeJS.Timeout | undefined;
  #statsAt = 0;
  #started: Promise<RelayListening[]> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: RelayServerOptions) {
    if (options.proxies.length === 0) throw new InvalidArgumentError('A relay needs at least one upstream proxy');
    const key = options.downstreamPsk === undefined ? undefined : parsePsk(options.downstreamPsk);
    const zeroKey = key !== undefined && isZeroPsk(key);
    // The listeners open only once their proxies answer: refuse an exposed plaintext relay before connecting anywhere.
    assertListenerAllowed({
      host: options.listen?.host ?? '127.0.0.1',
      // The all-zero key is public: it hides the traffic from a sniffer, it keeps nobody out.
      authenticated: key !== undefined && !zeroKey,
      ...(zeroKey ? { detail: 'The all-zero key is known to everyone: it authenticates nobody.' } : {}),
      allowUnauthenticated: options.allowPlaintext,
      what: 'relay',
      optIn: '--allow-plaintext (library: allowPlaintext: true)',
    });
    const maxClients = options.maxClients ?? DEFAULT_RELAY_MAX_CLIENTS;
    if (!Number.isInteger(maxClients) || maxClients < 1) {
      throw new InvalidArgumentError(`maxClients must be a positive integer, got ${options.maxClients}`);
    }
    checkKeepaliveInterval(options.keepaliveInterval);
    const { connectPingTimeout } = options;
    if (connectPingTimeout !== undefined && !(connectPingTimeout > 0 && connectPingTimeout <= MAX_TIMER_MS)) {
      throw new InvalidArgumentError(
        `connectPingTimeout must be a number of ms above 0 and at most ${MAX_TIMER_MS}, got ${connectPingTimeout}`,
      );
    }
    const slotsOf = compileSlotQuotas(options.slotsPerClient, options.slotsFor);
    const permissionsOf = compileClientPolicy(options.clientPolicy, (rule, client, error) =>
      this.#emit({
        type: 'clientPolicyError',
        proxy: client.proxy,
        rule,
        remote: client.address,
        error: error instanceof Error ? error.message : String(error),
      }),
    );
    this.#statsMs = options.statsInterval ?? DEFAULT_STATS_INTERVAL_MS;
    const ids = new Set<string>();
    this.proxies = options.proxies.map((config) => {
      const proxy = new RelayProxy(config, {
        listenHost: options.listen?.host ?? '127.0.0.1',
        listenPort: options.listen?.port ?? 0,
        downstreamPsk: options.downstreamPsk,
        clientInfo: options.clientInfo ?? 'esphome-ble relay',
        backoff: options.backoff,
        permanentErrors: options.permanentErrors,
        tapFor: options.tapFor,
        connectTimeout: options.connectTimeout,
        keepaliveInterval: options.keepaliveInterval,
        connectPingTimeout,
        clientKeepaliveInterval: options.clientKeepaliveInterval ?? DEFAULT_CLIENT_KEEPALIVE_INTERVAL_MS,
        clientHandshakeTimeout: options.clientHandshakeTimeout,
        maxClients,
        evictUnauthenticated: options.evictUnauthenticated ?? true,
        allowPlaintext: options.allowPlaintext,
        clientBacklog: options.clientBacklog,
        subscriberCheckTimeout: options.subscriberCheckTimeout,
        watchdog: options.watchdog,
        resubscribe: options.resubscribe,
        legacyAdvertisements: options.legacyAdvertisements ?? 'auto',
        slotsPerClient: options.slotsPerClient,
        slotsOf,
        permissionsOf,
        emit: (status) => this.#emit(status),
      });
      if (ids.has(proxy.id)) throw new InvalidArgumentError(`Proxy ${proxy.id} is listed twice`);
      ids.add(proxy.id);
      return proxy;
    });
  }

  /**
   * Connects every upstream (retrying with backoff) and opens each downstream listener as soon as its
   * proxy's identity is known; resolves when all listen. Rejects on a permanent upstream error (wrong key,
   * identity) or when `options` end the wait; the upstreams keep retrying until close().
   */
  start(options: CallOptions = {}): Promise<RelayListening[]> {
    if (this.#closed) return Promise.reject(new InvalidArgumentError('The relay is closed'));
    if (this.#started === undefined) {
      this.#statsAt = performance.now();
      this.#statsTimer = setInterval(() => this.#tick(), this.#statsMs);
    }
    const started = (this.#started ??= Promise.all(
      this.proxies.map(async (proxy, index) => {
        const server = await proxy.listen(this.#stop.signal, index);
        const info = server.listeningInfo();
        return { proxy: proxy.id, host: info.host, port: info.port, name: info.name, mac: info.mac, encryption: info.encryption };
      }),
    ));
    started.catch(() => {});
    return withDeadline('Starting the relay', options, undefined, (signal) =>
      Promise.race([
        started,
        new Promise<never>((_, reject) => {
          if (signal.aborted) reject(signal.reason);
          signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        }),
      ]),
    );
  }

  /** Every proxy's upstream state, listener, slots per client and ads/s. */
  snapshot(): RelaySnapshot {
    return { proxies: this.proxies.map((p) => p.snapshot()) };
  }

  /** Relay events as a bounded stream (ends on close()). */
  status(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<RelayStatus> {
    return openQueue(this.#queues, this.#closed, options);
  }

  /**
   * Closes every listener and every upstream session. Idempotent (a second call waits for the first). As a proxy
   * shutting down does, each downstream client gets a DisconnectRequest first and until `timeout` (default 2 s)
   * or `signal` to hang up, so it takes the close for an expected one; clients still there then are dropped.
   */
  close(options: CallOptions = {}): Promise<void> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(options: CallOptions): Promise<void> {
    this.#closed = true;
    clearInterval(this.#statsTimer);
    this.#stop.abort(new ConnectionClosedError('The relay is closed'));
    await Promise.allSettled(this.proxies.map((p) => p.close(options)));
    for (const queue of this.#queues) queue.end();
    this.#queues.clear();
  }

  #tick(): void {
    const now = performance.now();
    const elapsed = now - this.#statsAt;
    this.#statsAt = now;
    for (const proxy of this.proxies) proxy.tick(elapsed);
  }

  #emit(status: RelayStatus): void {
    for (const queue of this.#queues) queue.push(status);
  }
}
