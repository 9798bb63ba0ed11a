import { HandshakeError, InvalidArgumentError, InvalidEncryptionKeyError, InvalidPskError } from '../errors.js';
import { concatBytes } from '../util/bytes.js';
import { AEAD_TAG_SIZE, type AeadImpl } from './aead.js';
import { CipherState } from './cipher-state.js';
import { type HashImpl, type NoiseHash, noiseHash } from './hash.js';
import { type EphemeralKey, ephemeralFromPrivate, generateEphemeral } from './x25519.js';

/** The Noise protocol ESPHome speaks (server-hello protocol byte 0x01). */
export const NOISE_NNPSK0 = 'Noise_NNpsk0_25519_ChaChaPoly_SHA256';
/** Plain NN with the same primitives; supported so the baseline test vectors can run. */
export const NOISE_NN = 'Noise_NN_25519_ChaChaPoly_SHA256';
/** Fixed first bytes of the ESPHome prologue (spec §4.4). */
export const ESPHOME_PROLOGUE_PREFIX = 'NoiseAPIInit';

/** X25519 key and public-value length, also Noise DHLEN. */
const DH_LEN = 32;
/** SHA-256 output length, Noise HASHLEN. */
const HASH_LEN = 32;
/** Noise PSKs are exactly 32 bytes. */
const PSK_LEN = 32;
/** Noise caps every message at 65535 bytes. */
const MAX_MESSAGE_LEN = 65535;
/** Both supported patterns have exactly two handshake messages. */
const HANDSHAKE_MESSAGES = 2;

type Token = 'psk' | 'e' | 'ee';

/** Message patterns: index 0 is written by the initiator, index 1 by the responder. */
const PATTERNS: Readonly<Record<string, { psk: boolean; messages: readonly (readonly Token[])[] }>> = {
  [NOISE_NNPSK0]: {
    psk: true,
    messages: [
      ['psk', 'e'],
      ['e', 'ee'],
    ],
  },
  [NOISE_NN]: { psk: false, messages: [['e'], ['e', 'ee']] },
};

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/** Options of a NoiseHandshake. */
export interface NoiseHandshakeOptions {
  /** ESPHome clients are initiators; the device (or fixture server) is the responder. */
  role: 'initiator' | 'responder';
  /** Prologue bytes; both sides must agree (use esphomePrologue()). */
  prologue: Uint8Array;
  /** 32-byte pre-shared key; required for NNpsk0, must be absent for NN. */
  psk?: Uint8Array;
  /** NOISE_NNPSK0 (default) or NOISE_NN. */
  protocolName?: string;
  /** Fixed 32-byte ephemeral private key (tests); default random. */
  ephemeralPrivateKey?: Uint8Array;
  /** An ephemeral key generated ahead (a responder makes it while the initiator is still writing); used once. */
  ephemeral?: EphemeralKey;
  /** AEAD implementation for the handshake and the split ciphers. */
  aead?: AeadImpl;
  /** SHA-256 / HMAC implementation (default: node:crypto). */
  hash?: HashImpl;
}

/** The two transport ciphers after the handshake, oriented for this side. */
export interface SplitCiphers {
  send: CipherState;
  receive: CipherState;
}

/** Builds the ESPHome prologue: "NoiseAPIInit" || u16be(body length) || client-hello body. */
export function esphomePrologue(clientHelloBody: Uint8Array = EMPTY): Uint8Array {
  if (clientHelloBody.length > 0xffff) throw new InvalidArgumentError('Client hello body does not fit a 16-bit length');
  const prefix = encoder.encode(ESPHOME_PROLOGUE_PREFIX);
  const out = new Uint8Array(prefix.length + 2 + clientHelloBody.length);
  out.set(prefix, 0);
  out[prefix.length] = clientHelloBody.length >>> 8;
  out[prefix.length + 1] = clientHelloBody.length & 0xff;
  out.set(clientHelloBody, prefix.length + 2);
  return out;
}

/**
 * One side of a Noise NNpsk0 (or NN) handshake, pure and synchronous.
 * The initiator writes message 1 and reads message 2; the responder does the opposite; then split().
 */
export class NoiseHandshake {
  readonly #role: 'initiator' | 'responder';
  readonly #pattern: { psk: boolean; messages: readonly (readonly Token[])[] };
  readonly #psk: Uint8Array | undefined;
  readonly #aead: AeadImpl | undefined;
  readonly #hash: NoiseHash;
  readonly #e: EphemeralKey;
  readonly #ePub: Uint8Array;
  #re: Uint8Array | undefined;
  #h: Uint8Array;
  #ck: Uint8Array;
  #cipher: CipherState | undefined;
  #index = 0;
  #failed: Error | undefined;
  #split = false;

