import { HandshakeError, InvalidArgumentError } from '../errors.js';
import { AEAD_TAG_SIZE, type Aead, type AeadImpl, createAead } from './aead.js';

/**
 * Highest nonce we will use. Noise reserves 2^64-1 and forbids wrapping; a JS number is exact only
 * up to 2^53-1, which at a million frames per second still lasts about 285 years.
 */
export const MAX_NONCE = Number.MAX_SAFE_INTEGER;

const EMPTY = new Uint8Array(0);

/** Options of a CipherState. */
export interface CipherStateOptions {
  /** AEAD implementation (default: the measured-faster one). */
  aead?: AeadImpl;
  /** Starting nonce (Noise SetNonce); 0 unless resuming or testing exhaustion. */
  nonce?: number;
}

/** Noise CipherState: one key and a strictly increasing 64-bit nonce, one per message. */
export class CipherState {
  readonly #aead: Aead;
  #nonce: number;

  constructor(key: Uint8Array, options: CipherStateOptions = {}) {
    this.#aead = createAead(key, options.aead);
    const nonce = options.nonce ?? 0;
    if (!Number.isSafeInteger(nonce) || nonce < 0)
      throw new InvalidArgumentError(`Noise nonce must be a non-negative safe integer, got ${nonce}`);
    this.#nonce = nonce;
  }

  /** Nonce the next message will use (equals the number of messages processed so far). */
  get nonce(): number {
    return this.#nonce;
  }

  /** AEAD implementation in use. */
  get aead(): AeadImpl {
    return this.#aead.impl;
  }

  /** Encrypts `plaintext` with associated data `ad`; returns ciphertext || tag and advances the nonce. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const nonce = this.#take();
    return this.#aead.seal(nonce, plaintext, ad);
  }

  /** Like encryptWithAd but writes into `output` (plaintext.length + 16 bytes; may alias `plaintext`'s start). */
  encryptWithAdInto(ad: Uint8Array, plaintext: Uint8Array, output: Uint8Array): void {
    if (output.length !== plaintext.length + AEAD_TAG_SIZE) {
      throw new InvalidArgumentError(`Noise output must be ${plaintext.length + AEAD_TAG_SIZE} bytes, got ${output.length}`);
    }
    this.#aead.sealInto(this.#take(), plaintext, output, ad);
  }

  /** Decrypts ciphertext || tag; throws HandshakeError (ESPAPI_ERR_DECRYPT) on a bad tag, leaving the nonce unchanged. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.tryDecryptWithAd(ad, ciphertext);
    if (plaintext === null) {
      throw new HandshakeError(
        `Noise decryption failed at nonce ${this.#nonce} (authentication tag mismatch): the stream is corrupt, out of order or keyed differently`,
        { code: 'ESPAPI_ERR_DECRYPT' },
      );
    }
    return plaintext;
  }

  /** Decrypts ciphertext || tag; returns null on a bad tag (nonce unchanged) instead of throwing. */
  tryDecryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null {
    this.#checkNonce();
    const plaintext = this.#aead.open(this.#nonce, ciphertext, ad.length === 0 ? undefined : ad);
    if (plaintext !== null) this.#nonce++;
    return plaintext;
  }

  /** Encrypts with empty associated data (transport messages). */
  encrypt(plaintext: Uint8Array): Uint8Array {
    return this.encryptWithAd(EMPTY, plaintext);
  }

  /** Decrypts with empty associated data (transport messages); throws like decryptWithAd. */
  decrypt(ciphertext: Uint8Array): Uint8Array {
    return this.decryptWithAd(EMPTY, ciphertext);
  }

  #take(): number {
    this.#checkNonce();
    return this.#nonce++;
  }

  #checkNonce(): void {
    if (this.#nonce > MAX_NONCE) {
      throw new HandshakeError('Noise nonce space exhausted: reconnect to negotiate fresh keys');
    }
  }
}
