import type { Advertisement } from '../bluetooth/advertisement.js';
import { EspApiError, InvalidArgumentError, MqttBrokerError } from '../errors.js';
import type { ProxyDiagnostics } from '../pool/proxy-health.js';
import type { ProxyPool } from '../pool/proxy-pool.js';
import { abortPromise, type CallOptions, withDeadline } from '../util/abort.js';
import { type AsyncQueue, openQueue, type QueueOptions } from '../util/async-queue.js';
import { advertisementFields, contentKey, estimateDistance, formatAdvertisementJson } from './ad-payload.js';
import { AdThrottle, type ThrottleOptions } from './ad-throttle.js';
import { BrokerConnection, type BrokerOptions } from './broker-connection.js';
import type { CommandPolicyOptions } from './command-policy.js';
import { type CommandEvent, CommandRunner } from './command-runner.js';
import { EmbeddedBroker, type EmbeddedBrokerOptions } from './embedded-broker.js';
import { FleetPublisher } from './fleet-publisher.js';
import { DEFAULT_DISCOVERY_PREFIX } from './ha-discovery.js';
import type { MqttGatewayStats, MqttGatewayStatus } from './mqtt-status.js';
import { NameClaim } from './name-claim.js';
import { type GatewayTopics, gatewayTopics } from './topics.js';

/** Which advertisement topics are written and what goes in them. */
export interface AdvertisementPublishOptions extends ThrottleOptions {
  /** `<base>/<gateway>/BTtoMQTT/<MAC>` per device (default true). */
  perDevice?: boolean | undefined;
  /** Also `<base>/<gateway>/BTtoMQTT/undecoded`, where Theengs Gateway decodes other gateways' data (default false). */
  undecoded?: boolean | undefined;
  /** Also `<base>/presence/<proxy>` for Home Assistant's MQTT room presence, one room per proxy (default false). */
  presence?: boolean | undefined;
  /** Put the estimated `distance` in every message (default true; the presence topic always has it). */
  distance?: boolean | undefined;
  /** Leave out advertisements at or below this RSSI (default -100, OpenMQTTGateway's MinimumRSSI; by magnitude as its minrssi: 90 is -90). */
  minRssi?: number | undefined;
}

/** Options of an MqttGateway. */
export interface MqttGatewayOptions {
  /** The proxies (yours: the gateway neither starts nor closes more than `pool.start()`). A pool fed by a relay's upstream sessions works too. */
  pool: ProxyPool;
  /** Gateway name, the second topic level (default `esphome-ble`); two gateways on one broker need two names. */
  name?: string | undefined;
  /** First topic level(s) (default `home`, as OpenMQTTGateway and Theengs Gateway). */
  baseTopic?: string | undefined;
  /** The user's broker (`mqtt://…`, `mqtts://…` or full options); without it an embedded broker is started. */
  broker?: string | BrokerOptions | undefined;
  /** Options of the embedded broker (when `broker` is not given). */
  embeddedBroker?: EmbeddedBrokerOptions | undefined;
  advertisements?: AdvertisementPublishOptions | undefined;
  /** GATT over MQTT: nothing is allowed unless listed here. */
  commands?: CommandPolicyOptions | undefined;
  /** Home Assistant MQTT discovery of the proxies (online, free slots, ads/s); off by default. */
  discovery?: boolean | { prefix?: string | undefined } | undefined;
  /** How often the per-proxy stats topics and the `stats` event are refreshed (default 10 s). */
  statsInterval?: number | undefined;
}

/** Default gateway name (the topic level after `home`). */
export const DEFAULT_GATEWAY_NAME = 'esphome-ble';
/** Default of statsInterval: the pool's ads/s is a ten-second average, so refreshing faster shows nothing new. */
export const DEFAULT_STATS_INTERVAL_MS = 10_000;
/** Default deadline of close(): the goodbye to the broker (2 s of it at most) and a command's link (5 s) going down. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;
/** OpenMQTTGateway's MinimumRSSI. */
export const DEFAULT_MIN_RSSI = -100;

/**
 * Puts a proxy fleet on an MQTT broker in OpenMQTTGateway's conventions: advertisements on
 * `home/<gateway>/BTtoMQTT/<MAC>`, GATT reads/writes/notifications requested on `home/<gateway>/commands/MQTTtoBT`
 * and answered on the device topic, each proxy's state as retained topics, the gateway's availability as LWT.
 */
