import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Aedes, type AuthenticateError } from 'aedes';
import { InvalidArgumentError } from '../errors.js';
import { assertListenerAllowed } from '../server/listener-policy.js';
import { type CallOptions, withDeadline } from '../util/abort.js';
import { duplexPair } from '../util/duplex-pair.js';
import { guardedConnection, PacketSizeGuard } from './packet-size-guard.js';
import { RetainedQuota } from './retained-quota.js';

/** Options of the broker `esphome-ble mqtt` runs when no `--broker` is given. */
export interface EmbeddedBrokerOptions {
  /** Address to listen on (default 127.0.0.1: only this host). Anything else needs credentials or `allowAnonymous`. */
  host?: string | undefined;
  /** Port (default 1883; 0 picks a free one). */
  port?: number | undefined;
  /** Credentials every client must present; both or neither. */
  username?: string | undefined;
  password?: string | undefined;
  /** Serve without credentials beyond loopback, on purpose. */
  allowAnonymous?: boolean | undefined;
  /** Clients connected at once (default 64). */
  maxClients?: number | undefined;
  /** Largest MQTT packet accepted, header included (default 256 KiB); a bigger one closes the connection at its header. */
  maxPacketBytes?: number | undefined;
  /**
   * Retained topics clients may keep (default 4096) and their total payload bytes (default 16 MiB); a retained publish
   * beyond closes the publisher's connection. The gateway's own retained state is not counted.
   */
  maxRetained?: number | undefined;
  maxRetainedBytes?: number | undefined;
  /**
   * How long a new connection may take to send its CONNECT (default 5 s); a socket that has not logged in by then is
   * closed, so connections that never do cannot hold the `maxClients` places (aedes' own default is 30 s).
   */
  connectTimeout?: number | undefined;
  /** Topic filters one client may hold at once (default 256); one more is refused in its SUBACK (0x80). */
  maxSubscriptionsPerClient?: number | undefined;
}

/** Defaults of EmbeddedBrokerOptions: a home's clients, with room; each bounds what one connection can make us hold. */
export const EMBEDDED_BROKER_DEFAULTS = {
  host: '127.0.0.1',
  port: 1883,
  maxClients: 64,
  maxPacketBytes: 256 * 1024,
  maxRetained: 4096,
  maxRetainedBytes: 16 * 1024 * 1024,
  maxSubscriptionsPerClient: 256,
  /** A client on a LAN sends CONNECT within milliseconds of the TCP handshake; 5 s leaves room for a loaded host. */
  connectTimeout: 5_000,
  /** A client that does not read what it subscribed to for this long is dropped (aedes' drain timeout; its default is 60 s). */
  drainTimeout: 10_000,
} as const;

/** An aedes MQTT broker on a TCP listener, with the project's listener rule and per-connection bounds. */
export class EmbeddedBroker {
  readonly #server: Server;
  readonly #broker: Aedes;
  readonly #local: WeakSet<object>;
  readonly #sockets = new Set<Socket>();
  readonly #localStreams = new Set<Duplex>();
  #closed = false;

  private constructor(server: Server, broker: Aedes, local: WeakSet<object>) {
    this.#server = server;
    this.#broker = broker;
    this.#local = local;
  }

