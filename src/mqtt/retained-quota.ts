/** Who published a retained message: the gateway in this process, or any client of the broker. */
type Owner = 'gateway' | 'client';

/**
 * The embedded broker's bound on retained messages (topics and payload bytes). Only what clients retain counts:
 * the gateway's own retained state (availability, a few topics per proxy, discovery) is bounded by the fleet, and
 * a client filling the store must not stop the gateway from announcing itself.
 */
export class RetainedQuota {
  readonly #maxTopics: number;
  readonly #maxBytes: number;
  readonly #held = new Map<string, { bytes: number; owner: Owner }>();
  #clientTopics = 0;
  #clientBytes = 0;

  constructor(maxTopics: number, maxBytes: number) {
    this.#maxTopics = maxTopics;
    this.#maxBytes = maxBytes;
  }

  /** Retained topics clients hold now (the gateway's own not counted). */
  get clientTopics(): number {
    return this.#clientTopics;
  }

  /** Whether a retained publish of `bytes` on `topic` by `owner` may be stored; records it when so (0 bytes clears). */
  admit(topic: string, bytes: number, owner: Owner): boolean {
    const before = this.#held.get(topic);
    const freedTopics = before?.owner === 'client' ? 1 : 0;
    const freedBytes = before?.owner === 'client' ? before.bytes : 0;
    if (bytes === 0) {
      this.#held.delete(topic);
      this.#clientTopics -= freedTopics;
      this.#clientBytes -= freedBytes;
      return true;
    }
    if (owner === 'client') {
      const topics = this.#clientTopics - freedTopics + 1;
      if (topics > this.#maxTopics || this.#clientBytes - freedBytes + bytes > this.#maxBytes) return false;
    }
    this.#held.set(topic, { bytes, owner });
    this.#clientTopics += (owner === 'client' ? 1 : 0) - freedTopics;
    this.#clientBytes += (owner === 'client' ? bytes : 0) - freedBytes;
    return true;
  }
}