  constructor(options: NoiseHandshakeOptions) {
    const name = options.protocolName ?? NOISE_NNPSK0;
    const pattern = PATTERNS[name];
    if (pattern === undefined) throw new InvalidArgumentError(`Unsupported Noise protocol ${JSON.stringify(name)}`);
    if (options.role !== 'initiator' && options.role !== 'responder') {
      throw new InvalidArgumentError(`Noise role must be 'initiator' or 'responder', got ${JSON.stringify(options.role)}`);
    }
    if (pattern.psk) {
      if (options.psk === undefined) throw new InvalidPskError(`${name} needs a ${PSK_LEN}-byte pre-shared key`);
      if (options.psk.length !== PSK_LEN)
        throw new InvalidPskError(`Noise pre-shared key must be ${PSK_LEN} bytes, got ${options.psk.length}`);
    } else if (options.psk !== undefined) {
      throw new InvalidArgumentError(`${name} takes no pre-shared key`);
    }
    const ePriv = options.ephemeralPrivateKey;
    if (ePriv !== undefined && options.ephemeral !== undefined) {
      throw new InvalidArgumentError('Give either ephemeralPrivateKey or ephemeral, not both');
    }
    if (ePriv !== undefined && ePriv.length !== DH_LEN) {
      throw new InvalidArgumentError(`Ephemeral private key must be ${DH_LEN} bytes, got ${ePriv.length}`);
    }
    this.#role = options.role;
    this.#pattern = pattern;
    this.#psk = options.psk?.slice();
    this.#aead = options.aead;
    this.#hash = noiseHash(options.hash);
    // X25519 clamps the scalar per RFC 7748, so any 32 bytes are a valid private key.
    this.#e = options.ephemeral ?? (ePriv === undefined ? generateEphemeral() : ephemeralFromPrivate(ePriv));
    this.#ePub = this.#e.publicKey;

    // InitializeSymmetric: names longer than HASHLEN are hashed, shorter ones zero-padded.
    const nameBytes = encoder.encode(name);
    if (nameBytes.length <= HASH_LEN) {
      this.#h = new Uint8Array(HASH_LEN);
      this.#h.set(nameBytes);
    } else {
      this.#h = this.#hash.sha256(nameBytes);
    }
    this.#ck = this.#h.slice();
    this.#mixHash(options.prologue);
  }

  /** True once both handshake messages have been processed. */
  get isComplete(): boolean {
    return this.#index >= HANDSHAKE_MESSAGES && this.#failed === undefined;
  }

  /** Whose turn it is: true when this side must call writeMessage() next. */
  get isMyTurn(): boolean {
    return !this.isComplete && this.#failed === undefined && (this.#index % 2 === 0) === (this.#role === 'initiator');
  }

