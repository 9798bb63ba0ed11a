import type { Socket } from 'node:net';
import type { MessageType, PartialMessage } from '@protobuf-ts/runtime';
import {
  ConnectionClosedError,
  FrameError,
  HandshakeError,
  InvalidArgumentError,
  InvalidPasswordError,
  NameMismatchError,
  TimeoutError,
  UnsupportedApiVersionError,
} from '../errors.js';
import { foreignProtocolError } from '../frame/foreign-protocol.js';
import { type MessageTypeInfo, messageId, messageInfoById } from '../frame/message-types.js';
import {
  AuthenticationRequest,
  AuthenticationResponse,
  DeviceCapabilitiesRequest,
  DeviceCapabilitiesResponse,
  DeviceInfoRequest,
  DeviceInfoResponse,
  DisconnectRequest,
  DisconnectResponse,
  GetTimeRequest,
  GetTimeResponse,
  HelloRequest,
  HelloResponse,
  PingRequest,
  PingResponse,
} from '../gen/api_pb.js';
import type { AeadImpl } from '../noise/aead.js';
import { parsePsk } from '../noise/psk.js';
import { abortPromise, type CallOptions, MAX_TIMER_MS, withDeadline } from '../util/abort.js';
import { AsyncQueue, endOnAbort, type QueueOptions } from '../util/async-queue.js';
import { concatBytes } from '../util/bytes.js';
import { type DeviceInfo, type HelloInfo, toDeviceInfo, toHelloInfo } from './device-info.js';
import { type FrameCodec, NoiseClientCodec, PlaintextCodec } from './frame-codec.js';
import { openSocket, SocketReader } from './socket-reader.js';

/** ESPHome's native API port. */
export const DEFAULT_API_PORT = 6053;
/** API version we announce: 1.15 is what current aioesphomeapi sends (compact UUIDs, capabilities). */
export const CLIENT_API_VERSION = { major: 1, minor: 15 } as const;
/** Whole connect (TCP + handshake + hello + device info); the device itself allows 60 s for the handshake. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
/** Keep-alive interval used by aioesphomeapi: ping after 20 s without traffic. */
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 20_000;
/** Dead-peer timeout: 4.5 keep-alive intervals (90 s), as aioesphomeapi. */
export const PONG_TIMEOUT_FACTOR = 4.5;
/**
 * The keep-alive interval in ms (`undefined`: the default), or InvalidArgumentError. Checked because a bad one fails
 * quietly: 0 or NaN would ping every millisecond with a dead-peer timeout of none, and past Node's timer limit the
 * dead-peer timer fires at once. Whoever takes the option for later connects checks it when it is given.
 */
export function checkKeepaliveInterval(keepaliveInterval: number | undefined): number {
  const ms = keepaliveInterval ?? DEFAULT_KEEPALIVE_INTERVAL_MS;
  if (!Number.isFinite(ms) || ms < 1 || ms * PONG_TIMEOUT_FACTOR > MAX_TIMER_MS) {
    throw new InvalidArgumentError(
      `keepaliveInterval must be from 1 ms to ${Math.floor(MAX_TIMER_MS / PONG_TIMEOUT_FACTOR)} ms, got ${ms}`,
    );
  }
  return ms;
}

/** Generic request/response default (aioesphomeapi: 10 s). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** How long a graceful disconnect waits for DisconnectResponse (aioesphomeapi: 10 s). */
export const DISCONNECT_RESPONSE_TIMEOUT_MS = 10_000;
/** Highest API major version we understand (aioesphomeapi accepts 1 and 2). */
const MAX_API_MAJOR = 2;
/** The device uses this minor for DeviceCapabilitiesRequest/Response. */
const CAPABILITIES_MIN_MINOR = 15;