  /** Starts the broker and resolves once it listens. Throws InsecureListenerError beyond loopback without credentials. */
  static async start(options: EmbeddedBrokerOptions = {}, call: CallOptions = {}): Promise<EmbeddedBroker> {
    const d = EMBEDDED_BROKER_DEFAULTS;
    const o = {
      host: options.host ?? d.host,
      port: options.port ?? d.port,
      username: options.username,
      password: options.password,
      allowAnonymous: options.allowAnonymous,
      maxClients: options.maxClients ?? d.maxClients,
      maxPacketBytes: options.maxPacketBytes ?? d.maxPacketBytes,
      maxRetained: options.maxRetained ?? d.maxRetained,
      maxRetainedBytes: options.maxRetainedBytes ?? d.maxRetainedBytes,
      maxSubscriptionsPerClient: options.maxSubscriptionsPerClient ?? d.maxSubscriptionsPerClient,
      connectTimeout: options.connectTimeout ?? d.connectTimeout,
    };
    if (!(o.connectTimeout > 0)) throw new InvalidArgumentError(`connectTimeout must be a positive number of ms, got ${o.connectTimeout}`);
    if ((o.username === undefined) !== (o.password === undefined)) {
      throw new InvalidArgumentError('The embedded broker needs both a username and a password, or neither');
    }
    const authenticated = o.username !== undefined && o.password !== undefined;
    assertListenerAllowed({
      host: o.host,
      authenticated,
      allowUnauthenticated: o.allowAnonymous,
      what: 'MQTT broker',
      optIn: '--broker-allow-anonymous',
    });
    const quota = new RetainedQuota(o.maxRetained, o.maxRetainedBytes);
    /** aedes clients of the gateway in this process (connectLocal): exempt from the client quotas. */
    const local = new WeakSet<object>();
    /** Topic filters each client holds (aedes' own map lags behind a SUBSCRIBE whose filters are authorized in parallel). */
    const subscriptions = new WeakMap<object, Set<string>>();
    const broker = await Aedes.createBroker({
      drainTimeout: EMBEDDED_BROKER_DEFAULTS.drainTimeout,
      connectTimeout: o.connectTimeout,
      authenticate: (client, username, password, done) => {
        if (local.has(client)) {
          done(null, true);
          return;
        }
        if (!client.clean) {
          // A persistent session (clean session 0) makes aedes keep the client's subscriptions after it leaves and store
          // every QoS 1 message for it meanwhile: memory a stranger could grow without bound, one client id at a time.
          // A clean session holds nothing once it is gone (aedes stores no outgoing QoS 1 state for it).
          done(Object.assign(new Error('persistent sessions are not served'), { returnCode: 5 }) as AuthenticateError, false);
          return;
        }
        if (!authenticated) {
          done(null, true);
          return;
        }
        const ok =
          username !== undefined && password !== undefined && sameSecret(username, o.username!) && sameSecret(password, o.password!);
        if (ok) done(null, true);
        else done(Object.assign(new Error('Bad username or password'), { returnCode: 4 }) as AuthenticateError, false);
      },
      authorizePublish: (client, packet, callback) => {
        if (packet.topic.startsWith('$SYS/')) {
          callback(new Error("$SYS/ topics are the broker's"));
          return;
        }
        if (!packet.retain) {
          callback(null);
          return;
        }
        const owner = client !== null && local.has(client) ? 'gateway' : 'client';
        // Over the quota aedes closes the publisher's connection (MQTT 3.1.1 §3.3.5: it cannot say no otherwise).
        callback(quota.admit(packet.topic, packet.payload.length, owner) ? null : new Error('retained message store is full'));
      },
      authorizeSubscribe: (client, subscription, callback) => {
        if (local.has(client)) {
          callback(null, subscription);
          return;
        }
        let held = subscriptions.get(client);
        if (held === undefined) {
          held = new Set();
          subscriptions.set(client, held);
        }
        if (!held.has(subscription.topic) && held.size >= o.maxSubscriptionsPerClient) {
          // Refused in the SUBACK (0x80), as MQTT 3.1.1 allows per filter; the connection and its other filters stay.
          callback(null, null);
          return;
        }
        held.add(subscription.topic);
        callback(null, subscription);
      },
    });
    broker.on('unsubscribe', (topics, client) => {
      const held = subscriptions.get(client);
      for (const topic of topics) held?.delete(topic);
    });
    const embedded = new EmbeddedBroker(
      createServer({ noDelay: true }, (socket) => embedded.#accept(socket, o.maxClients, o.maxPacketBytes)),
      broker,
      local,
    );
    try {
      await withDeadline('Starting the embedded MQTT broker', call, 10_000, (signal) => embedded.#listen(o.host, o.port, signal));
    } catch (error) {
      await embedded.close();
      throw error;
    }
    return embedded;
  }

  /** Where it listens. */
  get address(): { host: string; port: number } {
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new InvalidArgumentError('The embedded broker is not listening');
    return { host: address.address, port: address.port };
  }

  /** `mqtt://host:port` for clients on this host (a wildcard listener is reached on loopback). */
  get url(): string {
    const { host, port } = this.address;
    const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
    return `mqtt://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
  }

  /** Clients connected now. */
  get clients(): number {
    return this.#broker.connectedClients;
  }

  /**
   * A connection from this process (the gateway's own MQTT client), not over TCP: it takes no `maxClients` place, its
   * retained messages are outside `maxRetained`, and no client filling the broker can have it disconnected.
   */
  connectLocal(): Duplex {
    if (this.#closed) throw new InvalidArgumentError('The embedded broker is closed');
    const [ours, theirs] = duplexPair();
    this.#localStreams.add(ours);
    ours.once('close', () => this.#localStreams.delete(ours));
    ours.on('error', () => {});
    theirs.on('error', () => {});
    this.#local.add(this.#broker.handle(theirs));
    return ours;
  }

  /** Stops listening, disconnects every client and closes the broker (bounded by `options`, default 5 s). Idempotent. */
  async close(options: CallOptions = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const listening = this.#server.listening;
    const serverClosed = listening ? new Promise<void>((resolve) => this.#server.close(() => resolve())) : Promise.resolve();
    for (const socket of this.#sockets) socket.destroy();
    for (const stream of this.#localStreams) stream.destroy();
    const brokerClosed = new Promise<void>((resolve) => this.#broker.close(() => resolve()));
    await withDeadline('Closing the embedded MQTT broker', options, 5_000, (signal) =>
      Promise.race([
        Promise.all([brokerClosed, serverClosed]).then(() => {}),
        new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
      ]),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #accept(socket: Socket, maxClients: number, maxPacketBytes: number): void {
    if (this.#closed || this.#sockets.size >= maxClients) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => {});
    this.#broker.handle(guardedConnection(socket, new PacketSizeGuard(maxPacketBytes)));
  }

  #listen(host: string, port: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      };
      const onAbort = (): void => {
        this.#server.off('error', onError);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }
}

function sameSecret(given: string | Buffer, expected: string): boolean {
  const a = Buffer.isBuffer(given) ? given : Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
