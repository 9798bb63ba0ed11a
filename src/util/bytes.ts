/** Concatenates byte arrays into one new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Default block size of ByteSlab: small enough that a few retained views pin little memory (Node's Buffer pool uses 8 KiB). */
const DEFAULT_SLAB_BYTES = 8192;

/**
 * Copies short byte runs into shared blocks instead of one ArrayBuffer each. A fresh ArrayBuffer costs about a
 * microsecond (an off-heap allocation the GC must track); copying into a block is a memcpy. A returned view keeps
 * its whole block alive, so callers that retain views for long should `slice()` them.
 */
export class ByteSlab {
  readonly blockBytes: number;
  #block: Uint8Array;
  #used = 0;

  constructor(blockBytes: number = DEFAULT_SLAB_BYTES) {
    this.blockBytes = blockBytes;
    this.#block = new Uint8Array(blockBytes);
  }

  /** A copy of `bytes` that no later write to `bytes` can change. */
  copy(bytes: Uint8Array): Uint8Array {
    const length = bytes.length;
    // Runs over a quarter block get their own buffer so one large run cannot waste most of a block.
    if (length > this.blockBytes >>> 2) return new Uint8Array(bytes);
    if (this.#used + length > this.blockBytes) {
      this.#block = new Uint8Array(this.blockBytes);
      this.#used = 0;
    }
    const start = this.#used;
    this.#used = start + length;
    const out = this.#block.subarray(start, this.#used);
    out.set(bytes);
    return out;
  }
}
