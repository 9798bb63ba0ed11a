import { isIP } from 'node:net';
import type { Bonjour } from 'bonjour-service';
import { createBonjour, ESPHOME_SERVICE_TYPE } from '../discovery/mdns.js';
import { BLUETOOTH_PROXY_PROJECT_NAME } from '../discovery/txt.js';
import { InvalidArgumentError } from '../errors.js';
import { NOISE_NNPSK0 } from '../noise/handshake.js';
import { DEFAULT_ESPHOME_VERSION } from '../server/api-server.js';

/** Socket options of an MdnsAdvertiser; the interface must be an IPv4 loopback address. */
export interface MdnsAdvertiserOptions {
  /** Loopback address to multicast on, e.g. `127.0.0.1`. */
  interface: string;
  /** Address to bind the UDP socket to (default: the interface). */
  bind?: string;
  /** UDP port shared with the browsing side; pick a private one in tests. */
  port: number;
  /** Receives socket errors (default: ignored; mDNS is best effort). */
  onError?: (error: Error) => void;
}

/** A simulated proxy to announce. */
export interface AdvertisedProxy {
  /** Node name: instance `<name>._esphomelib._tcp.local`, host `<name>.local`. */
  name: string;
  /** Native API port of the simulated proxy. */
  port: number;
  /** Address the host name resolves to (default `127.0.0.1`). */
  host?: string;
  /** TXT key/value pairs, e.g. from simulatedProxyTxt(). */
  txt: Readonly<Record<string, string>>;
}

/** Inputs of a realistic `_esphomelib._tcp` TXT record. */
export interface SimulatedProxyTxtOptions {
  /** Network MAC in any common spelling; published as 12 lower-case hex digits. */
  mac: string;
  friendlyName?: string;
  /** Publishes `api_encryption` (a Noise key is set), as real firmware does. */
  encrypted?: boolean;
  version?: string;
  board?: string;
  /** The `platform` value (default `ESP32`; `RP2040`, or a LibreTiny chip such as `BK7231N`). */
  platform?: string;
}

/** Firmware answers use these TTLs (s): host-bound records short, the rest long (RFC 6762 §10). */
const HOST_RECORD_TTL_S = 120;
const OTHER_RECORD_TTL_S = 4500;

/** ESPHome node names: letters, digits, `-` and `_`; a dot would split the DNS-SD instance label. */
const NODE_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/i;

/** Official ready-made configuration of a generic ESP32 proxy. */
const SIMULATED_PACKAGE_IMPORT_URL = 'github://esphome/bluetooth-proxies/esp32-generic/esp32-generic.yaml@main';

/** The TXT a ready-made ESP32 Bluetooth proxy image publishes. */
export function simulatedProxyTxt(options: SimulatedProxyTxtOptions): Record<string, string> {
  const mac = options.mac.replace(/[:-]/g, '').toLowerCase();
  if (!/^[0-9a-f]{12}$/.test(mac)) throw new InvalidArgumentError(`MAC ${JSON.stringify(options.mac)} is not 6 hex bytes`);
  return {
    ...(options.friendlyName !== undefined ? { friendly_name: options.friendlyName } : {}),
    version: options.version ?? DEFAULT_ESPHOME_VERSION,
    mac,
    platform: options.platform ?? 'ESP32',
    board: options.board ?? 'esp32dev',
    network: 'wifi',
    ...(options.encrypted ? { api_encryption: NOISE_NNPSK0 } : {}),
    project_name: BLUETOOTH_PROXY_PROJECT_NAME,
    project_version: '1.0',
    package_import_url: SIMULATED_PACKAGE_IMPORT_URL,
  };
}

interface MdnsRecord {
  name: string;
  type: 'PTR' | 'SRV' | 'TXT' | 'A' | 'AAAA';
  ttl: number;
  data: unknown;
}

/** bonjour-service's responder (`Bonjour#server`, private in its types). */
interface Responder {
  mdns: { respond(records: MdnsRecord[], callback: (error?: Error | null) => void): void };
  register(records: MdnsRecord[]): void;
  unregister(records: MdnsRecord[]): void;
}

/**
 * Announces simulated proxies over mDNS on a loopback interface, answering queries and sending goodbyes.
 *
 * bonjour-service's own publish() always advertises the machine's non-loopback addresses (it reads
 * os.networkInterfaces() and has no option to choose), so records are built here with an explicit
 * A/AAAA address and handed to its responder directly.
 */
export class MdnsAdvertiser implements AsyncDisposable {
  readonly #bonjour: Bonjour;
  readonly #responder: Responder;
  readonly #onError: (error: Error) => void;
  readonly #published = new Map<string, MdnsRecord[]>();
  readonly #pending = new Set<Promise<void>>();
  #closing: Promise<void> | undefined;

