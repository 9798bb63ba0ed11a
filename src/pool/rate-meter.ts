/** Length of one counting bucket. */
const BUCKET_MS = 1_000;
/** Buckets in the window: a 10 s rolling rate is steady enough for a table yet follows a proxy that went quiet. */
const BUCKETS = 10;

/**
 * A cheap rolling event rate: counts per one-second bucket in a ring of ten. `mark()` costs a
 * division and an increment; it takes the caller's clock (advertisements carry their batch's time).
 */
export class RateMeter {
  readonly #counts = new Uint32Array(BUCKETS);
  /** Bucket number (ms / BUCKET_MS) of the newest bucket. */
  #head = -1;
  #started = -1;

  /** Counts one event at `now` (ms). */
  mark(now: number): void {
    const bucket = Math.floor(now / BUCKET_MS);
    if (bucket !== this.#head) this.#advance(bucket);
    this.#counts[bucket % BUCKETS]!++;
  }

  /** Events per second over the last nine to ten seconds (or since the first event, when that is sooner). */
  perSecond(now: number = Date.now()): number {
    const bucket = Math.floor(now / BUCKET_MS);
    if (this.#head < 0) return 0;
    if (bucket !== this.#head) this.#advance(bucket);
    let total = 0;
    for (const count of this.#counts) total += count;
    // The ring holds nine whole buckets and the part of the current one that has passed.
    const covered = (BUCKETS - 1) * BUCKET_MS + (now - bucket * BUCKET_MS);
    const windowMs = Math.max(BUCKET_MS, Math.min(covered, now - this.#started));
    return Math.round((total * 1000 * 10) / windowMs) / 10;
  }

  #advance(bucket: number): void {
    if (this.#head < 0) this.#started = bucket * BUCKET_MS;
    // Clear the buckets skipped since the last event (all of them after a long silence).
    const gap = this.#head < 0 ? BUCKETS : Math.min(BUCKETS, bucket - this.#head);
    for (let i = 1; i <= gap; i++) this.#counts[(this.#head + i + BUCKETS * 2) % BUCKETS] = 0;
    if (this.#head < 0) this.#counts.fill(0);
    this.#head = bucket;
  }
}
