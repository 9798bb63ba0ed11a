import { channel } from 'node:diagnostics_channel';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { PartialMessage } from '@protobuf-ts/runtime';
import { InvalidArgumentError } from '../errors.js';
import { messageId, messageInfoById } from '../frame/message-types.js';
import {
  DeviceCapabilitiesRequest,
  type DeviceCapabilitiesResponse,
  type DeviceInfoResponse,
  DisconnectRequest,
  PingRequest,
} from '../gen/api_pb.js';
import { isZeroPsk, parsePsk } from '../noise/psk.js';
import { abortPromise, type CallOptions, MAX_TIMER_MS, withDeadline } from '../util/abort.js';
import {
  type ApiServerOptions,
  DEFAULT_CLOSE_DISCONNECT_TIMEOUT_MS,
  DEFAULT_ESPHOME_VERSION,
  DEFAULT_MAX_CONNECTIONS,
  type FirmwareIdentity,
  type ListeningInfo,
  macFromName,
  type SessionFaults,
  type SessionPlugin,
} from './api-server-options.js';
import { ApiSession } from './api-session.js';
import { assertListenerAllowed } from './listener-policy.js';
import { formatRemote } from './remote-address.js';
import type { ApiServerEvent } from './server-events.js';
import { type BacklogLimits, backlogLimits } from './session-backlog.js';
import { checkKeepalive, DEFAULT_KEEPALIVE_INTERVAL_MS, KEEPALIVE_CHECKS_PER_INTERVAL } from './session-keepalive.js';

export {
  type ApiServerOptions,
  DEFAULT_CLOSE_DISCONNECT_TIMEOUT_MS,
  DEFAULT_ESPHOME_VERSION,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  type FirmwareIdentity,
  type ListeningInfo,
  macFromName,
  type SessionFaults,
  type SessionPlugin,
} from './api-server-options.js';
export { ApiSession, CLOSE_GRACE_MS } from './api-session.js';

/**
 * Diagnostics channel (`node:diagnostics_channel`) on which every session an API server accepts is published as
 * `{ session }`: a tool preloaded into a process (the hostile run's memory probe) can see what sessions hold
 * without a hook in the code. Free while nobody subscribes.
 */
export const SESSION_DIAGNOSTICS_CHANNEL = 'esphome-ble:session';
const sessionChannel = channel(SESSION_DIAGNOSTICS_CHANNEL);

/**
 * A TCP server that behaves like an ESPHome node on the wire (plaintext or Noise responder),
 * extended by plugins: the simulated Bluetooth proxy (fixture server) and the relay stand on it.
 */
export class ApiServer {
  readonly options: ApiServerOptions;
  readonly name: string;
  readonly mac: string;
  readonly psk: Uint8Array | undefined;
  readonly plugins: SessionPlugin[];
  /** Faults injected into every session (from options.faults; may be changed at run time). */
  faults: SessionFaults;
  /** Open sessions, oldest first. */
  readonly sessions = new Set<ApiSession>();
  /** Sessions accepted at once; a connection beyond is closed at once (`sessionRefused`), or evicts (`evictUnauthenticated`). */
  readonly maxConnections: number;
  /** What may wait to be written to one client (checked once here, shared by every session). */
  readonly backlogLimits: BacklogLimits;
  readonly #server: Server;
  /** Every accepted socket until its 'close': open sessions, and closed ones still letting their last bytes out. */
  readonly #sockets = new Set<Socket>();
  #keepaliveTimer: NodeJS.Timeout | undefined;
  readonly #sessionListeners = new Set<(session: ApiSession) => void>();
  #closed = false;
  #closing: Promise<void> | undefined;
  #firmware: Required<FirmwareIdentity>;

