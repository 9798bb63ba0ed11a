import { FrameError, FrameTooLargeError, InvalidEncryptionKeyError } from '../errors.js';
import {
  DEVICE_MAX_ENCRYPTED_BODY,
  encodeHandshakeBody,
  encodeHandshakeRejection,
  encodeNoiseFrame,
  encodeServerHello,
  HANDSHAKE_REJECT_BAD_INDICATOR,
  HANDSHAKE_REJECT_BAD_PACKET_LEN,
  HANDSHAKE_REJECT_MAC_FAILURE,
  MAX_HANDSHAKE_BODY,
  NoiseFrameDecoder,
  NoiseTransportCodec,
  parseHandshakeBody,
} from '../frame/noise-frame.js';
import { DEVICE_MAX_PLAINTEXT_PAYLOAD, encodePlaintextFrame, type FrameHandler, PlaintextFrameDecoder } from '../frame/plaintext.js';
import { esphomePrologue, NoiseHandshake } from '../noise/handshake.js';
import { type EphemeralKey, generateEphemeral } from '../noise/x25519.js';

/** What a responder codec tells its session to do with the socket. */
export interface ServerCodecIo {
  write(bytes: Uint8Array): void;
  /** Write these last bytes, then close (the firmware's rejection path). */
  reject(bytes: Uint8Array, reason: string): void;
  /** Asked after each client frame: true stops decoding there (the session's replies pile up; it reads again later). */
  yieldWhen?: () => boolean;
}

/** Device side of the framing: decodes client frames, encodes device frames. */
export interface ServerCodec {
  /** Decodes what it can of `chunk`; returns the bytes used (fewer when `yieldWhen` stopped it: push the rest later). */
  push(chunk: Uint8Array): number;
  encode(type: number, payload: Uint8Array): Uint8Array;
  /** Bytes allocated for a client frame not yet complete. */
  readonly inputBytes: number;
}

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Plaintext device framing; answers a Noise client exactly like the firmware does. */
export class PlaintextServerCodec implements ServerCodec {
  readonly #decoder: PlaintextFrameDecoder;
  readonly #io: ServerCodecIo;
  #rejected = false;

  constructor(onMessage: FrameHandler, io: ServerCodecIo) {
    // The firmware's own receive limit: a client frame above it makes the device drop the connection.
    this.#decoder = new PlaintextFrameDecoder(onMessage, {
      maxPayload: DEVICE_MAX_PLAINTEXT_PAYLOAD,
      ...(io.yieldWhen ? { yieldWhen: io.yieldWhen } : {}),
    });
    this.#io = io;
  }

  get inputBytes(): number {
    return this.#decoder.allocated;
  }

  push(chunk: Uint8Array): number {
    if (this.#rejected) return chunk.length;
    if (this.#decoder.buffered === 0 && chunk.length > 0 && chunk[0] !== 0x00) {
      // Firmware: 0x00 then the 18 ASCII bytes, 19 raw bytes in all, then close.
      this.#rejected = true;
      const text = ascii(HANDSHAKE_REJECT_BAD_INDICATOR);
      const out = new Uint8Array(1 + text.length);
      out.set(text, 1);
      this.#io.reject(out, 'client spoke Noise to a plaintext device');
      return chunk.length;
    }
    return this.#decoder.push(chunk);
  }

  encode(type: number, payload: Uint8Array): Uint8Array {
    return encodePlaintextFrame(type, payload);
  }
}

/** Options of the Noise responder. */
export interface NoiseServerOptions {
  psk: Uint8Array;
  name: string;
  /** Network MAC, 12 lower-case hex digits (omit to mimic pre-2025.4 firmware). */
  mac?: string | undefined;
  /** Which server-hello generation to send (default 'mac', the current one). */
  helloGeneration?: 'protocol-only' | 'name' | 'mac';
  ephemeralPrivateKey?: Uint8Array | undefined;
}

type Phase = 'clientHello' | 'handshake' | 'data' | 'closed';

/** Noise responder framing with the firmware's rejection bytes (spec §4.6, §4.11). */
export class NoiseServerCodec implements ServerCodec {
  readonly #onMessage: FrameHandler;
  readonly #io: ServerCodecIo;
  readonly #options: NoiseServerOptions;
  readonly #decoder: NoiseFrameDecoder;
  #phase: Phase = 'clientHello';
  #handshake: NoiseHandshake | undefined;
  #ephemeral: EphemeralKey | undefined;
  #transport: NoiseTransportCodec | undefined;
  #sawFirstByte = false;

