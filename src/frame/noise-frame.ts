import {
  DevicePlaintextError,
  FrameError,
  FrameTooLargeError,
  HandshakeError,
  InvalidArgumentError,
  InvalidEncryptionKeyError,
} from '../errors.js';
import { concatBytes } from '../util/bytes.js';

/** First byte of every Noise frame. */
export const NOISE_INDICATOR = 0x01;
/** First byte of a plaintext frame: seeing it on a Noise session means the device has no encryption key. */
const PLAINTEXT_INDICATOR = 0x00;
/** Indicator byte plus the u16 big-endian body length. */
export const NOISE_HEADER_SIZE = 3;
/** Largest body the u16 length can express. */
export const MAX_NOISE_FRAME_BODY = 65535;
/** The device rejects handshake-phase bodies above this ("Bad handshake packet len"). */
export const MAX_HANDSHAKE_BODY = 128;
/** Largest encrypted body an ESP32 accepts after the handshake (firmware receive buffer). */
export const DEVICE_MAX_ENCRYPTED_BODY = 32768;
/** Same limit on ESP8266, which has far less RAM. */
export const DEVICE_MAX_ENCRYPTED_BODY_ESP8266 = 8192;
/** Poly1305 tag at the end of every encrypted body. */
export const NOISE_TAG_SIZE = 16;
/** Encrypted inner header: message type u16be, payload length u16be. */
export const NOISE_INNER_HEADER_SIZE = 4;
/** Largest protobuf payload one encrypted frame can carry: 65535 - 16 - 4. */
export const MAX_NOISE_PAYLOAD = MAX_NOISE_FRAME_BODY - NOISE_TAG_SIZE - NOISE_INNER_HEADER_SIZE;
/** Server-hello protocol byte for Noise_NNpsk0_25519_ChaChaPoly_SHA256, the only one defined. */
export const SERVER_HELLO_PROTOCOL_NNPSK0 = 0x01;
/** Handshake body status: the rest is a Noise message. */
export const HANDSHAKE_STATUS_OK = 0x00;
/** Handshake body status: the rest is an ASCII rejection reason, then the sender closes. */
export const HANDSHAKE_STATUS_REJECT = 0x01;
/** Largest message id: the inner header holds it in 16 bits. */
const MAX_MESSAGE_TYPE = 0xffff;

/** Firmware rejection: message 1 failed AEAD verification, i.e. the PSK (or prologue) differs. */
export const HANDSHAKE_REJECT_MAC_FAILURE = 'Handshake MAC failure';
/** Firmware rejection: any other Noise error while reading message 1. */
export const HANDSHAKE_REJECT_ERROR = 'Handshake error';
/** Firmware rejection: a frame's first byte was not 0x01 (e.g. a plaintext client). */
export const HANDSHAKE_REJECT_BAD_INDICATOR = 'Bad indicator byte';
/** Firmware rejection: a handshake-phase body exceeded MAX_HANDSHAKE_BODY. */
export const HANDSHAKE_REJECT_BAD_PACKET_LEN = 'Bad handshake packet len';
/** Firmware rejection: the handshake body was empty. */
export const HANDSHAKE_REJECT_EMPTY = 'Empty handshake message';
/** Firmware rejection: the handshake body's status byte was not 0x00. */
export const HANDSHAKE_REJECT_BAD_ERROR_BYTE = 'Bad handshake error byte';

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Bytes of a device string to show in an error message (keeps messages readable). */
const MAX_REASON_CHARS = 200;

/** Receives one frame body; it may be a view into the pushed chunk. */
export type NoiseBodyHandler = (body: Uint8Array) => void;

/** Options of the Noise frame decoder. */
export interface NoiseFrameDecoderOptions {
  /** Refuse bodies above this many bytes as soon as the header is read (default MAX_NOISE_FRAME_BODY; changeable with `maxBody`). */
  maxBody?: number;
  /** Asked after each frame: true makes push() stop there and return how much of the chunk it used (backpressure). */
  yieldWhen?: () => boolean;
}

/** First allocation for a body split across chunks; it then doubles with what arrives, up to the body's size. */
const MIN_BODY_BYTES = 256;

/**
 * Streaming decoder of Noise outer frames `01 len_hi len_lo body`. A frame wholly inside one chunk is
 * handed over as a subarray (no copy); a split frame is assembled in a buffer that grows with the bytes that
 * arrived (at most twice them, never above the frame's size): a header alone reserves nothing.
 */
