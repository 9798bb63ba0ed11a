import { EncryptionRequiredError, FrameError, FrameTooLargeError } from '../errors.js';
import { MAX_HEADER_VARINT_BYTES, readVarint, varintLength, writeVarint } from './varint.js';

/** First byte of every plaintext frame. */
export const PLAINTEXT_INDICATOR = 0x00;
/** First byte of a Noise frame; seeing it on a plaintext session means the device wants encryption. */
const NOISE_INDICATOR = 0x01;
/** Largest payload the firmware can emit (u16 length); anything above is a corrupt stream. */
export const MAX_PLAINTEXT_PAYLOAD = 65535;
/** Largest message id: the firmware keeps ids in 16 bits. */
export const MAX_MESSAGE_TYPE = 0xffff;
/** Smallest frame: indicator + one-byte length + one-byte type. */
const MIN_FRAME = 3;

/** Receives one decoded frame; `payload` may be a view into the decoder's input. */
export type FrameHandler = (type: number, payload: Uint8Array) => void;

/** Options of the plaintext decoder. */
export interface PlaintextDecoderOptions {
  /** Reject frames whose payload exceeds this many bytes (default MAX_PLAINTEXT_PAYLOAD). */
  maxPayload?: number;
}

/**
 * Streaming decoder of plaintext frames `00 varint(len) varint(type) payload`.
 * Call `push()` with each chunk; complete frames are handed to the handler synchronously.
 */
export class PlaintextFrameDecoder {
  readonly #onFrame: FrameHandler;
  readonly #maxPayload: number;
  #pending: Uint8Array | undefined;

  constructor(onFrame: FrameHandler, options: PlaintextDecoderOptions = {}) {
    this.#onFrame = onFrame;
    this.#maxPayload = options.maxPayload ?? MAX_PLAINTEXT_PAYLOAD;
  }

  /** Bytes held back waiting for the rest of a frame. */
  get buffered(): number {
    return this.#pending?.length ?? 0;
  }

  /** Feeds bytes; throws FrameError / EncryptionRequiredError / FrameTooLargeError on bad input. */
  push(chunk: Uint8Array): void {
    let buf = chunk;
    if (this.#pending !== undefined) {
      const joined = new Uint8Array(this.#pending.length + chunk.length);
      joined.set(this.#pending, 0);
      joined.set(chunk, this.#pending.length);
      buf = joined;
      this.#pending = undefined;
    }
    let offset = 0;
    const end = buf.length;
    while (end - offset >= MIN_FRAME) {
      const indicator = buf[offset]!;
      if (indicator !== PLAINTEXT_INDICATOR) {
        if (indicator === NOISE_INDICATOR) {
          throw new EncryptionRequiredError(
            'The device requires encryption: pass its API encryption key (psk) from the device YAML `api: encryption: key:`',
          );
        }
        throw new FrameError(`Bad plaintext indicator byte 0x${indicator.toString(16).padStart(2, '0')}`);
      }
      const len = readVarint(buf, offset + 1, MAX_HEADER_VARINT_BYTES);
      if (len.length < 0) break;
      if (len.value > this.#maxPayload) throw new FrameTooLargeError(len.value, this.#maxPayload);
      const type = readVarint(buf, offset + 1 + len.length, MAX_HEADER_VARINT_BYTES);
      if (type.length < 0) break;
      if (type.value > MAX_MESSAGE_TYPE) throw new FrameError(`Message type ${type.value} does not fit 16 bits`);
      const start = offset + 1 + len.length + type.length;
      const stop = start + len.value;
      if (stop > end) break;
      offset = stop;
      this.#onFrame(type.value, buf.subarray(start, stop));
    }
    // Copy the partial frame: the chunk may be a view into a reusable read buffer (Buffer#slice would not copy).
    if (offset < end) this.#pending = new Uint8Array(buf.subarray(offset));
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