export class MqttGateway {
  /** The topic layout. */
  readonly topics: GatewayTopics;
  readonly name: string;
  readonly #options: MqttGatewayOptions;
  readonly #pool: ProxyPool;
  readonly #throttle: AdThrottle;
  readonly #runner: CommandRunner;
  readonly #fleet: FleetPublisher;
  readonly #statusQueues = new Set<AsyncQueue<MqttGatewayStatus>>();
  readonly #claim = new NameClaim();
  readonly #proxyNames = new Map<string, string>();
  readonly #stop = new AbortController();
  readonly #ads: { perDevice: boolean; undecoded: boolean; presence: boolean; distance: boolean; minRssi: number };
  #broker: BrokerConnection | undefined;
  #embedded: EmbeddedBroker | undefined;
  #offAds: (() => void) | undefined;
  #statsTimer: NodeJS.Timeout | undefined;
  #refreshQueued = false;
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #closeRequested = false;
  #commandTopics: readonly string[] = [];
  #resolveSubscribed: () => void = () => {};
  /** Settles with the first connection's SUBACK for the command topics (at once when commands are off). */
  readonly #subscribed = new Promise<void>((resolve) => {
    this.#resolveSubscribed = resolve;
  });
  #resolveClosed: (error: Error | undefined) => void = () => {};
  readonly #closed: Promise<Error | undefined>;
  #counters = {
    advertisementsPublished: 0,
    messagesPublished: 0,
    advertisementsFiltered: 0,
    droppedBrokerAway: 0,
    droppedSlowBroker: 0,
    commandsSucceeded: 0,
    commandsFailed: 0,
    answersDropped: 0,
    retainedCommandsDropped: 0,
    brokerDisconnects: 0,
  };

  constructor(options: MqttGatewayOptions) {
    this.#options = options;
    this.#pool = options.pool;
    this.name = options.name ?? DEFAULT_GATEWAY_NAME;
    this.topics = gatewayTopics(options.baseTopic ?? 'home', this.name);
    const ads = options.advertisements ?? {};
    this.#ads = {
      perDevice: ads.perDevice ?? true,
      undecoded: ads.undecoded ?? false,
      presence: ads.presence ?? false,
      distance: ads.distance ?? true,
      // By magnitude, as OpenMQTTGateway compares its minrssi: -90 and 90 mean the same.
      minRssi: -Math.abs(ads.minRssi ?? DEFAULT_MIN_RSSI),
    };
    this.#throttle = new AdThrottle(ads);
    this.#runner = new CommandRunner(this.#pool, options.commands ?? {}, {
      answer: (mac, payload) => this.#publishAnswer(this.topics.device(mac), payload),
      answerUnaddressed: (payload) => this.#publishAnswer(`${this.topics.bt}/commands`, payload),
      report: (event) => this.#onCommand(event),
    });
    const discovery = options.discovery;
    this.#fleet = new FleetPublisher(
      this.topics,
      (topic, payload) => this.#broker?.publish(topic, payload, { retain: true, qos: 1 }) ?? false,
      discovery === undefined || discovery === false
        ? undefined
        : { prefix: (discovery === true ? undefined : discovery.prefix) ?? DEFAULT_DISCOVERY_PREFIX, gateway: this.name },
    );
    const interval = options.statsInterval ?? DEFAULT_STATS_INTERVAL_MS;
    if (!(interval > 0)) throw new InvalidArgumentError(`statsInterval must be a positive number of ms, got ${interval}`);
    this.#closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  /** The command topics the broker granted the gateway (empty when commands are off, or the broker refused them). */
  get commandTopics(): readonly string[] {
    return this.#commandTopics;
  }

  /** Advertisements at or below this RSSI (dBm) are left out. */
  get minRssi(): number {
    return this.#ads.minRssi;
  }

  /** `mqtt://…` of the broker in use (the embedded one's once started); undefined before start(). */
  get brokerUrl(): string | undefined {
    return this.#broker?.url;
  }

  /** The embedded broker, when the gateway runs one. */
  get embeddedBroker(): EmbeddedBroker | undefined {
    return this.#embedded;
  }

  /**
   * Starts the embedded broker (without `broker`), connects to the broker and the pool, and resolves once the
   * gateway is online on the broker. Idempotent. Rejects with MqttBrokerError (`ESPAPI_ERR_MQTT_AUTH` for refused
   * credentials) or the deadline; then the gateway is closed.
   */
  start(options: CallOptions = {}): Promise<void> {
    if (this.#closing !== undefined) return Promise.reject(new MqttBrokerError('The gateway is closed'));
    this.#starting ??= this.#start(options);
    return this.#starting;
  }

  /** Counters since start. */
  stats(): MqttGatewayStats {
    return {
      ...this.#counters,
      notifications: this.#runner.notifications,
      brokerConnected: this.#broker?.connected ?? false,
      brokerBufferedBytes: this.#broker?.bufferedBytes ?? 0,
    };
  }

  /**
   * Gateway events (broker up/down, each command, periodic stats) as a bounded stream. It begins with the broker
   * state now (`brokerConnected` when connected), so a stream opened after start() knows where it stands.
   */
  status(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<MqttGatewayStatus> {
    const queue = openQueue(this.#statusQueues, this.#closing !== undefined, options);
    const broker = this.#broker;
    if (this.#closing === undefined && broker?.connected) queue.push({ type: 'brokerConnected', url: broker.url });
    return queue;
  }

  /** Resolves when the gateway has closed (with the error that ended a failed start, if that is what closed it). */
  closed(): Promise<Error | undefined> {
    return this.#closed;
  }

  /**
   * Announces `offline` (retained), ends notification subscriptions and commands in flight, disconnects and stops
   * the embedded broker. The pool stays open. Idempotent. `timeout` (default 5 s) bounds all of it: past it the
   * broker connection is dropped and commands still in flight finish aborted on their own.
   */
  close(options: CallOptions = {}): Promise<void> {
    if (this.#closing === undefined) {
      this.#closeRequested = true;
      // A start in progress stops at its next step and undoes what it opened; then everything is released.
      this.#stop.abort(new MqttBrokerError('The gateway was closed before it had started'));
      const starting = this.#starting;
      this.#closing = (async () => {
        await starting?.catch(() => {});
        await this.#close(undefined, options);
      })();
    }
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #start(options: CallOptions): Promise<void> {
    try {
      await withDeadline('Starting the MQTT gateway', options, undefined, async (deadline) => {
        const signal = AbortSignal.any([deadline, this.#stop.signal]);
        const broker = await this.#brokerOptions(signal);
        // close() may have come while the embedded broker started: it is released with the rest.
        signal.throwIfAborted();
        const embedded = this.#embedded;
        const connection = new BrokerConnection(
          broker,
          this.name,
          { topic: this.topics.lwt, payload: 'offline' },
          {
            onConnect: () => this.#onBrokerConnect(connection),
            onMessage: (topic, payload, retained) => this.#onMessage(topic, payload, retained),
            onDisconnect: (error, retryInMs) => {
              this.#counters.brokerDisconnects++;
              this.#emit({
                type: 'brokerDisconnected',
                code: error instanceof EspApiError ? error.code : undefined,
                message: error?.message,
                retryInMs,
              });
            },
          },
          // In process rather than over TCP: no client of the embedded broker can take the gateway's place or quota.
          embedded === undefined ? undefined : () => embedded.connectLocal(),
        );
        this.#broker = connection;
        this.#pool.start();
        this.#offAds = this.#pool.onAdvertisement((ad, proxy) => this.#onAdvertisement(ad, proxy));
        void this.#followPool();
        this.#statsTimer = setInterval(() => this.#tick(), this.#options.statsInterval ?? DEFAULT_STATS_INTERVAL_MS);
        connection.start();
        await connection.waitConnected({ signal });
        // Started means the command topics are what the broker granted (commandTopics), not what we asked for.
        const { promise, cleanup } = abortPromise(signal);
        await Promise.race([this.#subscribed, promise]).finally(cleanup);
      });
    } catch (error) {
      // Closed by close() (which waits for this start to settle before it releases) or failed on its own.
      if (this.#closeRequested) throw error;
      this.#closing ??= this.#close(error as Error, {});
      await this.#closing;
      throw error;
    }
  }

  async #brokerOptions(signal: AbortSignal): Promise<BrokerOptions> {
    const given = this.#options.broker;
    if (typeof given === 'string') return { url: given };
    if (given !== undefined) return given;
    const embedded = await EmbeddedBroker.start(this.#options.embeddedBroker ?? {}, { signal });
    this.#embedded = embedded;
    const { username, password } = this.#options.embeddedBroker ?? {};
    return { url: embedded.url, ...(username === undefined ? {} : { username }), ...(password === undefined ? {} : { password }) };
  }

  #onBrokerConnect(connection: BrokerConnection): void {
    connection.publish(this.topics.lwt, 'online', { retain: true, qos: 1 });
    // OpenMQTTGateway listens to <root>/commands/#: GATT commands work on MQTTtoBT (its code) and on MQTTtoBT/config
    // (its documentation's examples, which older releases carried out from there).
    if (this.#runner.allow.empty || this.#claim.yielded) {
      this.#commandTopics = [];
      this.#resolveSubscribed();
    } else {
      const topics = [this.topics.commands, this.topics.commandsConfig];
      connection.subscribe(topics, (granted, refused, error) => {
        this.#commandTopics = granted;
        if (refused.length > 0 && connection.connected) {
          // Said out loud: a broker ACL that refuses the command topic would otherwise leave commands silently dead.
          this.#emit({
            type: 'subscribeRefused',
            topics: refused,
            message: error?.message ?? 'the broker refused the subscription (SUBACK 0x80: check its ACL for this user)',
          });
        }
        this.#resolveSubscribed();
      });
    }
    // Our claim on the name, once the broker will pass us the claims of others (see NameClaim).
    connection.subscribe([this.topics.instance], (granted) => {
      if (granted.length > 0) connection.publish(this.topics.instance, this.#claim.payload);
    });
    this.#fleet.reset();
    const proxies = this.#pool.diagnostics();
    this.#learnNames(proxies);
    this.#fleet.refresh(proxies);
    this.#emit({ type: 'brokerConnected', url: connection.url });
  }

  #onMessage(topic: string, payload: Buffer, retained: boolean): void {
    if (topic === this.topics.instance) {
      if (!retained) this.#onClaim(payload);
      return;
    }
    const config = topic === this.topics.commandsConfig;
    if ((topic !== this.topics.commands && !config) || this.#claim.yielded) return;
    if (retained) {
      // A retained command is replayed by the broker on every subscribe (each start, each reconnect): a write
      // would run again and again. Commands are acts, not state; only live ones are carried out.
      this.#counters.retainedCommandsDropped++;
      this.#emit({ type: 'retainedCommandDropped', topic });
      return;
    }
    this.#runner.handle(payload, config ? 'config' : 'commands');
  }

  /** Another run with our name spoke up: answer it once, report the clash, and leave the commands to the newer run. */
  #onClaim(payload: Buffer): void {
    const verdict = this.#claim.receive(payload);
    if (verdict === undefined) return;
    if (verdict.first) this.#broker?.publish(this.topics.instance, this.#claim.payload);
    const yielding = verdict.yieldCommands && this.#commandTopics.length > 0;
    if (yielding) {
      this.#broker?.unsubscribe(this.#commandTopics);
      this.#commandTopics = [];
    }
    if (!verdict.first && !yielding) return;
    const { host, pid, since } = verdict.other;
    this.#emit({
      type: 'nameClash',
      other: { host, pid, since: new Date(since).toISOString() },
      commands: this.#claim.yielded ? 'yielded' : 'kept',
    });
  }

  #onAdvertisement(ad: Advertisement, proxy: string): void {
    const ads = this.#ads;
    if (ad.rssi <= ads.minRssi) {
      this.#counters.advertisementsFiltered++;
      return;
    }
    const broker = this.#broker;
    if (broker === undefined || !broker.connected) {
      this.#counters.droppedBrokerAway++;
      return;
    }
    const fields = advertisementFields(ad);
    const verdict = this.#throttle.passThrough ? 'publish' : this.#throttle.verdict(ad.address, proxy, contentKey(fields), ad.timestamp);
    // An unchanged report still moves the distance: room presence is not change-suppressed, only interval-limited.
    if (verdict === 'tooSoon' || (verdict === 'unchanged' && !ads.presence)) {
      this.#counters.advertisementsFiltered++;
      return;
    }
    const mac = ad.mac;
    const distance = ads.distance || ads.presence ? estimateDistance(ad.rssi, fields.txpower) : undefined;
    let sent = 0;
    let dropped = 0;
    if (verdict === 'publish') {
      const entries = fields.serviceData.length === 0 ? [undefined] : fields.serviceData;
      for (const serviceData of entries) {
        const json = formatAdvertisementJson(mac, ad.addressType, ad.rssi, fields, serviceData, ads.distance ? distance : undefined, proxy);
        if (ads.perDevice) broker.publish(this.topics.device(mac), json) ? sent++ : dropped++;
        if (ads.undecoded) broker.publish(this.topics.undecoded, json) ? sent++ : dropped++;
      }
    } else {
      this.#counters.advertisementsFiltered++;
    }
    if (ads.presence) {
      // The room is the proxy as people named it (its node name once known), not `192.168.1.40:6053`.
      const room = this.#proxyNames.get(proxy) ?? proxy;
      const json = formatAdvertisementJson(mac, ad.addressType, ad.rssi, fields, undefined, distance, room);
      broker.publish(this.topics.room(room), json) ? sent++ : dropped++;
    }
    this.#counters.messagesPublished += sent;
    if (sent > 0) this.#counters.advertisementsPublished++;
    else if (dropped > 0) this.#counters.droppedSlowBroker++;
  }

  #publishAnswer(topic: string, payload: string): boolean {
    const ok = this.#broker?.publish(topic, payload) ?? false;
    if (!ok) this.#counters.answersDropped++;
    return ok;
  }

  #onCommand(event: CommandEvent): void {
    if (event.success) this.#counters.commandsSucceeded++;
    else this.#counters.commandsFailed++;
    this.#emit(event);
  }

  /** Proxy changes refresh the retained fleet topics (coalesced: one connect brings several events at once). */
  async #followPool(): Promise<void> {
    for await (const event of this.#pool.status({ signal: this.#stop.signal })) {
      if (event.type === 'deviceSeen' || event.type === 'deviceLost') continue;
      if (this.#refreshQueued) continue;
      this.#refreshQueued = true;
      setImmediate(() => {
        this.#refreshQueued = false;
        if (this.#stop.signal.aborted) return;
        const proxies = this.#pool.diagnostics();
        this.#learnNames(proxies);
        if (this.#broker?.connected) this.#fleet.refresh(proxies);
      });
    }
  }

  /** Node names by proxy id, for the presence rooms (a proxy given as an address is named once it said hello). */
  #learnNames(proxies: readonly ProxyDiagnostics[]): void {
    for (const proxy of proxies) if (proxy.name !== undefined) this.#proxyNames.set(proxy.id, proxy.name);
  }

  #tick(): void {
    const proxies = this.#pool.diagnostics();
    this.#learnNames(proxies);
    if (this.#broker?.connected) this.#fleet.refresh(proxies);
    this.#emit({ type: 'stats', stats: this.stats() });
  }

  async #close(error: Error | undefined, options: CallOptions): Promise<void> {
    this.#stop.abort();
    this.#offAds?.();
    clearInterval(this.#statsTimer);
    // One deadline for all of it. Each step still runs once it has passed, in its forced form: the broker socket
    // is dropped, the embedded broker's connections destroyed.
    await withDeadline('Closing the MQTT gateway', options, DEFAULT_CLOSE_TIMEOUT_MS, async (signal) => {
      await this.#runner.close({ signal });
      if (this.#broker?.connected && !signal.aborted) this.#fleet.goodbye();
      await this.#broker?.close({ topic: this.topics.lwt, payload: 'offline' }, { signal });
      await this.#embedded?.close({ signal }).catch(() => {});
    }).catch(() => {});
    this.#emit({ type: 'closed' });
    for (const queue of this.#statusQueues) queue.end();
    this.#statusQueues.clear();
    this.#resolveClosed(error);
  }

  #emit(status: MqttGatewayStatus): void {
    for (const queue of this.#statusQueues) queue.push(status);
  }
}
