import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import mqtt, { type IClientOptions, MqttClient } from 'mqtt';
import { type BackoffOptions, reconnectDelay } from '../connection/reconnect.js';
import { InvalidArgumentError, MqttBrokerError } from '../errors.js';
import { isPermanentFailure } from '../failure-table.js';
import { type CallOptions, withDeadline } from '../util/abort.js';
import { redactSecrets } from '../util/secrets.js';

/** Where and how the gateway reaches an MQTT broker. */
export interface BrokerOptions {
  /** `mqtt://host:port` or `mqtts://host:port` (TLS). */
  url: string;
  username?: string | undefined;
  /** Never logged and never part of an error message. */
  password?: string | undefined;
  /** PEM of the certificate authorities to trust for `mqtts://` (default: Node's bundled roots). */
  ca?: string | Buffer | undefined;
  /** PEM client certificate and key, for brokers that authenticate clients by certificate. */
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  /** Check the broker's certificate and host name (default true). */
  rejectUnauthorized?: boolean | undefined;
  /** MQTT client id (default `esphome-ble-<gateway>-<random>`: two runs with one name must not kick each other off). */
  clientId?: string | undefined;
  /** Keep-alive in seconds (default 30). */
  keepalive?: number | undefined;
  /** Deadline of one connect attempt until CONNACK (default 10 s). */
  connectTimeout?: number | undefined;
  /** Reconnect backoff (default 1 s growing 1.8x to 60 s, ±20 % jitter: the proxies' own). */
  backoff?: BackoffOptions | undefined;
  /**
   * Bytes the gateway may have queued on the broker socket before it drops advertisements instead of writing
   * them (default 1 MiB): a broker that stops reading must not make the gateway buffer without bound.
   */
  maxBufferedBytes?: number | undefined;
}

/** What the connection tells its owner. */
export interface BrokerEvents {
  /** Runs on every (re)connect, before anything else is published: announce, subscribe, republish retained state. */
  onConnect(): void;
  /** `retained`: the broker replayed a stored message on subscribe (MQTT 3.1.1 §3.3.1.3), not a live one. */
  onMessage(topic: string, payload: Buffer, retained: boolean): void;
  onDisconnect(error: Error | undefined, retryInMs: number): void;
}

/** Message to publish when we go away unannounced (the broker's last will). */
export interface Will {
  topic: string;
  payload: string;
}

/** Default of BrokerOptions.maxBufferedBytes. */
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_KEEPALIVE_S = 30;
/** How long close() waits for the broker to take the retained `offline` and our DISCONNECT before dropping the socket. */
const CLOSE_TIMEOUT_MS = 2_000;
/** MQTT 3.1.1 CONNACK codes 4 and 5, MQTT 5 reason codes 0x86 and 0x87: the broker will not take our credentials. */
const AUTH_REASON_CODES = new Set([4, 5, 0x86, 0x87]);

/**
 * One MQTT.js client with our reconnect policy: jittered exponential backoff (MQTT.js alone retries at a fixed
 * period), nothing queued while the broker is away (QoS 0 messages are not stored), and a bound on what may wait
 * in the socket for a slow broker.
 */
export class BrokerConnection {
  readonly url: string;
  readonly #options: BrokerOptions;
  readonly #events: BrokerEvents;
  readonly #will: Will;
  readonly #clientId: string;
  readonly #maxBuffered: number;
  readonly #connectLocal: (() => Duplex) | undefined;
  #client: MqttClient | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #tries = 0;
  #closed = false;
  #lastError: Error | undefined;
  #connectedOnce = false;
  #corked = false;
  readonly #waiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>();

  /** `connectLocal`: a stream to a broker in this process (the embedded one), used instead of dialling `options.url`. */
  constructor(options: BrokerOptions, gatewayName: string, will: Will, events: BrokerEvents, connectLocal?: () => Duplex) {
    const url = new URL(options.url);
    if (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:') {
      throw new InvalidArgumentError(
        `Broker URL must be mqtt://host:port or mqtts://host:port, got ${JSON.stringify(redactUrl(options.url))}`,
      );
    }
    this.url = redactUrl(options.url);
    this.#options = options;
    this.#events = events;
    this.#will = will;
    this.#clientId = options.clientId ?? `esphome-ble-${gatewayName}-${randomBytes(3).toString('hex')}`;
    this.#maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.#connectLocal = connectLocal;
  }

  /** True while connected (CONNACK received, socket open). */
  get connected(): boolean {
    return this.#client?.connected === true;
  }

