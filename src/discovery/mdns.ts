import { isIP } from 'node:net';
import { Bonjour } from 'bonjour-service';
import { sleep } from '../util/abort.js';
import { AsyncQueue, endOnAbort } from '../util/async-queue.js';
import { type ProxyTxt, parseProxyTxt, proxyTxtFromRecord } from './txt.js';

/** DNS-SD service type every ESPHome device with the native API publishes. */
export const ESPHOME_SERVICE_TYPE = 'esphomelib';

/** Default browse time of discoverProxies(): the mDNS query timeout aioesphomeapi uses. */
export const DEFAULT_DISCOVERY_TIMEOUT_MS = 3_000;

/** Default re-query period: a single multicast query every 15 s is negligible traffic yet spots a powered-off proxy in under a minute. */
export const DEFAULT_REQUERY_INTERVAL_MS = 15_000;

/** A proxy missing from this many consecutive re-queries is reported down; one lost UDP answer must not drop it. */
export const STALE_AFTER_MISSED_QUERIES = 3;

/** RFC 6762 §5.2: the first two queries of a browse should be at least one second apart. */
const FIRST_REQUERY_DELAY_MS = 1_000;

/** `0.0.0.0`, `::` and spelled-out forms: answers with these are useless to connect to (aioesphomeapi drops them too). */
const UNSPECIFIED = /^(0\.0\.0\.0|[0:]+)$/;

/** Socket options of the mDNS responder/browser; leave them unset for the real LAN (224.0.0.251:5353). */
export interface MdnsSocketOptions {
  /** Interface address to join the multicast group on and send from, e.g. `127.0.0.1` in tests. */
  interface?: string;
  /** Address to bind the UDP socket to (default: the interface, or all addresses). */
  bind?: string;
  /** UDP port (default 5353). */
  port?: number;
}

/** Options of MdnsDiscovery. */
export interface MdnsOptions extends MdnsSocketOptions {
  /**
   * Period of the repeated PTR query (default 15 s). bonjour-service's browser queries only once, so
   * without re-queries late responders and silent departures go unnoticed. `0` or `Infinity` disables
   * re-querying and with it staleness detection (goodbye packets are still honoured).
   */
  requeryIntervalMs?: number;
  /** A bonjour-service compatible instance to browse with instead of opening our own socket; it is not destroyed by close(). */
  bonjour?: BonjourLike;
}

/** A proxy found on the network. */
export interface DiscoveredProxy {
  /** Instance name = the device's node name, e.g. `proxy-kitchen`. */
  readonly name: string;
  /** Host name from the SRV record, e.g. `proxy-kitchen.local`. */
  readonly host: string;
  /** IP addresses from the A/AAAA records (IPv4 first), or the sender's address when the answer carried none. */
  readonly addresses: readonly string[];
  /** Native API port from the SRV record. */
  readonly port: number;
  readonly txt: ProxyTxt;
}

/** A change in the set of proxies on the network. */
export type DiscoveryEvent =
  | { readonly type: 'up'; readonly proxy: DiscoveredProxy }
  | { readonly type: 'down'; readonly name: string }
  | { readonly type: 'update'; readonly proxy: DiscoveredProxy };

/** The part of a bonjour-service Service that discovery reads. */
export interface ServiceLike {
  name: string;
  host: string;
  port: number;
  addresses?: readonly string[] | undefined;
  referer?: { address: string } | undefined;
  /** TXT strings as received; preferred because bonjour-service's decoded `txt` drops empty values. */
  rawTxt?: unknown;
  txt?: unknown;
}

/** The part of a bonjour-service Browser that discovery uses. */
export interface BrowserLike {
  on(event: 'up' | 'down' | 'txt-update' | 'srv-update', listener: (service: ServiceLike) => void): unknown;
  stop(): void;
}

/** The part of bonjour-service's Bonjour that discovery uses; inject a double in tests. */
export interface BonjourLike {
  /** Starts a browser, which sends one PTR query at once. */
  find(config: { type: string; protocol: 'tcp' }): BrowserLike;
  destroy(callback?: () => void): void;
}

interface Tracked {
  proxy: DiscoveredProxy;
  /** True when the proxy answered since the last re-query. */
  seen: boolean;
  missed: number;
}

/**
 * Continuous mDNS browse for `_esphomelib._tcp`.
 *
 * A proxy goes down on a goodbye packet (TTL 0, which bonjour-service reports as `down`) or once it
 * has not answered {@link STALE_AFTER_MISSED_QUERIES} consecutive re-queries. Each re-query starts a
 * fresh bonjour-service browser, because an existing browser reports nothing when a known service
 * answers again; a long-lived browser alongside catches goodbyes and TXT/SRV changes at any time.
 */