  constructor(onMessage: FrameHandler, io: ServerCodecIo, options: NoiseServerOptions) {
    this.#onMessage = onMessage;
    this.#io = io;
    this.#options = options;
    // Until the handshake is done a client is unauthenticated: the firmware refuses bodies above 128 bytes at the header.
    this.#decoder = new NoiseFrameDecoder((body) => this.#onBody(body), {
      maxBody: MAX_HANDSHAKE_BODY,
      ...(io.yieldWhen ? { yieldWhen: io.yieldWhen } : {}),
    });
    // Generated on accept, while the client is still building its first message: off the critical path.
    if (options.ephemeralPrivateKey === undefined) this.#ephemeral = generateEphemeral();
  }

  get isReady(): boolean {
    return this.#phase === 'data';
  }

  get inputBytes(): number {
    return this.#decoder.allocated;
  }

  push(chunk: Uint8Array): number {
    if (this.#phase === 'closed' || chunk.length === 0) return chunk.length;
    if (!this.#sawFirstByte) {
      this.#sawFirstByte = true;
      if (chunk[0] !== 0x01) {
        this.#rejectWith(HANDSHAKE_REJECT_BAD_INDICATOR, 'plaintext client on a Noise device');
        return chunk.length;
      }
    }
    try {
      return this.#decoder.push(chunk);
    } catch (error) {
      if (!(error instanceof FrameTooLargeError) || !this.#inHandshake()) throw error;
      // The firmware answers an oversized handshake header before reading its body, then closes.
      this.#rejectWith(HANDSHAKE_REJECT_BAD_PACKET_LEN, 'handshake frame over 128 bytes');
      return chunk.length;
    }
  }

  encode(type: number, payload: Uint8Array): Uint8Array {
    if (this.#transport === undefined) throw new FrameError('Noise session not established');
    return this.#transport.encodeMessage(type, payload);
  }

  #onBody(body: Uint8Array): void {
    switch (this.#phase) {
      case 'clientHello':
        this.#handshake = new NoiseHandshake({
          role: 'responder',
          prologue: esphomePrologue(body),
          psk: this.#options.psk,
          ...(this.#options.ephemeralPrivateKey ? { ephemeralPrivateKey: this.#options.ephemeralPrivateKey } : {}),
          ...(this.#ephemeral ? { ephemeral: this.#ephemeral } : {}),
        });
        this.#ephemeral = undefined;
        this.#io.write(encodeNoiseFrame(this.#serverHello()));
        this.#phase = 'handshake';
        return;
      case 'handshake':
        this.#onHandshake(body);
        return;
      case 'data':
        this.#transport!.decodeBody(body, this.#onMessage);
        return;
      default:
        return;
    }
  }

  /** The phase may have moved on inside push() (the handshake completes there). */
  #inHandshake(): boolean {
    return this.#phase === 'clientHello' || this.#phase === 'handshake';
  }

  #serverHello(): Uint8Array {
    const generation = this.#options.helloGeneration ?? 'mac';
    if (generation === 'protocol-only') return encodeServerHello({});
    if (generation === 'name') return encodeServerHello({ name: this.#options.name });
    return encodeServerHello({ name: this.#options.name, ...(this.#options.mac ? { mac: this.#options.mac } : {}) });
  }

  #onHandshake(body: Uint8Array): void {
    if (body.length === 0) {
      this.#rejectWith('Empty handshake message', 'empty handshake');
      return;
    }
    const parsed = parseHandshakeBody(body);
    if (!parsed.ok) {
      this.#rejectWith('Bad handshake error byte', 'bad status byte');
      return;
    }
    const handshake = this.#handshake!;
    try {
      handshake.readMessage(parsed.message);
    } catch (error) {
      const reason = error instanceof InvalidEncryptionKeyError ? HANDSHAKE_REJECT_MAC_FAILURE : 'Handshake error';
      this.#rejectWith(reason, reason === HANDSHAKE_REJECT_MAC_FAILURE ? `${reason} (the client's key is not this node's)` : reason);
      return;
    }
    this.#io.write(encodeNoiseFrame(encodeHandshakeBody(handshake.writeMessage())));
    const { send, receive } = handshake.split();
    this.#transport = new NoiseTransportCodec(send, receive);
    this.#phase = 'data';
    // Authenticated now: the firmware's data-phase limit (an encrypted body, tag included).
    this.#decoder.maxBody = DEVICE_MAX_ENCRYPTED_BODY;
  }

  #rejectWith(reason: string, why: string): void {
    this.#phase = 'closed';
    this.#io.reject(encodeNoiseFrame(encodeHandshakeRejection(reason)), why);
  }
}