  /** The last connection error (never holds the password). */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  /** Starts connecting (idempotent); reconnects with backoff until close(). */
  start(): void {
    if (this.#client !== undefined || this.#closed) return;
    const { url, username, password, ca, cert, key, rejectUnauthorized, keepalive, connectTimeout } = this.#options;
    const options: IClientOptions = {
      clientId: this.#clientId,
      protocolVersion: 4,
      clean: true,
      keepalive: keepalive ?? DEFAULT_KEEPALIVE_S,
      connectTimeout: connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS,
      // We reconnect ourselves, with backoff; MQTT.js would retry at a fixed period.
      reconnectPeriod: 0,
      // Nothing waits for a broker that is away: advertisements are counted as dropped instead.
      queueQoSZero: false,
      resubscribe: false,
      will: { topic: this.#will.topic, payload: Buffer.from(this.#will.payload), qos: 1, retain: true },
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password }),
      ...(ca === undefined ? {} : { ca }),
      ...(cert === undefined ? {} : { cert }),
      ...(key === undefined ? {} : { key }),
      rejectUnauthorized: rejectUnauthorized ?? true,
    };
    const local = this.#connectLocal;
    const client = local === undefined ? mqtt.connect(url, options) : new MqttClient(() => local(), options);
    this.#client = client;
    client.on('connect', () => {
      this.#tries = 0;
      this.#lastError = undefined;
      this.#connectedOnce = true;
      this.#events.onConnect();
      for (const waiter of this.#waiters) waiter.resolve();
      this.#waiters.clear();
    });
    client.on('message', (topic, payload, packet) => this.#events.onMessage(topic, payload, packet.retain));
    client.on('error', (error) => {
      const wrapped = this.#wrap(error);
      this.#lastError = wrapped;
      // The failure table decides, as everywhere: refused credentials are permanent, any other broker error is not.
      if (isPermanentFailure(wrapped) && !this.#connectedOnce) {
        for (const waiter of this.#waiters) waiter.reject(wrapped);
        this.#waiters.clear();
      }
    });
    client.on('close', () => this.#scheduleReconnect());
  }

  /** Resolves once connected; rejects when the broker refuses our credentials before the first connect, or on the deadline. */
  async waitConnected(options: CallOptions = {}): Promise<void> {
    if (this.connected) return;
    await withDeadline(`Connecting to the MQTT broker ${this.url}`, options, undefined, (signal) => {
      return new Promise<void>((resolve, reject) => {
        const waiter = {
          resolve: () => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          },
          reject: (error: Error) => {
            signal.removeEventListener('abort', onAbort);
            reject(error);
          },
        };
        const onAbort = (): void => {
          this.#waiters.delete(waiter);
          const reason = signal.reason as Error;
          // A deadline names what the broker said last, so "timed out" is not the whole story.
          reject(
            this.#lastError !== undefined && reason?.name === 'TimeoutError'
              ? new MqttBrokerError(`${reason.message}: ${this.#lastError.message}`, { cause: this.#lastError })
              : reason,
          );
        };
        signal.addEventListener('abort', onAbort, { once: true });
        this.#waiters.add(waiter);
      });
    });
  }

  /**
   * Publishes when connected and the socket is not backed up; false when the message was dropped. QoS 0
   * non-retained messages (advertisements, answers) are written straight to the socket as one PUBLISH packet;
   * retained state goes through MQTT.js at QoS 1 (small, bounded, and republished on every connect anyway).
   */
  publish(topic: string, payload: string, options: { retain?: boolean; qos?: 0 | 1 } = {}): boolean {
    const client = this.#client;
    if (client === undefined || !client.connected) return false;
    if (this.bufferedBytes > this.#maxBuffered) return false;
    if ((options.qos ?? 0) === 0 && options.retain !== true) return this.#write(client, topic, payload);
    client.publish(topic, payload, { qos: options.qos ?? 0, retain: options.retain ?? false }, () => {});
    return true;
  }

  /**
   * One QoS 0 PUBLISH written as a single buffer. MQTT.js spends 10-20 µs per publish on this VM (packet object,
   * four writes per packet, a 'drain' listener per packet while the socket is backed up, which a slow broker turns
   * into thousands); this is the hot path, run for every advertisement.
   */
  #write(client: MqttClient, topic: string, payload: string): boolean {
    const stream = client.stream as unknown as {
      writable?: boolean;
      write(chunk: Buffer): boolean;
      cork?: () => void;
      uncork?: () => void;
    };
    if (stream.writable === false) return false;
    const topicBytes = Buffer.byteLength(topic);
    const payloadBytes = Buffer.byteLength(payload);
    const remaining = 2 + topicBytes + payloadBytes;
    const lengthBytes = remaining < 0x80 ? 1 : remaining < 0x4000 ? 2 : remaining < 0x200000 ? 3 : 4;
    const packet = Buffer.allocUnsafe(1 + lengthBytes + remaining);
    packet[0] = 0x30;
    let at = 1;
    for (let left = remaining; ; ) {
      const byte = left % 0x80;
      left = Math.floor(left / 0x80);
      packet[at++] = left > 0 ? byte | 0x80 : byte;
      if (left === 0) break;
    }
    packet.writeUInt16BE(topicBytes, at);
    at += 2;
    at += packet.write(topic, at, 'utf8');
    packet.write(payload, at, 'utf8');
    if (!this.#corked && stream.cork !== undefined && stream.uncork !== undefined) {
      // A proxy frame brings up to 16 advertisements: let them leave in one writev.
      this.#corked = true;
      stream.cork();
      process.nextTick(() => {
        this.#corked = false;
        stream.uncork!();
      });
    }
    stream.write(packet);
    return true;
  }

  /** Bytes waiting in the broker socket (what a slow broker has not read yet). */
  get bufferedBytes(): number {
    const stream = this.#client?.stream as { writableLength?: number } | undefined;
    return stream?.writableLength ?? 0;
  }

  /**
   * Subscribes (QoS 0, as OpenMQTTGateway); `done` gets the topics the broker granted and those it refused (SUBACK
   * 0x80, or no SUBACK at all when the connection went first).
   */
  subscribe(topics: readonly string[], done: (granted: string[], refused: string[], error: Error | undefined) => void = () => {}): void {
    const client = this.#client;
    if (client === undefined) return;
    client.subscribe([...topics], { qos: 0 }, (error, grants) => {
      // MQTT.js reports a refused filter as an error that carries the SUBACK.
      const codes = (error as { packet?: { granted?: number[] } } | undefined)?.packet?.granted ?? grants?.map((g) => g.qos) ?? [];
      const granted = topics.filter((_, i) => codes[i] !== undefined && codes[i]! < 0x80);
      done(
        granted,
        topics.filter((t) => !granted.includes(t)),
        error === null ? undefined : (error ?? undefined),
      );
    });
  }

  /** Unsubscribes (fire and forget: whatever still arrives for these topics is the owner's to ignore). */
  unsubscribe(topics: readonly string[]): void {
    if (topics.length > 0) this.#client?.unsubscribe([...topics], () => {});
  }

  /** Publishes `final` (if connected, e.g. the retained `offline`), disconnects cleanly and stops reconnecting. Idempotent. */
  async close(final?: { topic: string; payload: string }, options: CallOptions = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    for (const waiter of this.#waiters) waiter.reject(new MqttBrokerError('The MQTT connection was closed'));
    this.#waiters.clear();
    const client = this.#client;
    if (client === undefined) return;
    const clean = client.connected;
    const goodbye = async (): Promise<void> => {
      if (clean && final !== undefined) {
        await new Promise<void>((resolve) => client.publish(final.topic, final.payload, { qos: 1, retain: true }, () => resolve()));
      }
      await new Promise<void>((resolve) => client.end(!clean, {}, () => resolve()));
    };
    try {
      // A broker that stopped reading acknowledges neither the goodbye nor the DISCONNECT: bounded wait.
      await withDeadline('Closing the MQTT connection', options, CLOSE_TIMEOUT_MS, (signal) =>
        Promise.race([
          goodbye(),
          new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
        ]),
      );
    } catch {
      // Past the deadline the socket goes. MQTT.js's end(true) does nothing while an end(false) still waits for a
      // broker that stopped reading to close its side, so the stream is destroyed first.
      (client.stream as { destroy?: () => void } | undefined)?.destroy?.();
      await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
    }
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    const delay = reconnectDelay(this.#tries++, this.#options.backoff ?? {});
    this.#events.onDisconnect(this.#lastError, delay);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#closed) this.#client?.reconnect();
    }, delay);
  }

  #wrap(error: Error): MqttBrokerError {
    const code = (error as { code?: unknown }).code;
    const message = redactSecrets(error.message, [this.#options.password]);
    if (typeof code === 'number' && AUTH_REASON_CODES.has(code)) {
      return new MqttBrokerError(`The MQTT broker ${this.url} refused our credentials (${message})`, {
        code: 'ESPAPI_ERR_MQTT_AUTH',
        reasonCode: code,
      });
    }
    return new MqttBrokerError(`MQTT broker ${this.url}: ${message}`, typeof code === 'number' ? { reasonCode: code } : {});
  }
}

/** The URL without any password it carries (for messages and status events). */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password !== '') url.password = '***';
    return url.toString().replace(/\/$/, '');
  } catch {
    return text.replace(/\/\/[^@/]*@/, '//***@');
  }
}
