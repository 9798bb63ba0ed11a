import { FrameError, HandshakeError, InvalidEncryptionKeyError, NameMismatchError } from '../errors.js';
import {
  encodeHandshakeBody,
  encodeNoiseFrame,
  handshakeRejectionError,
  MAX_NOISE_FRAME_BODY,
  NoiseFrameDecoder,
  NoiseTransportCodec,
  parseHandshakeBody,
  parseServerHello,
} from '../frame/noise-frame.js';
import { encodePlaintextFrame, type FrameHandler, PlaintextFrameDecoder } from '../frame/plaintext.js';
import type { AeadImpl } from '../noise/aead.js';
import { esphomePrologue, NoiseHandshake } from '../noise/handshake.js';

/** Bytes in, messages out; messages in, bytes out. One per TCP session. */
export interface FrameCodec {
  /** Feeds received bytes; complete messages reach the handler given at construction. */
  push(chunk: Uint8Array): void;
  /** Encodes one message as the bytes to write. */
  encode(type: number, payload: Uint8Array): Uint8Array;
  /** Resolves when the transport handshake is done (at once for plaintext). */
  readonly ready: Promise<void>;
  /** Called when the socket closes before the handshake finished. */
  abortHandshake(error: Error): void;
  /** Bytes allocated for a frame not complete yet: grows with what arrived, never with what a header declares. */
  readonly inputBytes: number;
}

/**
 * Largest handshake-phase body the client accepts from a device. The firmware's largest is its server hello (46
 * bytes: protocol, a name of at most 31 characters, the MAC); 512 leaves room for other implementations' longer
 * names while a hostile "proxy" cannot make the client hold more before it has proven it knows the key.
 */
export const MAX_DEVICE_HANDSHAKE_BODY = 512;

/** The plaintext codec: no handshake. */
export class PlaintextCodec implements FrameCodec {
  readonly #decoder: PlaintextFrameDecoder;
  readonly ready = Promise.resolve();

  constructor(onMessage: FrameHandler) {
    this.#decoder = new PlaintextFrameDecoder(onMessage);
  }

  get inputBytes(): number {
    return this.#decoder.allocated;
  }

  push(chunk: Uint8Array): void {
    this.#decoder.push(chunk);
  }

  encode(type: number, payload: Uint8Array): Uint8Array {
    return encodePlaintextFrame(type, payload);
  }

  abortHandshake(): void {}
}

/** What the Noise server hello told us about the device. */
export interface ServerHelloInfo {
  name: string | undefined;
  mac: string | undefined;
}

/** Options of the Noise initiator codec. */
export interface NoiseClientOptions {
  psk: Uint8Array;
  expectedName?: string | undefined;
  expectedMac?: string | undefined;
  aead?: AeadImpl | undefined;
  /** Test hook: fixed ephemeral private key. */
  ephemeralPrivateKey?: Uint8Array | undefined;
}

type NoisePhase = 'serverHello' | 'handshake' | 'data' | 'failed';

/** Client (initiator) side of ESPHome's Noise framing. */
export class NoiseClientCodec implements FrameCodec {
  readonly ready: Promise<void>;
  serverHello: ServerHelloInfo | undefined;
  readonly #decoder: NoiseFrameDecoder;
  readonly #handshake: NoiseHandshake;
  readonly #onMessage: FrameHandler;
  readonly #options: NoiseClientOptions;
  #phase: NoisePhase = 'serverHello';
  #transport: NoiseTransportCodec | undefined;
  #resolve!: () => void;
  #reject!: (error: Error) => void;

  constructor(onMessage: FrameHandler, options: NoiseClientOptions) {
    this.#onMessage = onMessage;
    this.#options = options;
    this.#handshake = new NoiseHandshake({
      role: 'initiator',
      prologue: esphomePrologue(),
      psk: options.psk,
      ...(options.ephemeralPrivateKey ? { ephemeralPrivateKey: options.ephemeralPrivateKey } : {}),
      ...(options.aead ? { aead: options.aead } : {}),
    });
    this.#decoder = new NoiseFrameDecoder((body) => this.#onBody(body), { maxBody: MAX_DEVICE_HANDSHAKE_BODY });
    this.ready = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.ready.catch(() => {});
  }

  get inputBytes(): number {
    return this.#decoder.allocated;
  }

  /** The client's opening: empty client hello + handshake message 1, written in one go. */
  opening(): Uint8Array {
    const hello = encodeNoiseFrame(new Uint8Array(0));
    const message1 = encodeNoiseFrame(encodeHandshakeBody(this.#handshake.writeMessage()));
    const out = new Uint8Array(hello.length + message1.length);
    out.set(hello, 0);
    out.set(message1, hello.length);
    return out;
  }

  push(chunk: Uint8Array): void {
    try {
      this.#decoder.push(chunk);
    } catch (error) {
      if (this.#phase !== 'data') this.#fail(error as Error);
      throw error;
    }
  }

  encode(type: number, payload: Uint8Array): Uint8Array {
    if (this.#transport === undefined) throw new HandshakeError('Cannot send before the Noise handshake completed');
    return this.#transport.encodeMessage(type, payload);
  }

  abortHandshake(error: Error): void {
    if (this.#phase === 'data' || this.#phase === 'failed') return;
    this.#fail(error);
  }

  /** Phase the handshake is in (for error messages on early close). */
  get phase(): NoisePhase {
    return this.#phase;
  }

  #onBody(body: Uint8Array): void {
    switch (this.#phase) {
      case 'data':
        this.#transport!.decodeBody(body, this.#onMessage);
        return;
      case 'serverHello':
        this.#onServerHello(body);
        return;
      case 'handshake':
        this.#onHandshake(body);
        return;
      default:
        throw new FrameError('Data after a failed Noise handshake');
    }
  }

  #onServerHello(body: Uint8Array): void {
    const hello = parseServerHello(body);
    this.serverHello = { name: hello.name, mac: hello.mac };
    const { expectedName, expectedMac } = this.#options;
    if (expectedName !== undefined && hello.name !== undefined && hello.name !== expectedName) {
      throw this.#fail(new NameMismatchError('name', expectedName, hello.name));
    }
    if (expectedMac !== undefined && hello.mac !== undefined) {
      const want = expectedMac.replace(/[^0-9a-f]/gi, '').toLowerCase();
      if (hello.mac !== want) throw this.#fail(new NameMismatchError('mac', want, hello.mac));
    }
    this.#phase = 'handshake';
  }

  #onHandshake(body: Uint8Array): void {
    const parsed = parseHandshakeBody(body);
    if (!parsed.ok) throw this.#fail(handshakeRejectionError(parsed.reason));
    try {
      this.#handshake.readMessage(parsed.message);
    } catch (error) {
      throw this.#fail(
        error instanceof InvalidEncryptionKeyError
          ? new InvalidEncryptionKeyError('The device handshake failed to authenticate: the encryption key is wrong', { cause: error })
          : (error as Error),
      );
    }
    const { send, receive } = this.#handshake.split();
    this.#transport = new NoiseTransportCodec(send, receive);
    this.#phase = 'data';
    // A device may send any body the u16 length allows (spec §4.1); the decoder still only holds what arrived.
    this.#decoder.maxBody = MAX_NOISE_FRAME_BODY;
    this.#resolve();
  }

  #fail(error: Error): Error {
    this.#phase = 'failed';
    this.#reject(error);
    return error;
  }
}