  constructor(options: ApiServerOptions = {}) {
    this.options = options;
    this.name = options.name ?? 'esphome-ble-fixture';
    this.mac = (options.mac ?? macFromName(this.name)).toUpperCase();
    this.psk = options.psk === undefined ? undefined : parsePsk(options.psk);
    this.#firmware = {
      apiVersion: options.apiVersion ?? { major: 1, minor: 15 },
      esphomeVersion: options.esphomeVersion ?? DEFAULT_ESPHOME_VERSION,
      legacyLogin: options.legacyLogin ?? false,
      unknownBeforeAuth: options.unknownBeforeAuth ?? 'close',
    };
    this.plugins = options.plugins ?? [];
    this.faults = { ...options.faults };
    this.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (!Number.isInteger(this.maxConnections) || this.maxConnections < 1) {
      throw new InvalidArgumentError(`maxConnections must be a positive integer, got ${options.maxConnections}`);
    }
    const keepalive = options.keepaliveInterval ?? DEFAULT_KEEPALIVE_INTERVAL_MS;
    // Past Node's timer limit (Infinity included) a timer fires every millisecond instead.
    if (!(keepalive >= 0 && keepalive <= MAX_TIMER_MS)) {
      throw new InvalidArgumentError(`keepaliveInterval must be 0 (off) to ${MAX_TIMER_MS} ms, got ${keepalive}`);
    }
    this.backlogLimits = backlogLimits(options.backlog);
    this.#server = createServer((socket) => this.#accept(socket));
  }

  /** API version this node reports in HelloResponse. */
  get apiVersion(): { major: number; minor: number } {
    return this.#firmware.apiVersion;
  }

  /** ESPHome version this node reports (HelloResponse server_info, DeviceInfo). */
  get esphomeVersion(): string {
    return this.#firmware.esphomeVersion;
  }

  /** Firmware before 2025: only an AuthenticationRequest authenticates a session. */
  get legacyLogin(): boolean {
    return this.#firmware.legacyLogin;
  }

  /** What an id without a handler does before authentication: 'ignore' (2024 firmware) or 'close'. */
  get unknownBeforeAuth(): 'ignore' | 'close' {
    return this.#firmware.unknownBeforeAuth;
  }

  /** Changes the firmware this node plays (a relay's upstream was updated); sessions that say Hello from now on see it. */
  setFirmware(firmware: FirmwareIdentity): void {
    this.#firmware = { ...this.#firmware, ...firmware };
  }

  /**
   * Starts listening; resolves with the bound address. Beyond loopback without a key it refuses before binding
   * (InsecureListenerError) unless `allowPlaintext` asked for it.
   */
  async listen(): Promise<{ host: string; port: number }> {
    const host = this.options.host ?? '127.0.0.1';
    const zeroKey = this.psk !== undefined && isZeroPsk(this.psk);
    assertListenerAllowed({
      host,
      // The all-zero key is public (unprovisioned devices accept it): it hides the traffic from a sniffer, it keeps nobody out.
      authenticated: this.psk !== undefined && !zeroKey,
      ...(zeroKey ? { detail: 'The all-zero key is known to everyone: it authenticates nobody.' } : {}),
      allowUnauthenticated: this.options.allowPlaintext,
      what: this.options.label ?? 'API server',
      optIn: '--allow-plaintext (library: allowPlaintext: true)',
    });
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.options.port ?? 0, host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const interval = this.options.keepaliveInterval ?? DEFAULT_KEEPALIVE_INTERVAL_MS;
    if (interval > 0 && !this.#closed) {
      this.#keepaliveTimer = setInterval(() => this.#checkKeepalive(interval), interval / KEEPALIVE_CHECKS_PER_INTERVAL);
    }
    return this.address;
  }

  /** The bound address (after listen). */
  get address(): { host: string; port: number } {
    const info = this.#server.address() as AddressInfo;
    return { host: info.address, port: info.port };
  }

  /** The JSON object `esphome-ble serve` prints first. */
  listeningInfo(): ListeningInfo {
    const { host, port } = this.address;
    return { event: 'listening', host, port, name: this.name, mac: this.mac, encryption: this.psk ? 'noise' : 'plaintext' };
  }

  /** DeviceInfoResponse this node sends. */
  deviceInfo(): PartialMessage<DeviceInfoResponse> {
    let info: PartialMessage<DeviceInfoResponse> = {
      name: this.name,
      friendlyName: this.options.friendlyName ?? this.name,
      macAddress: this.mac,
      esphomeVersion: this.esphomeVersion,
      compilationTime: 'Aug 21 2026, 12:00:00',
      model: this.options.model ?? 'esp32dev',
      manufacturer: 'Espressif',
      usesPassword: this.options.password !== undefined,
      // Only a node with a key speaks Noise: firmware claiming Noise over plaintext is unprovisioned and would take
      // a NoiseEncryptionSetKeyRequest (Home Assistant sends one on every connect), which this node does not.
      apiEncryptionSupported: this.psk !== undefined,
    };
    for (const plugin of this.plugins) info = { ...info, ...(plugin.deviceInfo?.() ?? {}) };
    return info;
  }

  /** DeviceCapabilitiesResponse this node sends. */
  capabilities(): PartialMessage<DeviceCapabilitiesResponse> {
    let caps: PartialMessage<DeviceCapabilitiesResponse> = {};
    for (const plugin of this.plugins) caps = { ...caps, ...(plugin.capabilities?.() ?? {}) };
    return caps;
  }

  /** True when this node's firmware has a handler for message `id` (DeviceCapabilitiesRequest arrived with API 1.15). */
  handles(id: number): boolean {
    if (id === CAPABILITIES_REQUEST_ID) return this.apiVersion.major > 1 || this.apiVersion.minor >= 15;
    return messageInfoById(id) !== undefined;
  }

  /** Calls `listener` for each new session. */
  onSession(listener: (session: ApiSession) => void): () => void {
    this.#sessionListeners.add(listener);
    return () => this.#sessionListeners.delete(listener);
  }

  /** Resolves with the next session that connects. */
  nextSession(): Promise<ApiSession> {
    return new Promise((resolve) => {
      const off = this.onSession((session) => {
        off();
        resolve(session);
      });
    });
  }

  /**
   * Connections that count toward `maxConnections`: open sessions, and closed ones whose socket is still letting
   * their last bytes out (at most CLOSE_GRACE_MS).
   */
  get connections(): number {
    return this.#sockets.size;
  }

  /** @internal called by sessions. */
  sessionClosed(session: ApiSession): void {
    this.sessions.delete(session);
  }

  /** @internal reports what the server did to protect itself (`onEvent`). */
  emit(event: ApiServerEvent, session: ApiSession | undefined): void {
    try {
      this.options.onEvent?.(event, session);
    } catch {
      // A listener's failure must not take the session handling down with it.
    }
  }

  /**
   * Stops listening and closes every session. Idempotent. With `disconnect`, as a device shutting down does
   * (spec §5.7), each session past Hello first gets a DisconnectRequest and until `timeout` (default 2 s) or
   * `signal` to answer or hang up, so its client takes the close for an expected one; the rest is dropped then.
   */
  close(options: CallOptions & { disconnect?: boolean } = {}): Promise<void> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(options: CallOptions & { disconnect?: boolean }): Promise<void> {
    this.#closed = true;
    clearInterval(this.#keepaliveTimer);
    const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (options.disconnect) await this.disconnectSessions(options);
    for (const session of [...this.sessions]) session.close();
    for (const socket of this.#sockets) socket.destroy();
    for (const plugin of this.plugins) await plugin.close?.();
    await stopped;
  }

  /**
   * Sends a DisconnectRequest to every session past Hello, as a device going down does, and waits until each has
   * hung up, `timeout` (default 2 s) or `signal`; then drops the rest. Never rejects.
   */
  async disconnectSessions(options: CallOptions = {}): Promise<void> {
    const open = [...this.sessions].filter((session) => session.helloDone);
    if (open.length === 0) return;
    const gone = Promise.all(open.map((session) => new Promise<void>((resolve) => session.onClose(resolve))));
    for (const session of open) session.send(DisconnectRequest, {});
    try {
      await withDeadline('Disconnecting the clients', options, DEFAULT_CLOSE_DISCONNECT_TIMEOUT_MS, async (signal) => {
        const aborted = abortPromise(signal);
        try {
          await Promise.race([gone, aborted.promise]);
        } finally {
          aborted.cleanup();
        }
      });
    } catch {
      // Deadline or abort: whoever has not hung up is dropped.
    }
    for (const session of open) session.close();
  }

  #checkKeepalive(interval: number): void {
    const now = performance.now();
    for (const session of [...this.sessions]) {
      try {
        checkKeepalive(
          [session],
          interval,
          {
            ping: (target) => target.sendRaw(PING_REQUEST_ID, EMPTY),
            expire: (target, idle) =>
              target.drop('keepalive', `silent for ${Math.round(idle)} ms once authenticated (pinged after ${interval} ms)`),
          },
          now,
        );
      } catch {
        // A timer callback must not throw (it would end the process): a session we cannot write to is dropped.
        session.close();
      }
    }
  }

  #accept(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    if (this.#sockets.size >= this.maxConnections && !this.#evictFor(socket)) {
      // The firmware accepts, logs "Max connections" and closes at once: the client sees the connection end.
      this.emit({ type: 'sessionRefused', remote: formatRemote(socket), reason: 'maxConnections', limit: this.maxConnections }, undefined);
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    const session = new ApiSession(this, socket);
    this.sessions.add(session);
    if (sessionChannel.hasSubscribers) sessionChannel.publish({ session });
    for (const listener of this.#sessionListeners) listener(session);
  }

  /**
   * With `evictUnauthenticated`, a full listener makes room for `newcomer` by dropping its oldest session that has
   * not authenticated yet; false when there is none (every place is held by a client that got in).
   */
  #evictFor(newcomer: Socket): boolean {
    if (this.options.evictUnauthenticated !== true) return false;
    for (const session of this.sessions) {
      if (session.authenticated) continue;
      session.drop(
        'evicted',
        `the listener was full (${this.maxConnections}) when ${formatRemote(newcomer)} connected; this session was the oldest not authenticated`,
      );
      return true;
    }
    return false;
  }
}

const EMPTY = new Uint8Array(0);
const PING_REQUEST_ID = messageId(PingRequest);
const CAPABILITIES_REQUEST_ID = messageId(DeviceCapabilitiesRequest);
