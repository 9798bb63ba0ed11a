import { parseMac } from '../bluetooth/address.js';
import { InvalidArgumentError } from '../errors.js';

/** Who may do what over MQTT, and how much: anyone who can publish on the broker sends these commands. */
export interface CommandPolicyOptions {
  /** Devices whose characteristics may be read and subscribed to: MACs, or `*` for every device (default: none). */
  allowRead?: readonly string[] | undefined;
  /** Devices that may be written to, by MAC only: a write can open a lock, so there is no wildcard (default: none). */
  allowWrite?: readonly string[] | undefined;
  /** Commands accepted per second over the gateway, sustained (default 2). */
  ratePerSecond?: number | undefined;
  /** Commands accepted at once after a quiet spell (default 10). */
  burst?: number | undefined;
  /** Commands carried out at the same time; more wait (default 4: each holds a proxy connection slot). */
  maxInFlight?: number | undefined;
  /** Commands waiting for their turn; beyond that they are refused as rate-limited (default 16). */
  maxQueued?: number | undefined;
  /** Notification subscriptions open at once (default 4: each keeps a connection slot). */
  maxNotifications?: number | undefined;
  /** Deadline of one read or write, connect included (default 30 s). */
  commandTimeout?: number | undefined;
}

/** Defaults of CommandPolicyOptions, each a bound on what strangers on the broker can make the fleet do. */
export const COMMAND_DEFAULTS = {
  ratePerSecond: 2,
  burst: 10,
  maxInFlight: 4,
  maxQueued: 16,
  maxNotifications: 4,
  /** bleak-retry-connector's connect budget plus a read: a device that needs longer is not reachable. */
  commandTimeout: 30_000,
} as const;

/** The allow lists, decoded once. */
export class AllowList {
  readonly #readAll: boolean;
  readonly #read: ReadonlySet<number>;
  readonly #write: ReadonlySet<number>;

  constructor(allowRead: readonly string[] = [], allowWrite: readonly string[] = []) {
    this.#readAll = allowRead.includes('*');
    this.#read = new Set(allowRead.filter((m) => m !== '*').map((m) => macOf(m, 'allowRead')));
    if (allowWrite.includes('*')) {
      throw new InvalidArgumentError('allowWrite takes MAC addresses only: writes can open locks, so each device is allowed by name');
    }
    this.#write = new Set(allowWrite.map((m) => macOf(m, 'allowWrite')));
  }

  /** True when no command of any kind is allowed (then the gateway does not even subscribe to the command topic). */
  get empty(): boolean {
    return !this.#readAll && this.#read.size === 0 && this.#write.size === 0;
  }

  /** May `address` be read (or subscribed to)? A device allowed to be written may also be read. */
  canRead(address: number): boolean {
    return this.#readAll || this.#read.has(address) || this.#write.has(address);
  }

  /** May `address` be written? */
  canWrite(address: number): boolean {
    return this.#write.has(address);
  }
}

/** A token bucket: `rate` tokens a second up to `burst`; take() spends one when there is one. */
export class TokenBucket {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #at: number;

  constructor(rate: number, burst: number, now = performance.now()) {
    if (!(rate > 0) || !(burst >= 1)) throw new InvalidArgumentError(`rate must be > 0 and burst >= 1, got ${rate} and ${burst}`);
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#at = now;
  }

  /** Spends a token if one is available. */
  take(now = performance.now()): boolean {
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

function macOf(text: string, option: string): number {
  try {
    return parseMac(text);
  } catch {
    throw new InvalidArgumentError(
      `${option}: ${JSON.stringify(text)} is not a MAC address (AA:BB:CC:DD:EE:FF${option === 'allowRead' ? ' or *' : ''})`,
    );
  }
}
