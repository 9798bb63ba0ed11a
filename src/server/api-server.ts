import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { MessageType, PartialMessage } from '@protobuf-ts/runtime';
import { EspApiError, FrameError, InvalidArgumentError } from '../errors.js';
import { messageId, messageInfoById } from '../frame/message-types.js';
import {
  AuthenticationRequest,
  AuthenticationResponse,
  DeviceCapabilitiesResponse,
  DeviceInfoResponse,
  DisconnectRequest,
  GetTimeRequest,
  HelloRequest,
  HelloResponse,
  ListEntitiesDoneResponse,
} from '../gen/api_pb.js';
import { parsePsk } from '../noise/psk.js';
import { abortPromise, type CallOptions, withDeadline } from '../util/abort.js';
import {
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
import { assertListenerAllowed } from './listener-policy.js';
import { NoiseServerCodec, PlaintextServerCodec, type ServerCodec } from './server-codec.js';
import type { ApiServerEvent, SessionDropReason } from './server-events.js';
import { type BacklogLimits, backlogLimits, SessionBacklog } from './session-backlog.js';
import { SessionInput } from './session-input.js';
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

type SessionState = 'new' | 'setup' | 'authenticated' | 'closed';

/** One client's session on an API server. */
export class ApiSession {
  readonly server: ApiServer;
  readonly socket: Socket;
  state: SessionState = 'new';
  /** The client's HelloRequest, once received. */
  clientInfo = '';
  clientApiVersion = { major: 0, minor: 0 };
  /** Every message id received, in order (tests count frames with it; empty when `recordReceived` is off). */
  readonly received: number[] = [];
  /** Messages received from the client. */
  messagesReceived = 0;
  /** `address:port` of the client. */
  readonly remote: string;
  /** When the client last sent a message (ms, `Date.now()`), for the keep-alive. */
  lastHeard = Date.now();
  /** True once pinged since `lastHeard`. */
  pinged = false;
  readonly #codec: ServerCodec;
  readonly #backlog: SessionBacklog;
  readonly #input: SessionInput;
  readonly #closeListeners = new Set<() => void>();
  readonly #delayed = new Set<NodeJS.Timeout>();
  readonly #faultCounts = { received: 0, sent: 0 };
  #bytesWritten = 0;
  #handshakeTimer: NodeJS.Timeout | undefined;

  constructor(server: ApiServer, socket: Socket) {
    this.server = server;
    this.socket = socket;
    this.remote = formatRemote(socket);
    this.#backlog = new SessionBacklog(socket, server.backlogLimits, () => this.#input.resume());
    this.#input = new SessionInput(socket, this.#backlog, {
      decode: (chunk) => this.#codec.push(chunk),
      fail: (error) => {
        // A device drops a connection whose frames it cannot parse.
        server.options.onSessionError?.(this, error);
        this.drop('protocol', error instanceof Error ? error.message : String(error));
      },
      closed: () => this.state === 'closed',
    });
    const io = {
      write: (bytes: Uint8Array) => this.writeRaw(bytes),
      reject: (bytes: Uint8Array, reason: string) => {
        // Reported like any other drop: wrong keys and oversized handshake headers are what an operator looks for.
        if (this.state !== 'closed') this.#report('protocol', `refused in the transport handshake: ${reason}`);
        if (!socket.destroyed) socket.end(bytes);
        this.#markClosed();
      },
      yieldWhen: this.#input.yieldWhen,
    };
    const onMessage = (type: number, payload: Uint8Array): void => {
      try {
        this.#onMessage(type, payload);
      } catch (error) {
        throw asDecodeError(type, payload, error);
      }
    };
    const options = server.options;
    this.#codec =
      server.psk === undefined
        ? new PlaintextServerCodec(onMessage, io)
        : new NoiseServerCodec(onMessage, io, {
            psk: server.psk,
            name: server.name,
            mac: server.mac.replaceAll(':', '').toLowerCase(),
            ...(options.serverHelloGeneration ? { helloGeneration: options.serverHelloGeneration } : {}),
          });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (this.state !== 'closed') this.#input.push(chunk);
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.#markClosed());
    const handshakeMs = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.#handshakeTimer = setTimeout(
      () => this.drop('handshakeTimeout', `no HelloRequest processed within ${handshakeMs} ms of connecting`),
      handshakeMs,
    );
  }

  /** Bytes waiting to be written to the client (the socket's queue and delayed writes). */
  get backlogBytes(): number {
    return this.#backlog.bytes;
  }

  /** True while the client's requests are not read because its replies piled up. */
  get inputPaused(): boolean {
    return this.#backlog.paused;
  }

  /** Advertisement reports skipped because the client was behind. */
  get droppedAdvertisements(): number {
    return this.#backlog.dropped;
  }

  /** Bytes this session holds of the client's input: a frame not complete yet, and input not decoded yet. */
  get inputBytes(): number {
    return this.#codec.inputBytes + this.#input.heldBytes;
  }

  /**
   * True when droppable traffic (advertisements) must be skipped now because the client is behind; counts
   * `items` (reports) as dropped then. Callers that frame their own bytes check this before `writeRaw`.
   */
  shed(items = 1): boolean {
    return this.#backlog.shed(items);
  }

  /** Sends a message the client may miss when it is behind (advertisements); false when it was dropped. */
  sendDroppable<T extends object>(type: MessageType<T>, message: PartialMessage<T>, items = 1): boolean {
    if (this.state === 'closed' || this.#backlog.shed(items)) return false;
    this.send(type, message);
    return true;
  }

  /** Closes the session on the server's own account, reporting why (event `sessionDropped`). */
  drop(reason: SessionDropReason, message: string): void {
    if (this.state === 'closed') return;
    this.#report(reason, message);
    this.close();
  }

  /** True once the session ended. */
  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** True once the client's HelloRequest was answered: the transport is up and the session may be sent anything. */
  get helloDone(): boolean {
    return this.state === 'setup' || this.state === 'authenticated';
  }

  /** Sends one message to the client. */
  send<T extends object>(type: MessageType<T>, message: PartialMessage<T>): void {
    this.sendRaw(messageId(type), type.toBinary(type.create(message)));
  }

  /** Sends an encoded payload under any wire id (tests use unknown ids). */
  sendRaw(id: number, payload: Uint8Array): void {
    if (this.state === 'closed') return;
    this.writeRaw(this.#codec.encode(id, payload));
    const drop = this.server.faults.dropOnSend;
    if (drop?.type === id && ++this.#faultCounts.sent === (drop.count ?? 1)) this.#fatal();
  }

  /** Writes bytes as they are, bypassing the framing (garbage-input tests, pre-framed advertisements). */
  writeRaw(bytes: Uint8Array): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    const delay = this.server.faults.replyDelayMs;
    if (delay === undefined) {
      this.#write(bytes);
      return;
    }
    // Delayed writes count as backlog: a client that floods a slow node is bounded the same way.
    const copy = new Uint8Array(bytes);
    this.#backlog.delayed += copy.length;
    const timer = setTimeout(() => {
      this.#delayed.delete(timer);
      this.#backlog.delayed -= copy.length;
      this.#write(copy);
    }, delay);
    this.#delayed.add(timer);
    this.#checkBacklog();
  }

  /** Calls `listener` once when the session closes. */
  onClose(listener: () => void): () => void {
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /** Sends a DisconnectRequest as a rebooting device does, then closes. */
  disconnectFromDevice(): void {
    this.send(DisconnectRequest, {});
    setTimeout(() => this.close(), 20).unref();
  }

  /** Drops the TCP connection at once. */
  close(): void {
    if (!this.socket.destroyed) this.socket.destroy();
    this.#markClosed();
  }

  /**
   * The firmware's fatal-error close: what it already wrote (an AuthenticationResponse, say) still goes out
   * before the FIN, unlike close(), which drops the connection with anything still corked. Fault drops use it too.
   */
  #fatal(): void {
    if (!this.socket.destroyed) this.socket.end(() => this.socket.destroy());
    this.#markClosed();
  }

  #write(bytes: Uint8Array): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    const limit = this.server.faults.dropAfterBytes;
    if (limit !== undefined && this.#bytesWritten + bytes.length >= limit) {
      this.socket.write(bytes.subarray(0, limit - this.#bytesWritten));
      this.#bytesWritten = limit;
      this.#fatal();
      return;
    }
    this.#bytesWritten += bytes.length;
    this.socket.write(bytes);
    this.#checkBacklog();
  }

  #report(reason: SessionDropReason, message: string): void {
    const backlog = this.#backlog;
    this.server.emit(
      {
        type: 'sessionDropped',
        remote: this.remote,
        clientInfo: this.clientInfo,
        reason,
        message,
        backlogBytes: backlog.bytes,
        droppedAdvertisements: backlog.dropped,
      },
      this,
    );
  }

  /** A message the firmware closes the connection for: reported, then closed after what was written. */
  #violation(message: string): void {
    this.#report('protocol', message);
    this.#fatal();
  }

  #checkBacklog(): void {
    if (!this.#backlog.overflowing) return;
    const { closeAt } = this.#backlog.limits;
    this.drop('backlog', `${this.#backlog.bytes} bytes waited for a client that does not read them (limit ${closeAt})`);
  }

  #markClosed(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.#handshakeTimer);
    this.#backlog.stop();
    this.#input.stop();
    for (const timer of this.#delayed) clearTimeout(timer);
    this.#delayed.clear();
    for (const plugin of this.server.plugins) plugin.onClose?.(this);
    for (const listener of this.#closeListeners) listener();
    this.#closeListeners.clear();
    this.server.sessionClosed(this);
  }

  #onMessage(type: number, payload: Uint8Array): void {
    this.messagesReceived++;
    if (this.server.options.recordReceived !== false) this.received.push(type);
    this.lastHeard = Date.now();
    this.pinged = false;
    const server = this.server;
    const drop = server.faults.dropOnReceive;
    if (drop?.type === type && ++this.#faultCounts.received === (drop.count ?? 1)) {
      this.#fatal();
      return;
    }
    for (const plugin of server.plugins) {
      if (plugin.intercept?.(this, type, payload)) return;
    }
    switch (type) {
      case 1: {
        const hello = HelloRequest.fromBinary(payload);
        this.clientInfo = hello.clientInfo;
        this.clientApiVersion = { major: hello.apiVersionMajor, minor: hello.apiVersionMinor };
        const { major, minor } = server.apiVersion;
        this.send(HelloResponse, { apiVersionMajor: major, apiVersionMinor: minor, serverInfo: server.esphomeVersion, name: server.name });
        clearTimeout(this.#handshakeTimer);
        if (this.state === 'new') {
          this.state = server.options.password === undefined && !server.legacyLogin ? 'authenticated' : 'setup';
          if (this.state === 'authenticated') this.#onAuthenticated();
        }
        return;
      }
      case 5:
        this.sendRaw(6, EMPTY);
        setTimeout(() => this.close(), 10).unref();
        return;
      case 6:
        this.close();
        return;
      case 7:
        this.sendRaw(8, EMPTY);
        return;
      case 8:
        return;
    }
    if (this.state !== 'authenticated' && server.unknownBeforeAuth === 'ignore' && !server.handles(type)) {
      return; // 2024 firmware: an id without a handler is skipped before any authentication check
    }
    if (this.state === 'new') {
      // Firmware: anything but Hello/Disconnect/Ping before Hello drops the connection.
      this.#violation(`message ${type} before HelloRequest`);
      return;
    }
    if (type === 9) {
      this.send(DeviceInfoResponse, server.deviceInfo());
      return;
    }
    if (type === 3) {
      if (this.state !== 'setup') return; // current firmware ignores it after Hello
      const { password } = AuthenticationRequest.fromBinary(payload);
      const invalid = password !== (server.options.password ?? '');
      this.send(AuthenticationResponse, { invalidPassword: invalid });
      if (invalid) {
        setTimeout(() => this.close(), 10).unref();
        return;
      }
      this.state = 'authenticated';
      this.#onAuthenticated();
      return;
    }
    if (this.state !== 'authenticated') {
      this.#violation(`message ${type} before authentication`);
      return;
    }
    if (type === 149 && server.handles(149)) {
      this.send(DeviceCapabilitiesResponse, server.capabilities());
      return;
    }
    if (type === 11) {
      // A node always ends its entity list with ListEntitiesDone; ours has no entities. General clients wait for it.
      this.send(ListEntitiesDoneResponse, {});
      return;
    }
    if (type === 37) return;
    for (const plugin of server.plugins) {
      if (plugin.onMessage?.(this, type, payload)) return;
    }
    // Unknown or unsupported after authentication: the firmware stays silent.
    void messageInfoById(type);
  }

  #onAuthenticated(): void {
    if (this.server.options.requestTime) this.send(GetTimeRequest, {});
  }
}

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
  readonly sessions = new Set<ApiSession>();
  /** Sessions accepted at once; a connection beyond is closed at once (`sessionRefused`). */
  readonly maxConnections: number;
  /** What may wait to be written to one client (checked once here, shared by every session). */
  readonly backlogLimits: BacklogLimits;
  readonly #server: Server;
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
    if (!(keepalive >= 0)) throw new InvalidArgumentError(`keepaliveInterval must be 0 (off) or more, got ${keepalive}`);
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
    assertListenerAllowed({
      host,
      authenticated: this.psk !== undefined,
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
    if (id === 149) return this.apiVersion.major > 1 || this.apiVersion.minor >= 15;
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
    for (const session of [...this.sessions]) {
      try {
        checkKeepalive([session], interval, {
          ping: (target) => target.sendRaw(PING_REQUEST_ID, EMPTY),
          expire: (target, idle) => target.drop('keepalive', `silent for ${idle} ms after Hello (pinged after ${interval} ms)`),
        });
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
    if (this.sessions.size >= this.maxConnections) {
      // The firmware accepts, logs "Max connections" and closes at once: the client sees the connection end.
      this.emit({ type: 'sessionRefused', remote: formatRemote(socket), reason: 'maxConnections', limit: this.maxConnections }, undefined);
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const session = new ApiSession(this, socket);
    this.sessions.add(session);
    for (const listener of this.#sessionListeners) listener(session);
  }
}

const EMPTY = new Uint8Array(0);
const PING_REQUEST_ID = 7;

/** `address:port` of a socket's peer, IPv6 in brackets. */
function formatRemote(socket: Socket): string {
  const address = socket.remoteAddress ?? '?';
  return `${address.includes(':') ? `[${address}]` : address}:${socket.remotePort ?? 0}`;
}

/** A request that does not decode is the client's fault (FrameError, code DECODE); any other error is ours and stays as it is. */
function asDecodeError(type: number, payload: Uint8Array, error: unknown): unknown {
  const info = messageInfoById(type);
  if (error instanceof EspApiError || info === undefined) return error;
  try {
    info.type.fromBinary(payload);
  } catch {
    return new FrameError(`Cannot decode ${info.name} from the client`, { cause: error, code: 'ESPAPI_ERR_DECODE' });
  }
  return error;
}