export class MdnsDiscovery implements AsyncDisposable {
  readonly #bonjour: BonjourLike;
  readonly #ownsBonjour: boolean;
  readonly #requeryIntervalMs: number;
  readonly #proxies = new Map<string, Tracked>();
  readonly #queues = new Set<AsyncQueue<DiscoveryEvent>>();
  readonly #watcher: BrowserLike;
  #roundBrowser: BrowserLike | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  #failure: Error | undefined;

  /** Starts browsing at once. */
  constructor(options: MdnsOptions = {}) {
    this.#ownsBonjour = options.bonjour === undefined;
    this.#bonjour = options.bonjour ?? createBonjour(options, (error) => this.#fail(error));
    const interval = options.requeryIntervalMs ?? DEFAULT_REQUERY_INTERVAL_MS;
    this.#requeryIntervalMs = interval > 0 && Number.isFinite(interval) ? interval : 0;
    this.#watcher = this.#browse();
    if (this.#requeryIntervalMs > 0) this.#schedule(Math.min(FIRST_REQUERY_DELAY_MS, this.#requeryIntervalMs));
  }

  /**
   * Discovery events. Any number of consumers may iterate at once; each first receives an `up` for every
   * proxy already known, then live changes. Ends when `signal` aborts, the consumer breaks out, or on close();
   * throws the socket error if the mDNS socket cannot be opened (e.g. EADDRINUSE).
   */
  events(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<DiscoveryEvent> {
    let detach = (): void => {};
    const queue: AsyncQueue<DiscoveryEvent> = new AsyncQueue({}, () => {
      this.#queues.delete(queue);
      detach();
    });
    if (this.#failure !== undefined) {
      queue.fail(this.#failure);
      return queue;
    }
    if (this.#closing !== undefined) {
      queue.end();
      return queue;
    }
    for (const tracked of this.#proxies.values()) queue.push({ type: 'up', proxy: tracked.proxy });
    this.#queues.add(queue);
    detach = endOnAbort(queue, options.signal);
    return queue;
  }

  /** The socket error that stopped discovery, if any. */
  get error(): Error | undefined {
    return this.#failure;
  }

  /** The proxies currently known. */
  snapshot(): DiscoveredProxy[] {
    return [...this.#proxies.values()].map((tracked) => tracked.proxy);
  }

  /** Stops browsing, ends every event stream and releases the socket; idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #browse(): BrowserLike {
    const browser = this.#bonjour.find({ type: ESPHOME_SERVICE_TYPE, protocol: 'tcp' });
    const onAnswer = (service: ServiceLike): void => this.#onAnswer(service);
    browser.on('up', onAnswer);
    browser.on('txt-update', onAnswer);
    browser.on('srv-update', onAnswer);
    browser.on('down', (service) => this.#remove(service.name));
    return browser;
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#requery();
      this.#schedule(this.#requeryIntervalMs);
    }, delayMs);
  }

  #requery(): void {
    for (const [key, tracked] of this.#proxies) {
      tracked.missed = tracked.seen ? 0 : tracked.missed + 1;
      tracked.seen = false;
      if (tracked.missed >= STALE_AFTER_MISSED_QUERIES) {
        this.#proxies.delete(key);
        this.#emit({ type: 'down', name: tracked.proxy.name });
      }
    }
    this.#roundBrowser?.stop();
    this.#roundBrowser = this.#browse();
  }

  #onAnswer(service: ServiceLike): void {
    if (this.#closing !== undefined) return;
    const found = toDiscoveredProxy(service);
    if (found === undefined) return;
    const key = found.name.toLowerCase();
    const tracked = this.#proxies.get(key);
    if (tracked === undefined) {
      this.#proxies.set(key, { proxy: found, seen: true, missed: 0 });
      this.#emit({ type: 'up', proxy: found });
      return;
    }
    tracked.seen = true;
    tracked.missed = 0;
    // bonjour-service only collects A/AAAA records from the same packet; an answer without them
    // (we then fall back to the sender's address) must not overwrite addresses we already have.
    const merged = hasRecordAddresses(service) ? found : { ...found, addresses: tracked.proxy.addresses };
    if (sameProxy(tracked.proxy, merged)) return;
    tracked.proxy = merged;
    this.#emit({ type: 'update', proxy: merged });
  }

  #remove(name: string): void {
    const key = name.toLowerCase();
    const tracked = this.#proxies.get(key);
    if (tracked === undefined || this.#closing !== undefined) return;
    this.#proxies.delete(key);
    this.#emit({ type: 'down', name: tracked.proxy.name });
  }

  // multicast-dns reports only socket set-up failures (EADDRINUSE, EACCES) as errors: browsing cannot go on.
  #fail(error: Error): void {
    if (this.#failure !== undefined || this.#closing !== undefined) return;
    this.#failure = error;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    for (const queue of this.#queues) queue.fail(error);
    this.#queues.clear();
  }

  #emit(event: DiscoveryEvent): void {
    for (const queue of this.#queues) queue.push(event);
  }

  async #shutdown(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#roundBrowser?.stop();
    this.#watcher.stop();
    for (const queue of this.#queues) queue.end();
    this.#queues.clear();
    if (this.#ownsBonjour) await new Promise<void>((resolve) => this.#bonjour.destroy(() => resolve()));
  }
}

/** Browses for `timeout` ms (default 3 s) and returns the proxies found; an abort rejects with the signal's reason, a socket failure with its error. */
export async function discoverProxies(options: MdnsOptions & { timeout?: number; signal?: AbortSignal } = {}): Promise<DiscoveredProxy[]> {
  options.signal?.throwIfAborted();
  const discovery = new MdnsDiscovery(options);
  try {
    await sleep(options.timeout ?? DEFAULT_DISCOVERY_TIMEOUT_MS, options.signal);
    if (discovery.error !== undefined) throw discovery.error;
    return discovery.snapshot();
  } finally {
    await discovery.close();
  }
}

/** Normalises a bonjour-service Service into a DiscoveredProxy; undefined when it lacks a name or port. */
export function toDiscoveredProxy(service: ServiceLike): DiscoveredProxy | undefined {
  if (!service.name || !service.port) return undefined;
  return {
    name: service.name,
    host: normaliseHost(service.host, service.name),
    addresses: normaliseAddresses(service),
    port: service.port,
    txt: serviceTxt(service),
  };
}

/**
 * Opens a bonjour-service instance with explicit socket options and an error callback (its default one throws).
 * Internal: shared with the fixture advertiser.
 */
export function createBonjour(options: MdnsSocketOptions, onError: (error: Error) => void): Bonjour {
  const socket: MdnsSocketOptions = {};
  if (options.interface !== undefined) socket.interface = options.interface;
  if (options.bind !== undefined) socket.bind = options.bind;
  if (options.port !== undefined) socket.port = options.port;
  // bonjour-service passes these straight to multicast-dns, but its constructor type only lists ServiceConfig keys.
  const bonjour = new Bonjour(socket as ConstructorParameters<typeof Bonjour>[0], onError);
  // multicast-dns emits 'error' (EADDRINUSE, EACCES) on an emitter bonjour-service never listens to,
  // which would crash the process; route it to onError instead.
  const mdns = (bonjour as unknown as { server?: { mdns?: { on?: (event: 'error', listener: (error: Error) => void) => void } } }).server
    ?.mdns;
  mdns?.on?.('error', onError);
  return bonjour;
}

function serviceTxt(service: ServiceLike): ProxyTxt {
  const raw = service.rawTxt;
  if (Array.isArray(raw)) return parseProxyTxt(raw.filter((entry) => typeof entry === 'string' || entry instanceof Uint8Array));
  if (raw instanceof Uint8Array) return parseProxyTxt([raw]);
  const decoded: Record<string, string> = {};
  if (typeof service.txt === 'object' && service.txt !== null) {
    for (const [key, value] of Object.entries(service.txt)) {
      if (typeof value === 'string') decoded[key] = value;
    }
  }
  return proxyTxtFromRecord(decoded);
}

function normaliseHost(host: string | undefined, name: string): string {
  const bare = (host || name).replace(/\.$/, '');
  // bonjour-service publishers use the bare OS host name as SRV target; mDNS names live under .local.
  return bare.includes('.') ? bare : `${bare}.local`;
}

function normaliseAddresses(service: ServiceLike): string[] {
  const fromRecords = usable(service.addresses ?? []);
  const addresses = fromRecords.length > 0 ? fromRecords : usable(service.referer ? [service.referer.address] : []);
  // IPv4 first: IPv6 answers are often link-local, and mDNS gives no zone index to connect to them with.
  return [...addresses.filter((a) => isIP(a) === 4), ...addresses.filter((a) => isIP(a) === 6)];
}

function hasRecordAddresses(service: ServiceLike): boolean {
  return usable(service.addresses ?? []).length > 0;
}

function usable(addresses: readonly string[]): string[] {
  const out: string[] = [];
  for (const address of addresses) {
    if (isIP(address) === 0 || UNSPECIFIED.test(address) || out.includes(address)) continue;
    out.push(address);
  }
  return out;
}

function sameProxy(a: DiscoveredProxy, b: DiscoveredProxy): boolean {
  return (
    a.host === b.host &&
    a.port === b.port &&
    a.addresses.length === b.addresses.length &&
    a.addresses.every((address, i) => address === b.addresses[i]) &&
    sameRecord(a.txt.raw, b.txt.raw)
  );
}

function sameRecord(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}
