import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AeadImpl } from '../../../src/noise/aead.js';
import { NOISE_NN, NOISE_NNPSK0, NoiseHandshake } from '../../../src/noise/handshake.js';
import type { HashImpl } from '../../../src/noise/hash.js';
import { FIXTURES_DIR } from '../../helpers/fixtures.js';

// Cacophony / noise_wiki JSON format; NOISE_VECTORS points at another file of the same shape.
interface Vector {
  name?: string;
  protocol_name: string;
  init_prologue?: string;
  init_psks?: string[];
  init_ephemeral: string;
  resp_prologue?: string;
  resp_psks?: string[];
  resp_ephemeral: string;
  handshake_hash?: string;
  messages: { payload: string; ciphertext: string }[];
}

const VECTORS_PATH = process.env.NOISE_VECTORS ? resolve(process.env.NOISE_VECTORS) : resolve(FIXTURES_DIR, 'vectors/noise-vectors.json');
const SUPPORTED = new Set([NOISE_NNPSK0, NOISE_NN]);
/** Both supported patterns are two messages long; everything after is transport. */
const HANDSHAKE_MESSAGES = 2;
const IMPLS: readonly AeadImpl[] = ['node', 'noble'];
/** The AEAD and hash implementations vary together: node+node (the default) and noble+noble (the portable path). */
const HASH_FOR: Record<AeadImpl, HashImpl> = { node: 'node', noble: 'noble' };

const file = JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as { vectors?: Vector[]; baseline_vectors?: Vector[] };
const all = [...(file.vectors ?? []), ...(file.baseline_vectors ?? [])];
const runnable = all.filter((vector) => SUPPORTED.has(vector.protocol_name));

const hex = (value: string | undefined): Uint8Array => Uint8Array.from(Buffer.from(value ?? '', 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

function singlePsk(psks: string[] | undefined): Uint8Array | undefined {
  if (psks === undefined || psks.length === 0) return undefined;
  expect(psks.length, 'NNpsk0 consumes exactly one PSK').toBe(1);
  return hex(psks[0]);
}

/** Plays one side of `vector` against the recorded bytes of the other side. */
function play(vector: Vector, role: 'initiator' | 'responder', aead: AeadImpl, hash: HashImpl): void {
  const mine = role === 'initiator' ? 'init' : 'resp';
  const psk = singlePsk(vector[`${mine}_psks`]);
  const handshake = new NoiseHandshake({
    role,
    protocolName: vector.protocol_name,
    prologue: hex(vector[`${mine}_prologue`]),
    ephemeralPrivateKey: hex(vector[`${mine}_ephemeral`]),
    aead,
    hash,
    ...(psk === undefined ? {} : { psk }),
  });
  expect(vector.messages.length).toBeGreaterThanOrEqual(HANDSHAKE_MESSAGES);
  let ciphers: ReturnType<NoiseHandshake['split']> | undefined;
  vector.messages.forEach((message, index) => {
    const iWrite = (index % 2 === 0) === (role === 'initiator');
    const label = `message ${index} (${iWrite ? 'written' : 'read'} by the ${role})`;
    if (index < HANDSHAKE_MESSAGES) {
      if (iWrite) expect(toHex(handshake.writeMessage(hex(message.payload))), label).toBe(message.ciphertext);
      else expect(toHex(handshake.readMessage(hex(message.ciphertext))), label).toBe(message.payload);
      return;
    }
    if (ciphers === undefined) {
      expect(handshake.isComplete).toBe(true);
      if (vector.handshake_hash !== undefined) expect(toHex(handshake.handshakeHash()), 'handshake hash').toBe(vector.handshake_hash);
      ciphers = handshake.split();
    }
    if (iWrite) expect(toHex(ciphers.send.encrypt(hex(message.payload))), label).toBe(message.ciphertext);
    else expect(toHex(ciphers.receive.decrypt(hex(message.ciphertext))), label).toBe(message.payload);
  });
  expect(handshake.isComplete).toBe(true);
  if (vector.handshake_hash !== undefined) expect(toHex(handshake.handshakeHash()), 'handshake hash').toBe(vector.handshake_hash);
}

describe(`noise vectors (${VECTORS_PATH})`, () => {
  it('vectors - the file holds at least one vector we implement', () => {
    expect(runnable.length, `no ${[...SUPPORTED].join(' / ')} vectors in ${VECTORS_PATH}`).toBeGreaterThan(0);
  });

  runnable.forEach((vector, index) => {
    const name = vector.name ?? `${vector.protocol_name} #${index}`;
    for (const aead of IMPLS) {
      for (const role of ['initiator', 'responder'] as const) {
        it(`vectors - ${name} as ${role} (${aead} AEAD, ${HASH_FOR[aead]} hashes)`, () => play(vector, role, aead, HASH_FOR[aead]));
      }
    }
  });
});
