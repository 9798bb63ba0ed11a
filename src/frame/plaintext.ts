import { EncryptionRequiredError, FrameError, FrameTooLargeError } from '../errors.js';
import { MAX_HEADER_VARINT_BYTES, readVarint, varintLength, writeVarint } from './varint.js';

/** First byte of every plaintext frame. */
export const PLAINTEXT_INDICATOR = 0x00;
/** First byte of a Noise frame; seeing it on a plaintext session means the device wants encryption. */
const NOISE_INDICATOR = 0x01;
/** Largest payload the firmware can emit (u16 length); anything above is a corrupt stream. */
export const MAX_PLAINTEXT_PAYLOAD = 65535;
/**
 * Largest payload an ESP32 (and every platform but ESP8266) accepts from a client; a larger frame makes it drop the
 * connection (spec §3). A device-side decoder uses it: a client has no business sending more.
 */
export const DEVICE_MAX_PLAINTEXT_PAYLOAD = 32768;
/** Largest message id: the firmware keeps ids in 16 bits. */
export const MAX_MESSAGE_TYPE = 0xffff;
/** Smallest frame: indicator + one-byte length + one-byte type. */
const MIN_FRAME = 3;
/** Longest header: indicator + two varints of at most MAX_HEADER_VARINT_BYTES. */
const MAX_FRAME_HEADER = 1 + 2 * MAX_HEADER_VARINT_BYTES;
/** First allocation for a frame split across chunks; it then doubles with what arrives, up to the frame's size. */
const MIN_PENDING_BYTES = 256;
const EMPTY = new Uint8Array(0);

/** Receives one decoded frame; `payload` may be a view into the decoder's input. */
export type FrameHandler = (type: number, payload: Uint8Array) => void;

/** Options of the plaintext decoder. */
export interface PlaintextDecoderOptions {
  /** Reject frames whose payload exceeds this many bytes (default MAX_PLAINTEXT_PAYLOAD), as soon as the header is read. */
  maxPayload?: number;
  /** Asked after each frame: true makes push() stop there and return how much of the chunk it used (backpressure). */
  yieldWhen?: () => boolean;
}

interface Header {
  /** Header bytes (indicator and both varints). */
  size: number;
  payload: number;
  type: number;
}

/**
 * Streaming decoder of plaintext frames `00 varint(len) varint(type) payload`.
 * Call `push()` with each chunk; complete frames are handed to the handler synchronously. A frame split across
 * chunks is assembled in a buffer that grows with the bytes that arrived, never with the length a header declares.
 */
export class PlaintextFrameDecoder {
  readonly #onFrame: FrameHandler;
  readonly #maxPayload: number;
  readonly #yieldWhen: (() => boolean) | undefined;
  #pending: Uint8Array = EMPTY;
  #pendingLength = 0;
  /** Header of the pending frame once it is complete. */
  #header: Header | undefined;

  constructor(onFrame: FrameHandler, options: PlaintextDecoderOptions = {}) {
    this.#onFrame = onFrame;
    this.#maxPayload = options.maxPayload ?? MAX_PLAINTEXT_PAYLOAD;
    this.#yieldWhen = options.yieldWhen;
  }

  /** Bytes held back waiting for the rest of a frame. */
  get buffered(): number {
    return this.#pendingLength;
  }

  /** Bytes allocated for the frame held back (at most twice what arrived of it, and never above its size). */
  get allocated(): number {
    return this.#pending.length;
  }