  /** Opens the mDNS socket; throws InvalidArgumentError for a non-loopback interface. */
  constructor(options: MdnsAdvertiserOptions) {
    if (isIP(options.interface) !== 4 || !options.interface.startsWith('127.')) {
      throw new InvalidArgumentError(`MdnsAdvertiser only multicasts on IPv4 loopback; got interface ${JSON.stringify(options.interface)}`);
    }
    this.#onError = options.onError ?? (() => {});
    this.#bonjour = createBonjour(
      { interface: options.interface, port: options.port, ...(options.bind !== undefined ? { bind: options.bind } : {}) },
      (error) => this.#onError(error),
    );
    const responder = (this.#bonjour as unknown as { server?: Partial<Responder> }).server;
    if (typeof responder?.register !== 'function' || typeof responder.unregister !== 'function' || responder.mdns === undefined) {
      this.#bonjour.destroy();
      throw new Error('bonjour-service internals changed: Bonjour#server.register/unregister/mdns not found');
    }
    this.#responder = responder as Responder;
  }

  /** Announces `proxy` and answers queries for it; returns a function that withdraws it with a goodbye packet. */
  publish(proxy: AdvertisedProxy): () => Promise<void> {
    if (this.#closing !== undefined) throw new InvalidArgumentError('MdnsAdvertiser is closed');
    if (!NODE_NAME_PATTERN.test(proxy.name)) throw new InvalidArgumentError(`Invalid node name ${JSON.stringify(proxy.name)}`);
    const key = proxy.name.toLowerCase();
    if (this.#published.has(key)) throw new InvalidArgumentError(`${proxy.name} is already published`);
    const records = proxyRecords(proxy);
    this.#published.set(key, records);
    this.#responder.register(records);
    this.#track(this.#send(records));
    let unpublished: Promise<void> | undefined;
    return () => {
      unpublished ??= this.#track(this.#unpublish(key, records));
      return unpublished;
    };
  }

  /** Sends goodbyes for everything still published and closes the socket; idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #unpublish(key: string, records: MdnsRecord[]): Promise<void> {
    if (this.#published.get(key) !== records || this.#closing !== undefined) return;
    this.#published.delete(key);
    this.#responder.unregister(records);
    // The responder unregisters by record name, so the shared `_esphomelib._tcp.local` PTR of every
    // other proxy went too: put those back.
    for (const other of this.#published.values()) this.#responder.register(other);
    await this.#send(goodbye(records));
  }

  async #shutdown(): Promise<void> {
    await Promise.allSettled([...this.#pending]);
    const remaining = [...this.#published.values()].flat();
    this.#published.clear();
    if (remaining.length > 0) {
      this.#responder.unregister(remaining);
      await this.#send(goodbye(remaining));
    }
    await new Promise<void>((resolve) => this.#bonjour.destroy(() => resolve()));
  }

  #send(records: MdnsRecord[]): Promise<void> {
    return new Promise((resolve) => {
      this.#responder.mdns.respond(records, (error) => {
        if (error) this.#onError(error);
        resolve();
      });
    });
  }

  #track(promise: Promise<void>): Promise<void> {
    this.#pending.add(promise);
    void promise.finally(() => this.#pending.delete(promise));
    return promise;
  }
}

function proxyRecords(proxy: AdvertisedProxy): MdnsRecord[] {
  const address = proxy.host ?? '127.0.0.1';
  const family = isIP(address);
  if (family === 0) throw new InvalidArgumentError(`host must be an IP address, got ${JSON.stringify(address)}`);
  if (!Number.isInteger(proxy.port) || proxy.port <= 0 || proxy.port > 65_535) throw new InvalidArgumentError(`Invalid port ${proxy.port}`);
  const serviceType = `_${ESPHOME_SERVICE_TYPE}._tcp.local`;
  const instance = `${proxy.name}.${serviceType}`;
  const hostName = `${proxy.name}.local`;
  return [
    { name: serviceType, type: 'PTR', ttl: OTHER_RECORD_TTL_S, data: instance },
    { name: instance, type: 'SRV', ttl: HOST_RECORD_TTL_S, data: { port: proxy.port, target: hostName } },
    {
      name: instance,
      type: 'TXT',
      ttl: OTHER_RECORD_TTL_S,
      data: Object.entries(proxy.txt).map(([k, v]) => Buffer.from(`${k}=${v}`)),
    },
    { name: hostName, type: family === 4 ? 'A' : 'AAAA', ttl: HOST_RECORD_TTL_S, data: address },
  ];
}

function goodbye(records: MdnsRecord[]): MdnsRecord[] {
  return records.map((record) => ({ ...record, ttl: 0 }));
}
