// Shared pieces of `npm run fuzz`: the seeded generator, byte mutators, the build under test and the crash rules.
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** Imports a module of the build under test (`npm run build` first). */
export const loadDist = (file) => import(pathToFileURL(resolve(ROOT, 'dist', file)).href);

const { EspApiError } = await loadDist('errors.js');

/** Thrown by a target when an invariant fails (output outside the input, split feed ≠ whole feed...). */
export class InvariantError extends Error {
  name = 'InvariantError';
}

/** Fails the current input with an InvariantError unless `condition` holds. */
export function check(condition, message) {
  if (!condition) throw new InvariantError(typeof message === 'function' ? message() : message);
}

/** The code of one of our typed errors, or undefined for anything else (which is a crash). */
export function typedCode(error) {
  return error instanceof EspApiError ? error.code : undefined;
}

/**
 * sfc32: a small, fast, well-mixed 32-bit generator. Every input is generated from its own generator seeded
 * with (run seed, target, input index), so `--seed S --target T --index I` rebuilds exactly one input.
 */
export class Rng {
  #a;
  #b;
  #c;
  #d;

  constructor(seed, stream = 0, index = 0) {
    this.#a = seed | 0;
    this.#b = stream | 0;
    this.#c = index | 0;
    this.#d = 0x9e3779b9;
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform 32-bit unsigned integer. */
  u32() {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** An integer in [0, n). */
  int(n) {
    return n <= 1 ? 0 : this.u32() % n;
  }

  /** True with probability p. */
  chance(p) {
    return this.u32() < p * 0x1_0000_0000;
  }

  /** One element of a non-empty array. */
  pick(array) {
    return array[this.int(array.length)];
  }

  /** `length` random bytes. */
  bytes(length) {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/** Stable 32-bit hash of a target name: its generator stream. */
export function streamOf(name) {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Byte values that sit on boundaries of varints, lengths, indicators and tags. */
const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x07, 0x08, 0x0a, 0x10, 0x12, 0x1a, 0x22, 0x7f, 0x80, 0x81, 0xfe, 0xff];
/** Numbers whose varint or big-endian forms hit limits: 16-bit, 31-bit, 32-bit, 48-bit and 53-bit edges. */
const INTERESTING_NUMBERS = [
  0,
  1,
  127,
  128,
  255,
  256,
  16383,
  16384,
  65535,
  65536,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 48 - 1,
  2 ** 53 - 1,
];

/** Varint encoding of a non-negative number (up to 2^53). */
export function varint(value) {
  const out = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Uint8Array.from(out);
}

function splice(input, at, remove, insert) {
  const out = new Uint8Array(input.length - remove + insert.length);
  out.set(input.subarray(0, at), 0);
  out.set(insert, at);
  out.set(input.subarray(at + remove), at + insert.length);
  return out;
}

/** Applies 1–4 random byte-level mutations (flip, set, insert, delete, duplicate, splice, varint edge) to a copy. */
export function mutate(rng, input, corpus, maxLength = 4096) {
  let out = new Uint8Array(input);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(out.length + 1);
    switch (rng.int(10)) {
      case 0:
        if (out.length > 0) out[rng.int(out.length)] ^= 1 << rng.int(8);
        break;
      case 1:
        if (out.length > 0) out[rng.int(out.length)] = rng.pick(INTERESTING_BYTES);
        break;
      case 2:
        if (out.length > 0) out[rng.int(out.length)] = rng.u32() & 0xff;
        break;
      case 3:
        out = splice(out, at, 0, rng.bytes(1 + rng.int(8)));
        break;
      case 4:
        out = splice(out, at, Math.min(out.length - at, 1 + rng.int(16)), new Uint8Array(0));
        break;
      case 5: {
        const from = rng.int(out.length + 1);
        out = splice(out, at, 0, out.slice(from, from + 1 + rng.int(32)));
        break;
      }
      case 6: {
        const other = rng.pick(corpus);
        const from = rng.int(other.length + 1);
        out = splice(out, at, rng.int(Math.min(8, out.length - at) + 1), other.subarray(from, from + 1 + rng.int(64)));
        break;
      }
      case 7:
        out = splice(out, at, Math.min(out.length - at, rng.int(3)), varint(rng.pick(INTERESTING_NUMBERS)));
        break;
      case 8:
        out = out.subarray(0, rng.int(out.length + 1));
        break;
      default: {
        // A big-endian u16 edge: Noise lengths and inner headers are u16be.
        const n = rng.pick(INTERESTING_NUMBERS) & 0xffff;
        out = splice(out, at, Math.min(out.length - at, 2), Uint8Array.of(n >>> 8, n & 0xff));
      }
    }
  }
  return out.length > maxLength ? out.subarray(0, maxLength) : out;
}

/**
 * Share of fresh random inputs beside mutated corpus entries: random bytes find what the corpus's shape hides,
 * but mostly die in the first length check, so they get the smaller part.
 */
const RANDOM_SHARE = 0.2;

/** A fresh random input (RANDOM_SHARE of them) or a mutated corpus entry. */
export function generateBytes(rng, corpus, maxRandom = 256) {
  if (corpus.length === 0 || rng.chance(RANDOM_SHARE)) return rng.bytes(rng.int(maxRandom + 1));
  return mutate(rng, rng.pick(corpus), corpus);
}

/** Lower-case hex of bytes. */
export function toHex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Cuts bytes into 1–4 chunks at random points (for split-feed checks). */
export function randomChunks(rng, bytes) {
  const cuts = [];
  const n = rng.int(4);
  for (let i = 0; i < n; i++) cuts.push(rng.int(bytes.length + 1));
  cuts.sort((a, b) => a - b);
  const chunks = [];
  let from = 0;
  for (const cut of cuts) {
    chunks.push(bytes.subarray(from, cut));
    from = cut;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

/** True when `inner` is a view that lies wholly inside `outer`'s bytes. */
export function within(inner, outer) {
  return (
    inner.buffer === outer.buffer &&
    inner.byteOffset >= outer.byteOffset &&
    inner.byteOffset + inner.byteLength <= outer.byteOffset + outer.byteLength
  );
}