  /** Produces the next handshake message carrying `payload` (empty for ESPHome). */
  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    this.#checkTurn('write');
    const tokens = this.#pattern.messages[this.#index]!;
    const parts: Uint8Array[] = [];
    try {
      for (const token of tokens) {
        if (token === 'e') {
          parts.push(this.#ePub);
          this.#mixHash(this.#ePub);
          if (this.#pattern.psk) this.#mixKey(this.#ePub);
        } else {
          this.#applyToken(token);
        }
      }
      parts.push(this.#encryptAndHash(payload));
    } catch (error) {
      throw this.#fail(error as Error);
    }
    this.#index++;
    const out = concatBytes(parts);
    if (out.length > MAX_MESSAGE_LEN)
      throw this.#fail(new HandshakeError(`Noise handshake message of ${out.length} bytes exceeds ${MAX_MESSAGE_LEN}`));
    return out;
  }

  /** Consumes the peer's handshake message and returns its payload; a failed tag throws InvalidEncryptionKeyError. */
  readMessage(message: Uint8Array): Uint8Array {
    this.#checkTurn('read');
    if (message.length > MAX_MESSAGE_LEN)
      throw this.#fail(new HandshakeError(`Noise handshake message of ${message.length} bytes exceeds ${MAX_MESSAGE_LEN}`));
    const tokens = this.#pattern.messages[this.#index]!;
    let offset = 0;
    let payload: Uint8Array;
    try {
      for (const token of tokens) {
        if (token === 'e') {
          if (message.length - offset < DH_LEN) throw new HandshakeError(`Noise handshake message too short: ${message.length} bytes`);
          const re = message.slice(offset, offset + DH_LEN);
          offset += DH_LEN;
          this.#re = re;
          this.#mixHash(re);
          if (this.#pattern.psk) this.#mixKey(re);
        } else {
          this.#applyToken(token);
        }
      }
      payload = this.#decryptAndHash(message.subarray(offset));
    } catch (error) {
      throw this.#fail(error as Error);
    }
    this.#index++;
    return payload;
  }

  /** The handshake hash h (channel binding); available once the handshake is complete. */
  handshakeHash(): Uint8Array {
    if (!this.isComplete) throw new HandshakeError('The Noise handshake hash is only defined after the handshake completes');
    return this.#h.slice();
  }

  /** Derives the transport ciphers: the initiator sends with k1, the responder with k2. Callable once. */
  split(): SplitCiphers {
    if (!this.isComplete) throw new HandshakeError('Cannot split before the Noise handshake completes');
    if (this.#split) throw new HandshakeError('Noise split() was already called; reusing the keys would repeat nonces');
    this.#split = true;
    const [k1, k2] = this.#hash.hkdf(this.#ck, EMPTY, 2);
    const options = this.#aead === undefined ? {} : { aead: this.#aead };
    const c1 = new CipherState(k1!, options);
    const c2 = new CipherState(k2!, options);
    this.#ck.fill(0);
    return this.#role === 'initiator' ? { send: c1, receive: c2 } : { send: c2, receive: c1 };
  }

  #checkTurn(action: 'write' | 'read'): void {
    if (this.#failed !== undefined) throw new HandshakeError('The Noise handshake already failed', { cause: this.#failed });
    if (this.#index >= HANDSHAKE_MESSAGES)
      throw new HandshakeError(`Cannot ${action} a handshake message: the Noise handshake is complete`);
    const writer = this.#index % 2 === 0 ? 'initiator' : 'responder';
    if ((action === 'write') !== (writer === this.#role)) {
      throw new HandshakeError(`Out of turn: the ${this.#role} cannot ${action} handshake message ${this.#index + 1}`);
    }
  }

  #applyToken(token: Token): void {
    if (token === 'psk') {
      this.#mixKeyAndHash(this.#psk!);
      return;
    }
    // 'ee': both sides hold one local and one remote ephemeral by now.
    let shared: Uint8Array;
    try {
      shared = this.#e.sharedSecret(this.#re!);
    } catch (error) {
      throw new HandshakeError('The peer sent an invalid (low-order) X25519 ephemeral key', { cause: error });
    }
    this.#mixKey(shared);
    shared.fill(0);
  }

  #fail(error: Error): Error {
    this.#failed = error;
    return error;
  }

  #mixHash(data: Uint8Array): void {
    this.#h = this.#hash.sha256(this.#h, data);
  }

  #mixKey(ikm: Uint8Array): void {
    const [ck, k] = this.#hash.hkdf(this.#ck, ikm, 2);
    this.#ck = ck!;
    this.#setKey(k!);
  }

  #mixKeyAndHash(ikm: Uint8Array): void {
    const [ck, th, k] = this.#hash.hkdf(this.#ck, ikm, 3);
    this.#ck = ck!;
    this.#mixHash(th!);
    this.#setKey(k!);
  }

  #setKey(key: Uint8Array): void {
    this.#cipher = new CipherState(key, this.#aead === undefined ? {} : { aead: this.#aead });
  }

  #encryptAndHash(plaintext: Uint8Array): Uint8Array {
    // Without a key (NN message 1) the payload travels in clear but is still hashed.
    const ciphertext = this.#cipher === undefined ? plaintext.slice() : this.#cipher.encryptWithAd(this.#h, plaintext);
    this.#mixHash(ciphertext);
    return ciphertext;
  }

  #decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    let plaintext: Uint8Array;
    if (this.#cipher === undefined) {
      plaintext = ciphertext.slice();
    } else {
      if (ciphertext.length < AEAD_TAG_SIZE) {
        throw new HandshakeError(`Noise handshake message too short: no room for the ${AEAD_TAG_SIZE}-byte tag`);
      }
      const opened = this.#cipher.tryDecryptWithAd(this.#h, ciphertext);
      if (opened === null) {
        throw new InvalidEncryptionKeyError(
          this.#pattern.psk
            ? 'Noise handshake failed to authenticate: the encryption key (PSK) differs from the peer\u2019s; use the key from the device YAML `api: encryption: key:`'
            : 'Noise handshake failed to authenticate: the prologue differs from the peer\u2019s',
        );
      }
      plaintext = opened;
    }
    this.#mixHash(ciphertext);
    return plaintext;
  }
}
