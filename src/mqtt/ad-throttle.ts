import { InvalidArgumentError } from '../errors.js';

/** How often a device's advertisements are published (OpenMQTTGateway: one report per device per scan interval). */
export interface ThrottleOptions {
  /** At most one publication per device and proxy per this many ms (default 0: every advertisement). */
  interval?: number | undefined;
  /** Skip an advertisement whose content (name, manufacturer and service data, TX power) equals the last one published. */
  changesOnly?: boolean | undefined;
  /**
   * With `changesOnly`, publish an unchanged device again after this many ms, so presence consumers keep seeing it
   * (default 120 s: OpenMQTTGateway's `presenceawaytimer`, after which a silent tracker counts as away).
   */
  republishInterval?: number | undefined;
  /** Most device/proxy pairs remembered; the least recently published is forgotten first (default 4096). */
  maxDevices?: number | undefined;
}

/** OpenMQTTGateway's default `presenceawaytimer` (ms). */
export const DEFAULT_REPUBLISH_INTERVAL_MS = 120_000;
/** Two thousand devices heard by two proxies each: more than a busy home, bounded under address-rotating phones. */
export const DEFAULT_THROTTLE_DEVICES = 4096;

interface Last {
  at: number;
  key: string;
}

/** Decides per device and proxy whether an advertisement is published now; bounded LRU memory. */
export class AdThrottle {
  readonly #interval: number;
  readonly #changesOnly: boolean;
  readonly #republish: number;
  readonly #max: number;
  readonly #last = new Map<string, Last>();

  constructor(options: ThrottleOptions = {}) {
    this.#interval = nonNegative(options.interval ?? 0, 'interval');
    this.#changesOnly = options.changesOnly === true;
    this.#republish = nonNegative(options.republishInterval ?? DEFAULT_REPUBLISH_INTERVAL_MS, 'republishInterval');
    const max = options.maxDevices ?? DEFAULT_THROTTLE_DEVICES;
    if (!Number.isInteger(max) || max < 1) throw new InvalidArgumentError(`maxDevices must be a positive integer, got ${max}`);
    this.#max = max;
  }

  /** True when nothing is filtered (every advertisement is published): the caller can skip the bookkeeping. */
  get passThrough(): boolean {
    return this.#interval === 0 && !this.#changesOnly;
  }

  /** Device/proxy pairs remembered. */
  get size(): number {
    return this.#last.size;
  }

  /** Whether the advertisement of `device` heard by `proxy` with content `key` at `now` is published; records it when so. */
  admit(device: number, proxy: string, key: string, now: number): boolean {
    return this.verdict(device, proxy, key, now) === 'publish';
  }

  /**
   * Like admit(), and says why not: `tooSoon` (within `interval`) or `unchanged` (the same content, with
   * `changesOnly`; what changed may still be the RSSI, which presence consumers want).
   */
  verdict(device: number, proxy: string, key: string, now: number): 'publish' | 'tooSoon' | 'unchanged' {
    const id = `${device}@${proxy}`;
    const last = this.#last.get(id);
    if (last !== undefined) {
      if (now - last.at < this.#interval) return 'tooSoon';
      if (this.#changesOnly && last.key === key && now - last.at < this.#republish) return 'unchanged';
      // Re-inserting keeps the map in least-recently-published order.
      this.#last.delete(id);
      last.at = now;
      last.key = key;
      this.#last.set(id, last);
      return 'publish';
    }
    if (this.#last.size >= this.#max) this.#last.delete(this.#last.keys().next().value!);
    this.#last.set(id, { at: now, key });
    return 'publish';
  }
}

function nonNegative(value: number, name: string): number {
  if (!Number.isFinite(value) || value < 0) throw new InvalidArgumentError(`${name} must be a non-negative number of ms, got ${value}`);
  return value;
}
