import { InvalidArgumentError } from '../errors.js';
import { MAX_ADVERTISEMENT_LENGTH, type PeripheralProfile, splitAdStructures } from './profile.js';

/** One advertising report as the proxy forwards it. */
export interface SimulatedAdvertisement {
  readonly address: number;
  readonly addressType: number;
  readonly rssi: number;
  /** Shared with the profile: do not mutate. */
  readonly data: Uint8Array;
}

/** What a peripheral puts on the air and when: payloads in rotation, RSSI jitter, a random first phase. */
export class AdvertisingSchedule {
  readonly #profile: PeripheralProfile;
  readonly #random: () => number;
  #payloads: readonly Uint8Array[];
  #index = 0;
  #nextAt = 0;
  #advertisedOnce = false;
  #enabled = true;

  constructor(profile: PeripheralProfile, random: () => number) {
    this.#profile = profile;
    this.#random = random;
    this.#payloads = profile.advertisements;
  }

  /** The AD payloads sent in rotation now. */
  get payloads(): readonly Uint8Array[] {
    return this.#payloads;
  }

  /** Whether advertising is switched on. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** When the next advertisement is due, in the clock passed to next(); 0 before the first one. */
  get nextAt(): number {
    return this.#nextAt;
  }

  /** Switches advertising on, optionally with new payloads (each 1..62 bytes of AD structures). */
  start(payloads?: readonly Uint8Array[]): void {
    if (payloads !== undefined) {
      const mac = this.#profile.mac;
      if (payloads.length === 0) throw new InvalidArgumentError(`${mac}: advertise() needs at least one payload`);
      for (const payload of payloads) {
        if (payload.length === 0 || payload.length > MAX_ADVERTISEMENT_LENGTH) {
          throw new InvalidArgumentError(`${mac}: an advertisement carries 1..${MAX_ADVERTISEMENT_LENGTH} bytes, got ${payload.length}`);
        }
        try {
          splitAdStructures(payload);
        } catch (cause) {
          throw new InvalidArgumentError(`${mac}: not a sequence of AD structures: ${(cause as Error).message}`);
        }
      }
      this.#payloads = payloads.map((p) => p.slice());
      this.#index = 0;
    }
    this.#enabled = true;
  }

  /** Switches advertising off. */
  stop(): void {
    this.#enabled = false;
  }

  /**
   * The next report: payloads in rotation, RSSI with jitter. The first call picks a random phase
   * within one interval so a neighbourhood of peripherals does not advertise in lockstep.
   */
  next(now: number): SimulatedAdvertisement {
    const { rssi, rssiJitter, advertisingIntervalMs, address, addressType } = this.#profile;
    const data = this.#payloads[this.#index % this.#payloads.length]!;
    this.#index = (this.#index + 1) % this.#payloads.length;
    const jitter = rssiJitter === 0 ? 0 : Math.round((this.#random() * 2 - 1) * rssiJitter);
    const interval = this.#advertisedOnce ? advertisingIntervalMs : Math.max(1, Math.floor(this.#random() * advertisingIntervalMs));
    this.#advertisedOnce = true;
    this.#nextAt = now + interval;
    return { address, addressType, rssi: Math.min(0, Math.max(-127, rssi + jitter)), data };
  }
}

/** Deterministic uniform [0, 1) generator (xorshift32) for reproducible jitter in tests and demos. */
export function seededRandom(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}