export class NoiseFrameDecoder {
  /** Bodies above this are refused at the header (FrameTooLargeError); a responder lowers it during the handshake. */
  maxBody: number;
  readonly #onBody: NoiseBodyHandler;
  readonly #yieldWhen: (() => boolean) | undefined;
  readonly #header = new Uint8Array(NOISE_HEADER_SIZE);
  #headerFill = 0;
  /** Length of the body being assembled, or -1 between frames. */
  #bodyLength = -1;
  #body: Uint8Array = EMPTY;
  #bodyFill = 0;
  #frames = 0;
  #failed: Error | undefined;

  constructor(onBody: NoiseBodyHandler, options: NoiseFrameDecoderOptions = {}) {
    this.#onBody = onBody;
    this.maxBody = options.maxBody ?? MAX_NOISE_FRAME_BODY;
    this.#yieldWhen = options.yieldWhen;
  }

  /** Bytes held back waiting for the rest of a frame. */
  get buffered(): number {
    return this.#headerFill + this.#bodyFill;
  }

  /** Bytes allocated for the frame held back (the fixed 3-byte header buffer aside). */
  get allocated(): number {
    return this.#body.length;
  }

  /**
   * Feeds bytes; throws DevicePlaintextError when the peer answers in plaintext, FrameError on a bad indicator,
   * FrameTooLargeError on a header above `maxBody`. Returns how many bytes of `chunk` it used: all of them, unless
   * `yieldWhen` asked it to stop after a frame (push the rest later).
   */
  push(chunk: Uint8Array): number {
    if (this.#failed !== undefined) throw new FrameError('Noise frame decoder already failed', { cause: this.#failed });
    let offset = 0;
    const end = chunk.length;
    while (offset < end) {
      if (this.#bodyLength >= 0) {
        const take = Math.min(this.#bodyLength - this.#bodyFill, end - offset);
        this.#append(chunk.subarray(offset, offset + take));
        offset += take;
        if (this.#bodyFill === this.#bodyLength) {
          const body = this.#body.subarray(0, this.#bodyLength);
          this.#body = EMPTY;
          this.#bodyFill = 0;
          this.#bodyLength = -1;
          this.#emit(body);
          if (this.#yieldWhen?.() === true) return offset;
        }
        continue;
      }
      if (this.#headerFill === 0 && end - offset >= NOISE_HEADER_SIZE) {
        // Fast path: the header is whole inside this chunk.
        this.#checkIndicator(chunk[offset]!);
        const length = this.#checkLength((chunk[offset + 1]! << 8) | chunk[offset + 2]!);
        const start = offset + NOISE_HEADER_SIZE;
        if (end - start >= length) {
          offset = start + length;
          this.#emit(chunk.subarray(start, offset));
          if (this.#yieldWhen?.() === true) return offset;
        } else {
          this.#bodyLength = length;
          offset = start;
        }
        continue;
      }
      if (this.#headerFill === 0) this.#checkIndicator(chunk[offset]!);
      this.#header[this.#headerFill++] = chunk[offset++]!;
      if (this.#headerFill === NOISE_HEADER_SIZE) {
        this.#headerFill = 0;
        const length = this.#checkLength((this.#header[1]! << 8) | this.#header[2]!);
        if (length > 0) this.#bodyLength = length;
        else {
          this.#emit(EMPTY);
          if (this.#yieldWhen?.() === true) return offset;
        }
      }
    }
    return end;
  }

  /** Copies body bytes in, growing the buffer geometrically with what arrived (never past the declared length). */
  #append(bytes: Uint8Array): void {
    const needed = this.#bodyFill + bytes.length;
    if (needed > this.#body.length) {
      const size = Math.min(this.#bodyLength, Math.max(needed * 2, this.#body.length * 2, MIN_BODY_BYTES));
      const grown = new Uint8Array(size);
      grown.set(this.#body.subarray(0, this.#bodyFill), 0);
      this.#body = grown;
    }
    this.#body.set(bytes, this.#bodyFill);
    this.#bodyFill = needed;
  }

  #emit(body: Uint8Array): void {
    this.#frames++;
    this.#onBody(body);
  }

  #checkLength(length: number): number {
    if (length <= this.maxBody) return length;
    const error = new FrameTooLargeError(length, this.maxBody);
    this.#failed = error;
    throw error;
  }

  #checkIndicator(indicator: number): void {
    if (indicator === NOISE_INDICATOR) return;
    // A plaintext device answers a Noise hello with 00 "Bad indicator byte"; later, a 00 is just corruption.
    const error =
      indicator === PLAINTEXT_INDICATOR && this.#frames === 0
        ? new DevicePlaintextError(
            'The device speaks plaintext (no API encryption key is configured on it): connect without a key, or add `api: encryption: key:` to the device YAML',
          )
        : new FrameError(`Bad Noise indicator byte 0x${indicator.toString(16).padStart(2, '0')} (expected 0x01)`);
    this.#failed = error;
    throw error;
  }
}

/** Encodes one outer Noise frame around `body`. */
export function encodeNoiseFrame(body: Uint8Array): Uint8Array {
  if (body.length > MAX_NOISE_FRAME_BODY) throw new FrameTooLargeError(body.length, MAX_NOISE_FRAME_BODY);
  const out = new Uint8Array(NOISE_HEADER_SIZE + body.length);
  out[0] = NOISE_INDICATOR;
  out[1] = body.length >>> 8;
  out[2] = body.length & 0xff;
  out.set(body, NOISE_HEADER_SIZE);
  return out;
}

/** What a Noise server hello carries; name and MAC are absent on older firmware. */
export interface ServerHello {
  protocol: number;
  name?: string;
  mac?: string;
}

/** Encodes a server-hello body: protocol 0x01, then optional name NUL, then optional 12-hex-digit MAC NUL. */
export function encodeServerHello(hello: { name?: string; mac?: string }): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(SERVER_HELLO_PROTOCOL_NNPSK0)];
  if (hello.name !== undefined || hello.mac !== undefined) {
    const name = hello.name ?? '';
    if (name.includes('\0')) throw new InvalidArgumentError('Server hello name must not contain NUL');
    parts.push(encoder.encode(name), Uint8Array.of(0));
  }
  if (hello.mac !== undefined) {
    const mac = hello.mac.replace(/[:-]/g, '').toLowerCase();
    if (!/^[0-9a-f]{12}$/.test(mac))
      throw new InvalidArgumentError(`Server hello MAC must be 12 hex digits, got ${JSON.stringify(hello.mac)}`);
    parts.push(encoder.encode(mac), Uint8Array.of(0));
  }
  return concatBytes(parts);
}

/** Parses a server-hello body from any firmware generation (protocol only; + name; + name + MAC). */
export function parseServerHello(body: Uint8Array): ServerHello {
  if (body.length === 0) throw new HandshakeError('The device sent an empty Noise server hello');
  const protocol = body[0]!;
  if (protocol !== SERVER_HELLO_PROTOCOL_NNPSK0) {
    throw new HandshakeError(
      `The device chose unknown Noise protocol 0x${protocol.toString(16).padStart(2, '0')} (only 0x01, NNpsk0, exists)`,
    );
  }
  const hello: ServerHello = { protocol };
  const nameEnd = body.indexOf(0, 1);
  if (nameEnd < 0) return hello;
  hello.name = decoder.decode(body.subarray(1, nameEnd));
  const macEnd = body.indexOf(0, nameEnd + 1);
  if (macEnd < 0) return hello;
  hello.mac = decoder.decode(body.subarray(nameEnd + 1, macEnd));
  return hello;
}

/** A parsed handshake body: the Noise message, or the device's rejection text. */
export type HandshakeBody = { ok: true; message: Uint8Array } | { ok: false; reason: string; status: number };

/** Splits a handshake body into status and content; empty bodies are a protocol error. */
export function parseHandshakeBody(body: Uint8Array): HandshakeBody {
  if (body.length === 0) throw new HandshakeError('The device sent an empty Noise handshake message');
  const status = body[0]!;
  if (status === HANDSHAKE_STATUS_OK) return { ok: true, message: body.subarray(1) };
  // Like aioesphomeapi, any non-zero status is a rejection whose text follows.
  return { ok: false, reason: decoder.decode(body.subarray(1)), status };
}

/** Encodes a successful handshake body: 0x00 + Noise message. */
export function encodeHandshakeBody(message: Uint8Array): Uint8Array {
  return concatBytes([Uint8Array.of(HANDSHAKE_STATUS_OK), message]);
}

/** Encodes a rejection body: 0x01 + ASCII reason (no terminator), as the firmware does. */
export function encodeHandshakeRejection(reason: string): Uint8Array {
  return concatBytes([Uint8Array.of(HANDSHAKE_STATUS_REJECT), encoder.encode(reason)]);
}

/** Maps a device's handshake rejection to the typed error a Noise client should throw. */
export function handshakeRejectionError(reason: string): HandshakeError {
  if (reason === HANDSHAKE_REJECT_MAC_FAILURE) {
    return new InvalidEncryptionKeyError(
      'The device rejected the encryption key (Handshake MAC failure): the key is wrong; use the one from the device YAML `api: encryption: key:`',
    );
  }
  const shown = reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason;
  return new HandshakeError(`The device rejected the Noise handshake: ${JSON.stringify(shown)}`);
}

/** The part of a Noise CipherState the transport codec uses (kept structural so frame/ needs nothing from noise/). */
export interface NoiseCipher {
  /** Encrypts `plaintext` into `output` (plaintext.length + 16 bytes) and advances the nonce. */
  encryptWithAdInto(ad: Uint8Array, plaintext: Uint8Array, output: Uint8Array): void;
  /** Decrypts or throws HandshakeError (ESPAPI_ERR_DECRYPT) without advancing the nonce. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array;
}

/**
 * Data-phase codec: encrypts messages into whole outer frames and decrypts frame bodies into
 * (type, payload). Each direction's nonce advances once per frame, so frames must stay in order.
 */
export class NoiseTransportCodec {
  readonly #send: NoiseCipher;
  readonly #receive: NoiseCipher;

  constructor(send: NoiseCipher, receive: NoiseCipher) {
    this.#send = send;
    this.#receive = receive;
  }

  /** Encodes one message as a complete frame: 01 len, then ENCRYPT(type u16be, len u16be, payload). */
  encodeMessage(type: number, payload: Uint8Array): Uint8Array {
    if (!Number.isInteger(type) || type < 0 || type > MAX_MESSAGE_TYPE)
      throw new InvalidArgumentError(`Message type ${type} does not fit 16 bits`);
    if (payload.length > MAX_NOISE_PAYLOAD) throw new FrameTooLargeError(payload.length, MAX_NOISE_PAYLOAD);
    const plainLength = NOISE_INNER_HEADER_SIZE + payload.length;
    const bodyLength = plainLength + NOISE_TAG_SIZE;
    const frame = new Uint8Array(NOISE_HEADER_SIZE + bodyLength);
    frame[0] = NOISE_INDICATOR;
    frame[1] = bodyLength >>> 8;
    frame[2] = bodyLength & 0xff;
    frame[3] = type >>> 8;
    frame[4] = type & 0xff;
    frame[5] = payload.length >>> 8;
    frame[6] = payload.length & 0xff;
    frame.set(payload, NOISE_HEADER_SIZE + NOISE_INNER_HEADER_SIZE);
    // Encrypt in place: the plaintext sits where its ciphertext goes, the tag fills the tail.
    const body = frame.subarray(NOISE_HEADER_SIZE);
    this.#send.encryptWithAdInto(EMPTY, body.subarray(0, plainLength), body);
    return frame;
  }

  /** Decrypts one frame body and hands its message over; payload is a view into the decrypted buffer. */
  decodeBody(body: Uint8Array, onMessage: (type: number, payload: Uint8Array) => void): void {
    const plain = this.#receive.decryptWithAd(EMPTY, body);
    if (plain.length < NOISE_INNER_HEADER_SIZE) {
      throw new FrameError(`Decrypted Noise message of ${plain.length} bytes is shorter than its ${NOISE_INNER_HEADER_SIZE}-byte header`);
    }
    const type = (plain[0]! << 8) | plain[1]!;
    const length = (plain[2]! << 8) | plain[3]!;
    if (length > plain.length - NOISE_INNER_HEADER_SIZE) {
      throw new FrameError(`Noise message claims ${length} payload bytes but only ${plain.length - NOISE_INNER_HEADER_SIZE} were sent`);
    }
    onMessage(type, plain.subarray(NOISE_INNER_HEADER_SIZE, NOISE_INNER_HEADER_SIZE + length));
  }
}
