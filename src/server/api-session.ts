import type { Socket } from 'node:net';
import type { MessageType, PartialMessage } from '@protobuf-ts/runtime';
import { EspApiError, FrameError } from '../errors.js';
import { messageId, messageInfoById } from '../frame/message-types.js';
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
  ListEntitiesDoneResponse,
  ListEntitiesRequest,
  PingRequest,
  PingResponse,
} from '../gen/api_pb.js';
import type { ApiServer } from './api-server.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS } from './api-server-options.js';
import { formatRemote } from './remote-address.js';
import { NoiseServerCodec, PlaintextServerCodec, type ServerCodec } from './server-codec.js';
import type { SessionDropReason } from './server-events.js';
import { SessionBacklog } from './session-backlog.js';
import { SessionInput } from './session-input.js';

/**
 * How long a session closed with its last bytes still to go out (a handshake refusal, a fatal error) keeps its
 * socket at most: a client that reads sees them at once; one that reads nothing must not hold the socket.
 */
export const CLOSE_GRACE_MS = 1_000;
const EMPTY = new Uint8Array(0);

// The messages every session answers itself, by their wire ids from the one message table.
const HELLO = messageId(HelloRequest);
const AUTHENTICATION = messageId(AuthenticationRequest);
const DISCONNECT_REQUEST = messageId(DisconnectRequest);
const DISCONNECT_RESPONSE = messageId(DisconnectResponse);
const PING_REQUEST = messageId(PingRequest);
const PING_RESPONSE = messageId(PingResponse);
const DEVICE_INFO = messageId(DeviceInfoRequest);
const LIST_ENTITIES = messageId(ListEntitiesRequest);
const GET_TIME_RESPONSE = messageId(GetTimeResponse);
const CAPABILITIES = messageId(DeviceCapabilitiesRequest);

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
  /** When the client last sent a message (ms, `performance.now()`: monotonic, a clock step moves nothing), for the keep-alive. */
  lastHeard = performance.now();
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
  /** A session reports why it ended once, whatever else its client still sent. */
  #reported = false;

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
        this.#finish(bytes);
      },
      yieldWhen: () => {
        for (const plugin of server.plugins) {
          if (plugin.holdInput?.(this) === true) {
            this.holdInput();
            break;
          }
        }
        return this.#input.yieldWhen();
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
      if (this.state !== 'closed') this.#input.push(chunk);
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.#markClosed());
    const handshakeMs = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.#handshakeTimer = setTimeout(
      () => this.drop('handshakeTimeout', `not authenticated within ${handshakeMs} ms of connecting (handshake, HelloRequest, password)`),
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

  /** True while `holdInput()` keeps the client's requests unread. */
  get inputHeld(): boolean {
    return this.#input.holding;
  }

  /**
   * Stops reading the client's requests, from the end of the one being handled, until `releaseInput()`: what they
   * go to is behind (a relay's upstream that does not read). The client's own socket buffers then fill and TCP
   * slows it down; nothing is queued here beyond one read.
   */
  holdInput(): void {
    this.#input.hold();
  }

  /**
   * Reads the client's requests again after `holdInput()`. The keep-alive counts from here: while held, what the
   * client sent waited unread, so the time held is no silence of the client's.
   */
  releaseInput(): void {
    if (!this.#input.holding) return;
    this.lastHeard = performance.now();
    this.pinged = false;
    this.#input.release();
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

  /** True once the client may use the node (Hello, and the password where one is set): the keep-alive applies from then on. */
  get authenticated(): boolean {
    return this.state === 'authenticated';
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
    this.#finish();
  }

  /**
   * Ends the session, writing `last` and what is queued before the FIN, then destroys the socket once that is handed
   * to the kernel ('finish'), or after CLOSE_GRACE_MS whatever happened: a peer that reads nothing and never closes
   * would otherwise keep the half-closed socket and its queue for ever. Until its 'close' the socket still counts
   * toward the server's connection cap.
   */
  #finish(last?: Uint8Array): void {
    const socket = this.socket;
    if (!socket.destroyed) {
      const destroy = (): void => {
        socket.destroy();
      };
      const timer = setTimeout(destroy, CLOSE_GRACE_MS);
      socket.once('close', () => clearTimeout(timer));
      socket.once('finish', destroy);
      // Input is discarded from now on; left unread in the kernel it would turn the close into a reset.
      socket.resume();
      if (last === undefined) socket.end();
      else socket.end(last);
    }
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
    if (this.#reported) return;
    this.#reported = true;
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
    // Frames that came in the same read as the one that closed the session are not the firmware's to handle.
    if (this.state === 'closed') return;
    this.messagesReceived++;
    if (this.server.options.recordReceived !== false) this.received.push(type);
    this.lastHeard = performance.now();
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
      case HELLO: {
        const hello = HelloRequest.fromBinary(payload);
        this.clientInfo = hello.clientInfo;
        this.clientApiVersion = { major: hello.apiVersionMajor, minor: hello.apiVersionMinor };
        const { major, minor } = server.apiVersion;
        this.send(HelloResponse, { apiVersionMajor: major, apiVersionMinor: minor, serverInfo: server.esphomeVersion, name: server.name });
        if (this.state === 'new') {
          this.state = server.options.password === undefined && !server.legacyLogin ? 'authenticated' : 'setup';
          if (this.state === 'authenticated') this.#onAuthenticated();
          for (const plugin of server.plugins) plugin.onHello?.(this);
        }
        return;
      }
      case DISCONNECT_REQUEST:
        this.sendRaw(DISCONNECT_RESPONSE, EMPTY);
        setTimeout(() => this.close(), 10).unref();
        return;
      case DISCONNECT_RESPONSE:
        this.close();
        return;
      case PING_REQUEST:
        this.sendRaw(PING_RESPONSE, EMPTY);
        return;
      case PING_RESPONSE:
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
    if (type === DEVICE_INFO) {
      this.send(DeviceInfoResponse, server.deviceInfo());
      return;
    }
    if (type === AUTHENTICATION) {
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
    if (type === CAPABILITIES && server.handles(CAPABILITIES)) {
      this.send(DeviceCapabilitiesResponse, server.capabilities());
      return;
    }
    if (type === LIST_ENTITIES) {
      // A node always ends its entity list with ListEntitiesDone; ours has no entities. General clients wait for it.
      this.send(ListEntitiesDoneResponse, {});
      return;
    }
    if (type === GET_TIME_RESPONSE) return;
    for (const plugin of server.plugins) {
      if (plugin.onMessage?.(this, type, payload)) return;
    }
    // Unknown or unsupported after authentication: the firmware stays silent.
    void messageInfoById(type);
  }

  #onAuthenticated(): void {
    // As the firmware: the connect deadline runs until authentication, the keep-alive from then on.
    clearTimeout(this.#handshakeTimer);
    if (this.server.options.requestTime) this.send(GetTimeRequest, {});
  }
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
