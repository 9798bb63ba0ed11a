/** Addresses per generation of AddressTypeCache by default: a busy site hears a few hundred devices. */
const DEFAULT_GENERATION_SIZE = 4096;

/** One open-addressed table (linear probing) at most half full; keys are address + 1 so 0 marks an empty slot. */
class Generation {
  readonly keys: Float64Array;
  readonly types: Uint32Array;
  readonly mask: number;
  readonly shift: number;
  count = 0;

  constructor(bits: number) {
    this.keys = new Float64Array(1 << bits);
    this.types = new Uint32Array(1 << bits);
    this.mask = (1 << bits) - 1;
    this.shift = 32 - bits;
  }

  /** A table with twice the slots holding the same entries. */
  grown(): Generation {
    const next = new Generation(32 - this.shift + 1);
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      if (key === 0) continue;
      const at = next.slot(key);
      next.keys[at] = key;
      next.types[at] = this.types[i]!;
    }
    next.count = this.count;
    return next;
  }

  /** Slot holding `key`, or the empty slot where it would go. */
  slot(key: number): number {
    // Fibonacci hashing over both halves of the 48-bit address.
    let i = Math.imul((key >>> 0) ^ Math.imul((key / 0x100000000) | 0, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
    const keys = this.keys;
    while (keys[i] !== key && keys[i] !== 0) i = (i + 1) & this.mask;
    return i;
  }
}

/** Slots of a new table: a proxy that hears few devices keeps a few hundred bytes, not the full table. */
const INITIAL_BITS = 5;

/**
 * The address type last heard per Bluetooth address (connect() needs it). Written for every advertisement,
 * so it avoids Map's boxed 48-bit keys; bounded so rotating private addresses cannot grow it forever: the
 * table doubles up to `generationSize` addresses, then becomes the previous generation and a new one starts
 * (the one before is dropped).
 */
export class AddressTypeCache {
  readonly generationSize: number;
  #current = new Generation(INITIAL_BITS);
  #previous: Generation | undefined;

  constructor(generationSize: number = DEFAULT_GENERATION_SIZE) {
    this.generationSize = generationSize;
  }

  /** Records `type` as the latest address type of `address`. */
  set(address: number, type: number): void {
    const key = address + 1;
    let generation = this.#current;
    let i = generation.slot(key);
    if (generation.keys[i] === 0) {
      if (generation.count >= this.generationSize) {
        this.#previous = generation;
        generation = this.#current = new Generation(INITIAL_BITS);
      } else if (generation.count * 2 + 2 > generation.keys.length) {
        generation = this.#current = generation.grown();
      }
      i = generation.slot(key);
      generation.keys[i] = key;
      generation.count++;
    }
    generation.types[i] = type;
  }

  /** The latest address type heard for `address`, if it is still remembered. */
  get(address: number): number | undefined {
    const key = address + 1;
    for (const generation of [this.#current, this.#previous]) {
      if (generation === undefined) continue;
      const i = generation.slot(key);
      if (generation.keys[i] === key) return generation.types[i];
    }
    return undefined;
  }
}