/** How to reach and authenticate to one ESPHome node. */
export interface ConnectOptions extends CallOptions {
  host: string;
  port?: number | undefined;
  /** Base64 Noise pre-shared key; absent = plaintext. */
  psk?: string | undefined;
  /** Legacy API password (firmware before 2026.1). */
  password?: string | undefined;
  /** Sent in HelloRequest; the device keeps 31 characters for its logs. */
  clientInfo?: string | undefined;
  /** Fail with NameMismatchError unless the device reports this name. */
  expectedName?: string | undefined;
  /** Fail with NameMismatchError (code MAC) unless the device's network MAC matches. */
  expectedMac?: string | undefined;
  /** Keep-alive interval in ms (default 20 s); the dead-peer timeout is 4.5 times this. */
  keepaliveInterval?: number | undefined;
  /** AEAD implementation for Noise; default is the faster one measured. */
  aead?: AeadImpl | undefined;
  /** Test hook: fixed Noise ephemeral key. */
  ephemeralPrivateKey?: Uint8Array | undefined;
  /** Sees every message after the transport handshake, both ways (used to record sessions). */
  tap?: MessageTap | undefined;
  /**
   * Asked before each message we send: an Error it returns is thrown by the send instead, and nothing goes out (a
   * relay sharing its upstream session refuses requests for links its clients hold).
   */
  sendGuard?: SendGuard | undefined;
  /** Called as the connect moves on, with what it waits for next (a CLI says what a silent node has not answered). */
  onPhase?: ((phase: ConnectPhase) => void) | undefined;
}

/**
 * What a connect waits for: the TCP connection, the node's Noise handshake reply, its HelloResponse, its device
 * info (and login), or nothing (`ready`).
 */
export type ConnectPhase = 'tcp' | 'handshake' | 'hello' | 'deviceInfo' | 'ready';

/** Observer of a session's messages: direction (client→device or device→client), wire id, payload. */
export type MessageTap = (direction: 'c2d' | 'd2c', id: number, payload: Uint8Array) => void;

/** Judge of an outgoing message (wire id, payload): the Error to throw instead of sending it, or undefined to send. */
export type SendGuard = (id: number, payload: Uint8Array) => Error | undefined;

/** Life-cycle events of one API session. */
export type ConnectionStatus =
  | { type: 'connected'; name: string }
  | { type: 'pingTimeout' }
  | { type: 'disconnecting'; initiator: 'client' | 'device' }
  | { type: 'closed'; error: Error | undefined };

type RawListener = (payload: Uint8Array, type: number) => void;
// biome-ignore lint/suspicious/noExplicitAny: listeners of every message type share one table
type TypedListener = (message: any) => void;

interface Waiter {
  reject: (error: Error) => void;
}

/**
 * One native-API session to an ESPHome node over TCP, plaintext or Noise.
 * Use `ApiConnection.connect()`; the returned session is authenticated and has device info.
 */
export class ApiConnection {
  /** Host as given. */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
  /** Whether the session is Noise-encrypted. */
  readonly encrypted: boolean;
  /** Frames with ids the schema does not know; skipped, the session goes on. */
  unknownMessages = 0;
  #hello: HelloInfo | undefined;
  #deviceInfo: DeviceInfo | undefined;
  readonly #socket: Socket;
  readonly #codec: FrameCodec;
  readonly #raw: Array<Set<RawListener> | undefined> = [];
  readonly #typed: Array<Set<TypedListener> | undefined> = [];
  readonly #waiters = new Set<Waiter>();
  readonly #statusQueues = new Set<AsyncQueue<ConnectionStatus>>();
  readonly #keepaliveMs: number;
  readonly #tap: MessageTap | undefined;
  readonly #sendGuard: SendGuard | undefined;
  #keepaliveTimer: NodeJS.Timeout | undefined;
  #pongTimer: NodeJS.Timeout | undefined;
  #receivedSinceTick = false;
  #pingsSent = 0;
  #pongsReceived = 0;
  #closedError: Error | undefined;
  #isClosed = false;
  #closing: Promise<void> | undefined;
  readonly #closedPromise: Promise<Error | undefined>;
  #resolveClosed!: (error: Error | undefined) => void;

