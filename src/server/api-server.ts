import { createHash } from 'node:crypto';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { MessageType, PartialMessage } from '@protobuf-ts/runtime';
import { EspApiError, FrameError } from '../errors.js';
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
import { NoiseServerCodec, PlaintextServerCodec, type ServerCodec } from './server-codec.js';

/** ESPHome version an API server reports unless told otherwise (the firmware generation it mimics). */
export const DEFAULT_ESPHOME_VERSION = '2026.8.0';

/**
 * The firmware drops a connection that has not finished its transport handshake and had its HelloRequest
 * processed 60 s after accept (spec §2); pings do not extend it. Without it an idle socket stays forever.
 */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 60_000;

/**
 * How long a graceful close waits for clients to answer its DisconnectRequest. Clients answer at once from their
 * read loop (aioesphomeapi, ours); one silent for 2 s is gone or stuck, and a shutdown should not wait on it longer.
 */
export const DEFAULT_CLOSE_DISCONNECT_TIMEOUT_MS = 2_000;

/** A behaviour plugged into every session of an API server (the simulated Bluetooth proxy, a replayer, the relay). */
export interface SessionPlugin {
  /** Extra DeviceInfo fields (feature flags, Bluetooth MAC...). */
  deviceInfo?(): Partial<DeviceInfoResponse>;
  /** Capabilities for API >= 1.15 clients. */
  capabilities?(): PartialMessage<DeviceCapabilitiesResponse>;
  /** Sees every client message before the built-in handling (replay); return true when handled. */
  intercept?(session: ApiSession, type: number, payload: Uint8Array): boolean;
  /** A message that passed authentication; return true when handled. */
  onMessage?(session: ApiSession, type: number, payload: Uint8Array): boolean;
  /** The session closed. */
  onClose?(session: ApiSession): void;
  /** Called once when the server closes. */
  close?(): void | Promise<void>;
}

/** Options of an API server. */
export interface ApiServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Node name (HelloResponse / DeviceInfo / Noise server hello). */
  name?: string;
  friendlyName?: string;
  /** Network MAC `AA:BB:CC:DD:EE:FF`; derived from the name when omitted. */
  mac?: string;
  /** Base64 Noise key; absent = plaintext device. */
  psk?: string;
  /** Legacy password: emulates pre-2026.1 firmware that requires AuthenticationRequest. */
  password?: string;
  /** Firmware before 2025: only an AuthenticationRequest authenticates, even without a password (answered with AuthenticationResponse). */
  legacyLogin?: boolean;
  /** Ids this firmware has no handler for, before authentication: 2024 firmware skips them, 2025+ closes the session (default). */
  unknownBeforeAuth?: 'ignore' | 'close';
  apiVersion?: { major: number; minor: number };
  esphomeVersion?: string;
  model?: string;
  /** Which Noise server-hello generation to send (firmware history, spec §4.5). */
  serverHelloGeneration?: 'protocol-only' | 'name' | 'mac';
  /** Send a GetTimeRequest right after authentication, as devices with a homeassistant time source do. */
  requestTime?: boolean;
  /** Time from accept to a processed HelloRequest (transport handshake included) before the session is dropped (default 60 s, as the firmware). */
  handshakeTimeout?: number;
  /** Plugged behaviours (the simulated proxy, a replayer...). */
  plugins?: SessionPlugin[];
  /** Keep every received message id in `session.received` (default true; a long-running server turns it off). */
  recordReceived?: boolean;
  /** Sees each error that made a session drop its client (logging, fuzzing); the session closes either way. */
  onSessionError?: (session: ApiSession, error: unknown) => void;
  /** Misbehaviour on purpose (fault tests, the soak run); `server.faults` can be changed while it runs. */
  faults?: SessionFaults;
}

/** Faults an API server injects into each session; counts are 1-based and per session. */
export interface SessionFaults {
  /** Hold every write to the client this long (a slow or overloaded proxy). */
  replyDelayMs?: number;
  /** Drop the TCP connection instead of handling the `count`-th client message of `type` (e.g. a GATT read: mid-GATT). */
  dropOnReceive?: { type: number; count?: number };
  /** Drop the TCP connection right after sending the `count`-th message of `type` (e.g. notifications: mid-notify). */
  dropOnSend?: { type: number; count?: number };
  /** Drop the TCP connection once this many bytes were written (e.g. right after the Noise server hello: mid-handshake). */
  dropAfterBytes?: number;
}