  /**
   * Feeds bytes; throws FrameError / EncryptionRequiredError / FrameTooLargeError on bad input. Returns how many
   * bytes of `chunk` it used: all of them, unless `yieldWhen` asked it to stop after a frame (push the rest later).
   */
  push(chunk: Uint8Array): number {
    let offset = 0;
    if (this.#pendingLength > 0) {
      offset = this.#completePending(chunk);
      if (this.#pendingLength > 0) return chunk.length;
      if (this.#yieldWhen?.() === true) return offset;
    }
    const end = chunk.length;
    while (end - offset >= MIN_FRAME) {
      const header = this.#readHeader(chunk, offset, end);
      if (header === undefined) break;
      const start = offset + header.size;
      const stop = start + header.payload;
      if (stop > end) break;
      offset = stop;
      this.#onFrame(header.type, chunk.subarray(start, stop));
      if (this.#yieldWhen?.() === true) return offset;
    }
    if (offset < end) this.#startPending(chunk.subarray(offset));
    return end;
  }

  /** Parses a header at `offset`; undefined when it is not complete yet. Checks the limits as soon as they can be. */
  #readHeader(buf: Uint8Array, offset: number, end: number): Header | undefined {
    const indicator = buf[offset]!;
    if (indicator !== PLAINTEXT_INDICATOR) {
      if (indicator === NOISE_INDICATOR) {
        throw new EncryptionRequiredError(
          'The device requires encryption: pass its API encryption key (psk) from the device YAML `api: encryption: key:`',
        );
      }
      throw new FrameError(`Bad plaintext indicator byte 0x${indicator.toString(16).padStart(2, '0')}`);
    }
    const view = end === buf.length ? buf : buf.subarray(0, end);
    const len = readVarint(view, offset + 1, MAX_HEADER_VARINT_BYTES);
    if (len.length < 0) return undefined;
    if (len.value > this.#maxPayload) throw new FrameTooLargeError(len.value, this.#maxPayload);
    const type = readVarint(view, offset + 1 + len.length, MAX_HEADER_VARINT_BYTES);
    if (type.length < 0) return undefined;
    if (type.value > MAX_MESSAGE_TYPE) throw new FrameError(`Message type ${type.value} does not fit 16 bits`);
    return { size: 1 + len.length + type.length, payload: len.value, type: type.value };
  }

  /** Keeps the start of a frame (copied: the chunk may be a view into a reusable read buffer). */
  #startPending(rest: Uint8Array): void {
    const header = rest.length >= MIN_FRAME ? this.#readHeader(rest, 0, rest.length) : undefined;
    this.#header = header;
    const total = header === undefined ? MAX_FRAME_HEADER : header.size + header.payload;
    this.#pending = new Uint8Array(Math.min(total, Math.max(rest.length * 2, MIN_PENDING_BYTES)));
    this.#pending.set(rest, 0);
    this.#pendingLength = rest.length;
  }

  /** Adds what the pending frame still needs from `chunk`; emits it once whole. Returns the bytes of `chunk` used. */
  #completePending(chunk: Uint8Array): number {
    let used = 0;
    if (this.#header === undefined) {
      // At most the longest header: it then either parses or is refused.
      used = Math.min(chunk.length, MAX_FRAME_HEADER - this.#pendingLength);
      this.#append(chunk.subarray(0, used), MAX_FRAME_HEADER);
      if (this.#pendingLength < MIN_FRAME) return used;
      const header = this.#readHeader(this.#pending, 0, this.#pendingLength);
      if (header === undefined) return used;
      this.#header = header;
      const total = header.size + header.payload;
      if (this.#pendingLength > total) {
        // Those bytes came from this chunk (the header was incomplete before it): they start the next frame.
        used -= this.#pendingLength - total;
        this.#pendingLength = total;
      }
    }
    const header = this.#header;
    const total = header.size + header.payload;
    const take = Math.min(total - this.#pendingLength, chunk.length - used);
    this.#append(chunk.subarray(used, used + take), total);
    used += take;
    if (this.#pendingLength === total) {
      const frame = this.#pending;
      this.#pending = EMPTY;
      this.#pendingLength = 0;
      this.#header = undefined;
      this.#onFrame(header.type, frame.subarray(header.size, total));
    }
    return used;
  }

  #append(bytes: Uint8Array, cap: number): void {
    const needed = this.#pendingLength + bytes.length;
    if (needed > this.#pending.length) {
      const grown = new Uint8Array(Math.max(needed, Math.min(cap, this.#pending.length * 2)));
      grown.set(this.#pending.subarray(0, this.#pendingLength), 0);
      this.#pending = grown;
    }
    this.#pending.set(bytes, this.#pendingLength);
    this.#pendingLength = needed;
  }
}

/** Encodes one plaintext frame. */
export function encodePlaintextFrame(type: number, payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_PLAINTEXT_PAYLOAD) throw new FrameTooLargeError(payload.length, MAX_PLAINTEXT_PAYLOAD);
  const header = 1 + varintLength(payload.length) + varintLength(type);
  const out = new Uint8Array(header + payload.length);
  let offset = 1;
  offset = writeVarint(out, offset, payload.length);
  offset = writeVarint(out, offset, type);
  out.set(payload, offset);
  return out;
}