  private constructor(
    socket: Socket,
    reader: SocketReader,
    codecFactory: (onMessage: (type: number, payload: Uint8Array) => void) => FrameCodec,
    options: ConnectOptions,
  ) {
    this.host = options.host;
    this.port = options.port ?? DEFAULT_API_PORT;
    this.encrypted = options.psk !== undefined;
    this.#socket = socket;
    this.#keepaliveMs = checkKeepaliveInterval(options.keepaliveInterval);
    this.#tap = options.tap;
    this.#sendGuard = options.sendGuard;
    this.#closedPromise = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#codec = codecFactory((type, payload) => this.#dispatch(type, payload));
    let first = true;
    reader.deliver = (chunk) => {
      if (this.#isClosed) return;
      if (first) {
        first = false;
        // Another service on the port answers in its own protocol: name it rather than the byte it starts with.
        const foreign = foreignProtocolError(chunk, `${this.host}:${this.port}`);
        if (foreign !== undefined) {
          this.#codec.abortHandshake(foreign);
          this.#finish(foreign);
          return;
        }
      }
      try {
        this.#codec.push(chunk);
      } catch (error) {
        this.#finish(error instanceof Error ? error : new FrameError(String(error)));
      }
    };
    const onEnd = (cause?: Error): void => {
      if (this.#isClosed) return;
      const error = this.#closeReasonOnEof(cause);
      this.#codec.abortHandshake(error);
      this.#finish(error);
    };
    socket.on('error', onEnd);
    socket.on('close', () => onEnd());
  }

  /** Opens a session: TCP, transport handshake, Hello, authentication, device info and capabilities. */
  static async connect(options: ConnectOptions): Promise<ApiConnection> {
    const psk = options.psk === undefined ? undefined : parsePsk(options.psk);
    checkKeepaliveInterval(options.keepaliveInterval);
    const port = options.port ?? DEFAULT_API_PORT;
    return withDeadline(`Connecting to ${options.host}:${port}`, options, DEFAULT_CONNECT_TIMEOUT_MS, async (signal) => {
      const reader = new SocketReader();
      options.onPhase?.('tcp');
      const socket = await openSocket(options.host, port, signal, reader);
      let noise: NoiseClientCodec | undefined;
      const connection = new ApiConnection(
        socket,
        reader,
        (onMessage) => {
          if (psk === undefined) return new PlaintextCodec(onMessage);
          noise = new NoiseClientCodec(onMessage, {
            psk,
            expectedName: options.expectedName,
            expectedMac: options.expectedMac,
            aead: options.aead,
            ephemeralPrivateKey: options.ephemeralPrivateKey,
          });
          return noise;
        },
        options,
      );
      const aborted = abortPromise(signal);
      try {
        if (noise !== undefined) {
          socket.write(noise.opening());
          options.onPhase?.('handshake');
        }
        await Promise.race([connection.#setup(options, signal), aborted.promise]);
        // The set-up replies and bad bytes behind them can arrive in one read: the replies settle their waiters, then
        // the bad bytes end the session, all before this line runs. Never hand out a session that has already ended.
        if (connection.#isClosed) throw connection.#closedError ?? new ConnectionClosedError(`${connection.label} closed the connection`);
        options.onPhase?.('ready');
        return connection;
      } catch (error) {
        connection.#finish(error as Error);
        throw connection.#closedError ?? error;
      } finally {
        aborted.cleanup();
      }
    });
  }

  /** The device's HelloResponse. */
  get hello(): HelloInfo {
    return this.#hello!;
  }

  /** The device's identity and Bluetooth capabilities. */
  get deviceInfo(): DeviceInfo {
    return this.#deviceInfo!;
  }

  /** Name for messages: the device name once known, else host:port. */
  get label(): string {
    return this.#hello?.name ? `${this.#hello.name} (${this.host}:${this.port})` : `${this.host}:${this.port}`;
  }

  /** True once the session has ended. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Bytes written but not taken by the kernel yet: what waits because the node reads slower than we send (a relay holds its clients on it). */
  get sendBacklog(): number {
    return this.#socket.writableLength;
  }

  /**
   * PingRequests sent on this session, by anyone (the keep-alive included). The device answers pings in order, after
   * everything it was sent before them: the n-th PingResponse (`pongsReceived`) follows every reply to what preceded
   * the n-th ping.
   */
  get pingsSent(): number {
    return this.#pingsSent;
  }

  /** PingResponses received on this session (see `pingsSent`). */
  get pongsReceived(): number {
    return this.#pongsReceived;
  }

  /** Sends one message. */
  send<T extends object>(type: MessageType<T>, message: PartialMessage<T>): void {
    this.sendRaw(messageId(type), type.toBinary(type.create(message)));
  }

  /** Sends one already-encoded message payload under wire id `id`. */
  sendRaw(id: number, payload: Uint8Array): void {
    this.#socket.write(this.#frame(id, payload));
  }

  /** Sends several messages in one TCP write. */
  sendMany(messages: ReadonlyArray<readonly [MessageType<object>, object]>): void {
    this.#sendRawMany(messages.map(([type, message]) => [messageId(type), type.toBinary(type.create(message))] as const));
  }

  /** Frames every payload and writes them as one buffer (cheaper than a corked writev of the frames). */
  #sendRawMany(messages: ReadonlyArray<readonly [number, Uint8Array]>): void {
    this.#socket.write(concatBytes(messages.map(([id, payload]) => this.#frame(id, payload))));
  }

  /** One message as the bytes to write; throws once the session is closed. */
  #frame(id: number, payload: Uint8Array): Uint8Array {
    if (this.#isClosed) throw this.#closedError ?? new ConnectionClosedError(`Connection to ${this.label} is closed`);
    const refused = this.#sendGuard?.(id, payload);
    if (refused !== undefined) throw refused;
    this.#tap?.('c2d', id, payload);
    const frame = this.#codec.encode(id, payload);
    if (id === PING_REQUEST_ID) this.#pingsSent++;
    return frame;
  }

  /** Calls `listener` with every decoded message of `type`; returns an unsubscribe function. */
  on<T extends object>(type: MessageType<T>, listener: (message: T) => void): () => void {
    const id = messageId(type);
    let set = this.#typed[id];
    if (set === undefined) set = this.#typed[id] = new Set();
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Calls `listener` with the raw payload of every message with wire id `id` (hot paths decode themselves); the payload is only valid during the call. */
  onRaw(id: number, listener: RawListener): () => void {
    let set = this.#raw[id];
    if (set === undefined) set = this.#raw[id] = new Set();
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Resolves with the next message of `type` that satisfies `match`. */
  waitFor<T extends object>(type: MessageType<T>, match: (message: T) => boolean, options: CallOptions = {}): Promise<T> {
    return withDeadline(
      `Waiting for ${type.typeName} from ${this.label}`,
      options,
      DEFAULT_REQUEST_TIMEOUT_MS,
      (signal) => this.#expect(type, match, signal).promise,
    );
  }

  /** Sends `request` and resolves with the first reply of `responseType` that satisfies `match`. */
  request<Q extends object, R extends object>(
    requestType: MessageType<Q>,
    request: PartialMessage<Q>,
    responseType: MessageType<R>,
    match: (message: R) => boolean = always,
    options: CallOptions = {},
  ): Promise<R> {
    return withDeadline(`${requestType.typeName} to ${this.label}`, options, DEFAULT_REQUEST_TIMEOUT_MS, (signal) =>
      this.#sendAndWait(requestType, request, responseType, match, signal),
    );
  }

  /** Round-trips a ping; resolves with the round-trip time in ms. */
  async ping(options: CallOptions = {}): Promise<number> {
    const start = performance.now();
    await this.request(PingRequest, {}, PingResponse, always, options);
    return performance.now() - start;
  }

  /** Session life-cycle events; ends after 'closed'. */
  status(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterable<ConnectionStatus> {
    const queue: AsyncQueue<ConnectionStatus> = new AsyncQueue(options, () => this.#statusQueues.delete(queue));
    if (this.#isClosed) {
      queue.push({ type: 'closed', error: this.#closedError });
      queue.end();
      return queue;
    }
    this.#statusQueues.add(queue);
    const detach = endOnAbort(queue, options.signal);
    this.closed().then(detach, detach);
    return queue;
  }

  /** Resolves when the session ends: undefined after our own clean close, else the error that ended it. */
  closed(): Promise<Error | undefined> {
    return this.#closedPromise;
  }

  /** Graceful disconnect (DisconnectRequest → DisconnectResponse, then close). Idempotent. */
  close(options: CallOptions = {}): Promise<void> {
    this.#closing ??= this.#gracefulClose(options);
    return this.#closing;
  }

  /** Closes at once without the disconnect handshake. */
  destroy(error?: Error): void {
    this.#finish(error);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Waits for the transport handshake, then runs the API set-up. */
  async #setup(options: ConnectOptions, signal: AbortSignal): Promise<void> {
    await this.#codec.ready;
    // Everything the set-up needs goes out in one write, saving round trips: the password login right
    // behind Hello (older firmware needs it, 2026.1+ ignores it), then DeviceInfo (allowed after Hello),
    // then Capabilities. Capabilities needs an authenticated session, so it only rides along without a
    // legacy password; firmware older than API 1.15 ignores it after authentication.
    // These waiters need no abort listeners: connect() ends the session when its signal fires, and that
    // rejects every pending waiter.
    const pipelineCapabilities = options.password === undefined;
    const helloReply = this.#expect(HelloResponse, always);
    const infoReply = this.#expect(DeviceInfoResponse, always);
    const capabilitiesReply = pipelineCapabilities ? this.#expect(DeviceCapabilitiesResponse, always) : undefined;
    // Awaited one after another below; a failure before one is awaited must not surface as unhandled.
    for (const reply of [helloReply, infoReply, capabilitiesReply]) reply?.promise.catch(() => {});
    try {
      const helloRequest = HelloRequest.create({
        clientInfo: options.clientInfo ?? 'esphome-ble',
        apiVersionMajor: CLIENT_API_VERSION.major,
        apiVersionMinor: CLIENT_API_VERSION.minor,
      });
      // The other requests have no fields set (an empty password is proto3's default), so their payloads are empty.
      const password = options.password ? AuthenticationRequest.toBinary({ password: options.password }) : EMPTY;
      this.#sendRawMany([
        [HELLO_REQUEST_ID, HelloRequest.toBinary(helloRequest)],
        [AUTHENTICATION_REQUEST_ID, password],
        [DEVICE_INFO_REQUEST_ID, EMPTY],
        ...(pipelineCapabilities ? ([[DEVICE_CAPABILITIES_REQUEST_ID, EMPTY]] as const) : []),
      ]);
      options.onPhase?.('hello');
      const hello = await helloReply.promise;
      if (hello.apiVersionMajor > MAX_API_MAJOR) throw new UnsupportedApiVersionError(hello.apiVersionMajor, hello.apiVersionMinor);
      if (options.expectedName !== undefined && hello.name !== options.expectedName) {
        throw new NameMismatchError('name', options.expectedName, hello.name);
      }
      this.#hello = toHelloInfo(hello);
      options.onPhase?.('deviceInfo');
      this.#startKeepalive();
      const info = await infoReply.promise;
      if (options.expectedMac !== undefined && !sameMac(info.macAddress, options.expectedMac)) {
        throw new NameMismatchError('mac', options.expectedMac, info.macAddress);
      }
      let capabilities: DeviceCapabilitiesResponse | undefined;
      if (hello.apiVersionMajor > 1 || hello.apiVersionMinor >= CAPABILITIES_MIN_MINOR) {
        capabilities = await (capabilitiesReply?.promise ?? this.#request(DeviceCapabilitiesRequest, DeviceCapabilitiesResponse, signal));
      }
      this.#deviceInfo = toDeviceInfo(info, capabilities);
      this.#emit({ type: 'connected', name: hello.name });
    } finally {
      // Not waiting any longer (old firmware, or failure): drop whatever is still pending.
      infoReply.cancel();
      capabilitiesReply?.cancel();
    }
  }

  #request<Q extends object, R extends object>(requestType: MessageType<Q>, responseType: MessageType<R>, signal: AbortSignal): Promise<R> {
    return this.#sendAndWait(requestType, {} as PartialMessage<Q>, responseType, always, signal);
  }

  /** Registers the reply waiter before sending, so a fast reply cannot slip past it. */
  async #sendAndWait<Q extends object, R extends object>(
    requestType: MessageType<Q>,
    request: PartialMessage<Q>,
    responseType: MessageType<R>,
    match: (message: R) => boolean,
    signal: AbortSignal,
  ): Promise<R> {
    const reply = this.#expect(responseType, match, signal);
    try {
      this.send(requestType, request);
    } catch (error) {
      // Nothing went out (closed, or refused by the send guard on a live session): the waiter must not stay behind.
      reply.cancel();
      throw error;
    }
    return reply.promise;
  }

  /**
   * The next message of `type` that satisfies `match`; rejected when the session ends or `signal` aborts.
   * `cancel()` drops the waiter, and its promise then never settles.
   */
  #expect<T extends object>(
    type: MessageType<T>,
    match: (message: T) => boolean,
    signal?: AbortSignal,
  ): { promise: Promise<T>; cancel: () => void } {
    let cancel = (): void => {};
    const promise = new Promise<T>((resolve, reject) => {
      if (this.#isClosed) {
        reject(this.#closedError ?? new ConnectionClosedError(`Connection to ${this.label} is closed`));
        return;
      }
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const waiter: Waiter = {
        reject: (error) => {
          cancel();
          reject(error);
        },
      };
      const onAbort = (): void => waiter.reject(signal?.reason);
      const off = this.on(type, (message) => {
        if (!match(message)) return;
        cancel();
        resolve(message);
      });
      cancel = () => {
        off();
        this.#waiters.delete(waiter);
        signal?.removeEventListener('abort', onAbort);
      };
      this.#waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    return { promise, cancel };
  }

  #dispatch(type: number, payload: Uint8Array): void {
    this.#receivedSinceTick = true;
    if (type === PING_RESPONSE_ID) this.#pongsReceived++;
    this.#tap?.('d2c', type, payload);
    if (this.#pongTimer !== undefined) {
      clearTimeout(this.#pongTimer);
      this.#pongTimer = undefined;
    }
    const raw = this.#raw[type];
    if (raw !== undefined) for (const listener of raw) listener(payload, type);
    switch (type) {
      case PING_REQUEST_ID:
        this.sendRaw(PING_RESPONSE_ID, EMPTY);
        break;
      case GET_TIME_REQUEST_ID:
        this.send(GetTimeResponse, { epochSeconds: Math.floor(Date.now() / 1000) });
        break;
      case DISCONNECT_REQUEST_ID:
        this.#onDeviceDisconnect();
        return;
      case AUTHENTICATION_RESPONSE_ID:
        if ((this.#decode(AUTHENTICATION_RESPONSE, payload) as AuthenticationResponse).invalidPassword) {
          throw new InvalidPasswordError(`${this.label} rejected the API password`);
        }
        break;
    }
    const typed = this.#typed[type];
    if (typed === undefined || typed.size === 0) {
      if (raw === undefined && messageInfoById(type) === undefined) this.unknownMessages++;
      return;
    }
    const info = messageInfoById(type);
    if (info === undefined) {
      this.unknownMessages++;
      return;
    }
    // Decode from a copy: bytes fields are views, and the payload lives in the reusable read buffer.
    const message = this.#decode(info, new Uint8Array(payload));
    for (const listener of typed) listener(message);
  }

  /** protobuf-ts's decode, its plain errors turned into FrameError (ESPAPI_ERR_DECODE): a session only ends with our errors. */
  #decode(info: MessageTypeInfo, payload: Uint8Array): object {
    try {
      return info.type.fromBinary(payload);
    } catch (error) {
      throw new FrameError(`Cannot decode ${info.name} from ${this.label}`, { cause: error, code: 'ESPAPI_ERR_DECODE' });
    }
  }

  #onDeviceDisconnect(): void {
    this.#emit({ type: 'disconnecting', initiator: 'device' });
    try {
      this.sendRaw(DISCONNECT_RESPONSE_ID, EMPTY);
    } catch {
      // already closing
    }
    this.#finish(new ConnectionClosedError(`${this.label} requested a disconnect (rebooting or shutting down)`, { byDevice: true }));
  }

  #startKeepalive(): void {
    if (this.#isClosed) return;
    this.#keepaliveTimer = setInterval(() => {
      if (this.#receivedSinceTick) {
        this.#receivedSinceTick = false;
        return;
      }
      // A second outstanding ping also provokes a TCP RST from a rebooted device; the pong timer keeps running.
      try {
        this.sendRaw(PING_REQUEST_ID, EMPTY);
      } catch {
        return;
      }
      if (this.#pongTimer === undefined) {
        const limit = this.#keepaliveMs * PONG_TIMEOUT_FACTOR;
        this.#pongTimer = setTimeout(() => {
          this.#emit({ type: 'pingTimeout' });
          this.#finish(new TimeoutError(`Ping response from ${this.label}`, limit, { code: 'ESPAPI_ERR_PING_TIMEOUT' }));
        }, limit);
      }
    }, this.#keepaliveMs);
  }

  async #gracefulClose(options: CallOptions): Promise<void> {
    if (this.#isClosed) return;
    if (this.#hello === undefined) {
      this.#finish(undefined);
      return;
    }
    this.#emit({ type: 'disconnecting', initiator: 'client' });
    try {
      await this.request(DisconnectRequest, {}, DisconnectResponse, always, {
        signal: options.signal,
        timeout: options.timeout ?? DISCONNECT_RESPONSE_TIMEOUT_MS,
      });
    } catch {
      // The peer is gone or slow; close regardless.
    }
    this.#finish(undefined);
  }

  #closeReasonOnEof(cause?: Error): Error {
    const options = cause === undefined ? {} : { cause };
    const how =
      cause === undefined ? 'closed the connection' : `dropped the connection (${(cause as NodeJS.ErrnoException).code ?? cause.message})`;
    if (this.#codec instanceof NoiseClientCodec && this.#codec.phase === 'serverHello') {
      return new HandshakeError(
        `${this.label} ${how} right after the encrypted hello: enable API encryption on the device or connect without a key`,
        { ...options, code: 'ESPAPI_ERR_ENCRYPTED_HELLO_DROPPED' },
      );
    }
    if (this.#codec instanceof NoiseClientCodec && this.#codec.phase === 'handshake') {
      return new HandshakeError(`${this.label} ${how} during the Noise handshake`, options);
    }
    // Before its HelloResponse the peer may not be an ESPHome node at all, or is one that is restarting.
    const during = this.#hello === undefined ? ' during Hello, before its HelloResponse' : '';
    return new ConnectionClosedError(`${this.label} ${how}${during}`, options);
  }

  #finish(error: Error | undefined): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#closedError = error;
    clearInterval(this.#keepaliveTimer);
    clearTimeout(this.#pongTimer);
    this.#pongTimer = undefined;
    this.#socket.destroy();
    if (this.#waiters.size > 0) {
      const pendingError = error ?? new ConnectionClosedError(`Connection to ${this.label} closed`);
      for (const waiter of [...this.#waiters]) waiter.reject(pendingError);
    }
    this.#emit({ type: 'closed', error });
    for (const queue of this.#statusQueues) queue.end();
    this.#statusQueues.clear();
    this.#resolveClosed(error);
  }

  #emit(status: ConnectionStatus): void {
    for (const queue of this.#statusQueues) queue.push(status);
  }
}

const EMPTY = new Uint8Array(0);
const always = (): boolean => true;
const HELLO_REQUEST_ID = messageId(HelloRequest);
const AUTHENTICATION_REQUEST_ID = messageId(AuthenticationRequest);
const DEVICE_INFO_REQUEST_ID = messageId(DeviceInfoRequest);
const DEVICE_CAPABILITIES_REQUEST_ID = messageId(DeviceCapabilitiesRequest);
const AUTHENTICATION_RESPONSE = messageInfoById(messageId(AuthenticationResponse))!;
const AUTHENTICATION_RESPONSE_ID = AUTHENTICATION_RESPONSE.id;
const DISCONNECT_REQUEST_ID = messageId(DisconnectRequest);
const DISCONNECT_RESPONSE_ID = messageId(DisconnectResponse);
const PING_REQUEST_ID = messageId(PingRequest);
const PING_RESPONSE_ID = messageId(PingResponse);
const GET_TIME_REQUEST_ID = messageId(GetTimeRequest);

function sameMac(a: string, b: string): boolean {
  const norm = (s: string): string => s.replace(/[^0-9a-f]/gi, '').toLowerCase();
  return norm(a) === norm(b);
}