/** What a firmware generation changes on the wire: the versions in HelloResponse and DeviceInfo and how a session logs in. */
export type FirmwareIdentity = Pick<ApiServerOptions, 'apiVersion' | 'esphomeVersion' | 'legacyLogin' | 'unknownBeforeAuth'>;

/** What `esphome-ble serve` prints when it is ready. */
export interface ListeningInfo {
  event: 'listening';
  host: string;
  port: number;
  name: string;
  mac: string;
  encryption: 'noise' | 'plaintext';
}

/** Derives a stable locally-administered MAC from a name. */
export function macFromName(name: string): string {
  const digest = createHash('sha256').update(name).digest();
  const bytes = [...digest.subarray(0, 6)];
  bytes[0] = ((bytes[0] ?? 0) & 0xfc) | 0x02;
  return bytes.map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
}

type SessionState = 'new' | 'setup' | 'authenticated' | 'closed';

/** One client's session on an API server. */
export class ApiSession {
  readonly server: ApiServer;
  readonly socket: Socket;
  state: SessionState = 'new';
  /** The client's HelloRequest, once received. */
  clientInfo = '';
  clientApiVersion = { major: 0, minor: 0 };
  /** Every message id received, in order (tests count frames with it). */
  readonly received: number[] = [];
  readonly #codec: ServerCodec;
  readonly #closeListeners = new Set<() => void>();
  readonly #delayed = new Set<NodeJS.Timeout>();
  readonly #faultCounts = { received: 0, sent: 0 };
  #bytesWritten = 0;
  #handshakeTimer: NodeJS.Timeout | undefined;

  constructor(server: ApiServer, socket: Socket) {
    this.server = server;
    this.socket = socket;
    const io = {
      write: (bytes: Uint8Array) => this.writeRaw(bytes),
      reject: (bytes: Uint8Array) => {
        if (!socket.destroyed) socket.end(bytes);
        this.#markClosed();
      },
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
      if (this.state === 'closed') return;
      // Everything answered to one chunk leaves in one write, as the firmware batches its replies per loop.
      socket.cork();
      try {
        this.#codec.push(chunk);
      } catch (error) {
        // A device drops a connection whose frames it cannot parse.
        server.options.onSessionError?.(this, error);
        this.close();
      } finally {
        socket.uncork();
      }
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.#markClosed());
    this.#handshakeTimer = setTimeout(() => this.close(), options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
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

  /** Writes bytes as they are, bypassing the framing (garbage-input tests). */
  writeRaw(bytes: Uint8Array): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    const delay = this.server.faults.replyDelayMs;
    if (delay === undefined) {
      this.#write(bytes);
      return;
    }
    const copy = new Uint8Array(bytes);
    const timer = setTimeout(() => {
      this.#delayed.delete(timer);
      this.#write(copy);
    }, delay);
    this.#delayed.add(timer);
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
  }

  #markClosed(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.#handshakeTimer);
    for (const timer of this.#delayed) clearTimeout(timer);
    this.#delayed.clear();
    for (const plugin of this.server.plugins) plugin.onClose?.(this);
    for (const listener of this.#closeListeners) listener();
    this.#closeListeners.clear();
    this.server.sessionClosed(this);
  }

  #onMessage(type: number, payload: Uint8Array): void {
    if (this.server.options.recordReceived !== false) this.received.push(type);
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
      this.#fatal();
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
      this.#fatal();
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
  readonly #server: Server;
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

  /** Starts listening; resolves with the bound address. */
  async listen(): Promise<{ host: string; port: number }> {
    const host = this.options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.options.port ?? 0, host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
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

  #accept(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const session = new ApiSession(this, socket);
    this.sessions.add(session);
    for (const listener of this.#sessionListeners) listener(session);
  }
}

const EMPTY = new Uint8Array(0);

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
