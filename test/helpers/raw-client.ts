import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import type { MessageType, PartialMessage } from '@protobuf-ts/runtime';
import { messageId, messageInfoById } from '../../src/frame/message-types.js';
import { encodePlaintextFrame, PlaintextFrameDecoder } from '../../src/frame/plaintext.js';
import {
  AuthenticationRequest,
  BluetoothConnectionsFreeResponse,
  HelloRequest,
  HelloResponse,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
} from '../../src/gen/api_pb.js';
import type { Closers } from './closers.js';

/** How long a RawClient waits for an expected message by default. */
const WAIT_MS = 2000;

/** How a RawClient opens its session. */
export interface RawConnectOptions {
  /** Subscribe to advertisements with these flags and ask for the slots (default flags 1; null: do not subscribe). */
  subscribe?: { flags: number } | null;
  /** Send an AuthenticationRequest behind Hello, as Home Assistant does (default true). */
  login?: boolean;
  /** Called with the client as soon as its socket exists (register it for clean-up before anything can fail). */
  track?: (client: RawClient) => void;
  /**
   * Local address of the client's socket (default: the system's choice, 127.0.0.1): Linux routes all of 127/8 to
   * the loopback interface, so `127.0.0.2` is another host as far as the server's remote address goes.
   */
  localAddress?: string;
}

/** A plaintext API client written from the frame codec alone: raw frames in, decoded messages kept in order. */
export class RawClient {
  readonly socket: Socket;
  readonly received: Array<{ type: number; payload: Uint8Array }> = [];
  readonly #waiters = new Set<() => void>();

  /** Answer the server's pings (a client whose host died does not). */
  answerPings = true;
  /** Answer a DisconnectRequest as clients do (a stuck one does not). */
  answerDisconnects = true;

  private constructor(socket: Socket) {
    this.socket = socket;
    const decoder = new PlaintextFrameDecoder((type, payload) => {
      this.received.push({ type, payload: new Uint8Array(payload) });
      if (type === 7 && this.answerPings) this.sendRaw(8, new Uint8Array(0));
      if (type === 5 && this.answerDisconnects) this.sendRaw(6, new Uint8Array(0));
      for (const wake of [...this.#waiters]) wake();
    });
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  }

  /** Connects to 127.0.0.1:`port`, says Hello (API 1.10) and, by default, logs in and subscribes. */
  static async connect(port: number, options: RawConnectOptions = {}): Promise<RawClient> {
    const socket = netConnect({
      host: '127.0.0.1',
      port,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
    });
    const client = new RawClient(socket);
    options.track?.(client);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    client.send(HelloRequest, { clientInfo: 'raw-test-client', apiVersionMajor: 1, apiVersionMinor: 10 });
    // As Home Assistant does (login=True): needed before 2025, ignored after Hello since.
    if (options.login ?? true) client.send(AuthenticationRequest, {});
    await client.next(HelloResponse);
    const subscribe = options.subscribe === undefined ? { flags: 1 } : options.subscribe;
    if (subscribe !== null) {
      client.send(SubscribeBluetoothLEAdvertisementsRequest, subscribe);
      client.send(SubscribeBluetoothConnectionsFreeRequest, {});
      await client.next(BluetoothConnectionsFreeResponse);
    }
    return client;
  }

  send<T extends object>(type: MessageType<T>, message: PartialMessage<T>): void {
    this.sendRaw(messageId(type), type.toBinary(type.create(message)));
  }

  sendRaw(id: number, payload: Uint8Array): void {
    this.socket.write(encodePlaintextFrame(id, payload));
  }

  /** Every message of `type` received so far, decoded. */
  all<T extends object>(type: MessageType<T>): T[] {
    const id = messageId(type);
    return this.received.filter((m) => m.type === id).map((m) => type.fromBinary(m.payload));
  }

  /** The first message of `type` from index `since` on that `match` accepts, waiting for it. */
  next<T extends object>(type: MessageType<T>, match: (m: T) => boolean = () => true, since = 0, ms = WAIT_MS): Promise<T> {
    const id = messageId(type);
    const find = (): T | undefined => {
      for (let i = since; i < this.received.length; i++) {
        const m = this.received[i]!;
        if (m.type !== id) continue;
        const decoded = type.fromBinary(m.payload);
        if (match(decoded)) return decoded;
      }
      return undefined;
    };
    return new Promise<T>((resolve, reject) => {
      const found = find();
      if (found !== undefined) {
        resolve(found);
        return;
      }
      const wake = (): void => {
        const hit = find();
        if (hit === undefined) return;
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(wake);
        reject(new Error(`no ${messageInfoById(id)?.name ?? id} within ${ms} ms`));
      }, ms);
      this.#waiters.add(wake);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * A raw-frame client of 127.0.0.1:`port` (logged in and subscribed with flags 1 unless told otherwise), closed after
 * the test. The relay tells clients apart by remote address: `localAddress` makes it another host.
 */
export function rawClient(closers: Closers, port: number, options: Omit<RawConnectOptions, 'track'> = {}): Promise<RawClient> {
  return RawClient.connect(port, { ...options, track: (client) => closers.push(() => client.close()) });
}

/** A bare TCP connection to 127.0.0.1:`port` (errors ignored), destroyed after the test; it says and reads nothing unless told to. */
export async function openSocket(closers: Closers, port: number): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  closers.push(() => socket.destroy());
  await once(socket, 'connect');
  return socket;
}
