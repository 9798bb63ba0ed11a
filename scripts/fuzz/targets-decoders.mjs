// In-process fuzz targets for the pure decoders: plaintext frames, Noise frames and transport, the Noise
// handshake replies, raw advertisement batches and the AD parser. Each input runs synchronously (the handshake
// target then awaits the codec's `ready`, already settled by then).
import { check, generateBytes, loadDist, mutate, randomChunks, typedCode, varint, within } from './common.mjs';

const { PlaintextFrameDecoder } = await loadDist('frame/plaintext.js');
const { NoiseFrameDecoder, NoiseTransportCodec, encodeNoiseFrame } = await loadDist('frame/noise-frame.js');
const { NoiseHandshake, esphomePrologue } = await loadDist('noise/handshake.js');
const { NoiseClientCodec } = await loadDist('connection/frame-codec.js');
const { NoiseServerCodec } = await loadDist('server/server-codec.js');
const { parsePsk } = await loadDist('noise/psk.js');
const { decodeRawAdvertisements } = await loadDist('bluetooth/raw-advertisements.js');
const { parseAdvertisementData, parseRawAdvertisement } = await loadDist('bluetooth/advertisement.js');
const { BluetoothLERawAdvertisementsResponse } = await loadDist('gen/api_pb.js');
const { BinaryReader } = await import('@protobuf-ts/runtime');

const PSK = parsePsk('AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=');
/** A fixed client ephemeral key makes message 1, and so the responder's reply, the same for every codec. */
const CLIENT_EPHEMERAL = Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Runs `feed`, returning what it emitted and the code of the typed error it threw (others propagate). */
function collect(feed) {
  const out = [];
  try {
    feed(out);
    return { out, code: undefined };
  } catch (error) {
    const code = typedCode(error);
    if (code === undefined) throw error;
    return { out, code };
  }
}

function sameBytes(a, b) {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Whole feed vs split feed: a streaming decoder must not depend on how TCP cut the bytes. */
function checkSplitFeed(name, whole, split) {
  check(whole.code === split.code, () => `${name}: whole feed ended with ${whole.code}, split feed with ${split.code}`);
  check(whole.out.length === split.out.length, () => `${name}: ${whole.out.length} frames whole, ${split.out.length} split`);
  for (let i = 0; i < whole.out.length; i++) {
    const [a, b] = [whole.out[i], split.out[i]];
    check(a.type === b.type && sameBytes(a.payload, b.payload), () => `${name}: frame ${i} differs between whole and split feeds`);
  }
}

function concat(parts) {
  return Uint8Array.from(Buffer.concat(parts));
}

/** Plaintext frames `00 varint(len) varint(type) payload`, fed whole and split. */
export const plaintextFrame = {
  name: 'plaintext-frame',
  setup: (corpus) => ({ corpus: corpus.frames }),
  generate(rng, { corpus }) {
    const base = concat(Array.from({ length: 1 + rng.int(3) }, () => rng.pick(corpus)));
    if (rng.chance(0.05)) return concat([Uint8Array.of(0), varint(2 ** 31), Uint8Array.of(7)]);
    return rng.chance(0.15) ? rng.bytes(rng.int(200)) : mutate(rng, base, corpus);
  },
  run(input, _state, rng) {
    let consumed = 0;
    let last = -1;
    const whole = collect((out) =>
      new PlaintextFrameDecoder((type, payload) => {
        // Fed whole there is no partial frame to join, so every payload must be a view into the input, after the last.
        check(within(payload, input), 'plaintext-frame: payload is not a view into the input');
        check(payload.byteOffset > last, 'plaintext-frame: frames overlap or go backwards');
        last = payload.byteOffset + payload.length - 1;
        consumed += 3 + payload.length;
        out.push({ type, payload: new Uint8Array(payload) });
      }).push(input),
    );
    check(consumed <= input.length, 'plaintext-frame: emitted more bytes than it was given');
    const split = collect((out) => {
      const decoder = new PlaintextFrameDecoder((type, payload) => out.push({ type, payload: new Uint8Array(payload) }));
      for (const chunk of randomChunks(rng, input)) decoder.push(chunk);
    });
    checkSplitFeed('plaintext-frame', whole, split);
    return whole.code;
  },
};

function noiseCorpus(corpus) {
  const bodies = corpus.payloads.slice(0, 64);
  return bodies.map((body) => encodeNoiseFrame(body.subarray(0, 65535)));
}

/** Cipher pair of a completed NNpsk0 handshake: what the client decrypts with in the data phase. */
function transportPair() {
  const initiator = new NoiseHandshake({ role: 'initiator', prologue: esphomePrologue(), psk: PSK });
  const responder = new NoiseHandshake({ role: 'responder', prologue: esphomePrologue(), psk: PSK });
  responder.readMessage(initiator.writeMessage());
  initiator.readMessage(responder.writeMessage());
  const device = responder.split();
  const client = initiator.split();
  return { deviceSend: device.send, client: new NoiseTransportCodec(client.send, client.receive) };
}

const EMPTY = new Uint8Array(0);

/**
 * Noise outer frames (whole vs split), then the data-phase decryption path: bodies the device really
 * encrypted (with fuzzed inner headers and payloads) and forged bodies that must fail authentication.
 */
export const noiseFrame = {
  name: 'noise-frame',
  setup: (corpus) => ({ frames: noiseCorpus(corpus), payloads: corpus.payloads, ...transportPair() }),
  generate(rng, state) {
    const outer = rng.chance(0.15)
      ? rng.bytes(rng.int(200))
      : mutate(rng, concat([rng.pick(state.frames), rng.pick(state.frames)]), state.frames);
    // Inner plaintext: type u16be, length u16be, payload, with the header often lying.
    const payload = rng.chance(0.5) ? mutate(rng, rng.pick(state.payloads), state.payloads, 2048) : rng.bytes(rng.int(64));
    const declared = rng.chance(0.7) ? payload.length : rng.int(0x10000);
    const inner = concat([Uint8Array.of(rng.int(256), rng.int(256), declared >>> 8, declared & 0xff), payload]).subarray(
      0,
      rng.chance(0.1) ? rng.int(4) : undefined,
    );
    return { outer, inner, forge: rng.chance(0.2) };
  },
  describe: (input) => ({
    outer: Buffer.from(input.outer).toString('hex'),
    inner: Buffer.from(input.inner).toString('hex'),
    forge: input.forge,
  }),
  run(input, state, rng) {
    const { outer } = input;
    let last = -1;
    const whole = collect((out) =>
      new NoiseFrameDecoder((body) => {
        check(body.length === 0 || within(body, outer), 'noise-frame: body is not a view into the input');
        check(body.length === 0 || body.byteOffset > last, 'noise-frame: bodies overlap or go backwards');
        if (body.length > 0) last = body.byteOffset + body.length - 1;
        out.push({ type: 0, payload: new Uint8Array(body) });
      }).push(outer),
    );
    const split = collect((out) => {
      const decoder = new NoiseFrameDecoder((body) => out.push({ type: 0, payload: new Uint8Array(body) }));
      for (const chunk of randomChunks(rng, outer)) decoder.push(chunk);
    });
    checkSplitFeed('noise-frame', whole, split);
    // A forged body is never encrypted by the device, so the receive nonce stays in step with the send nonce.
    let body;
    if (input.forge) body = concat([input.inner, rng.bytes(16)]);
    else {
      body = new Uint8Array(input.inner.length + 16);
      state.deviceSend.encryptWithAdInto(EMPTY, input.inner, body);
    }
    const decoded = collect((out) =>
      state.client.decodeBody(body, (type, payload) => {
        check(payload.length <= input.inner.length - 4, 'noise-frame: decrypted payload longer than what was encrypted');
        check(sameBytes(payload, input.inner.subarray(4, 4 + payload.length)), 'noise-frame: decrypted payload differs from the plaintext');
        out.push({ type, payload });
      }),
    );
    if (input.forge)
      check(decoded.code === 'ESPAPI_ERR_DECRYPT', () => `noise-frame: a forged body ended with ${decoded.code}, not DECRYPT`);
    return whole.code ?? decoded.code;
  },
};

/** The device's reply to our fixed message 1: server hello frame + handshake frame, captured from our responder. */
function capturedReply() {
  const written = [];
  const server = new NoiseServerCodec(
    () => {},
    { write: (bytes) => written.push(bytes), reject: (bytes) => written.push(bytes) },
    { psk: PSK, name: 'fuzz-node', mac: '020000000001' },
  );
  const client = new NoiseClientCodec(() => {}, { psk: PSK, ephemeralPrivateKey: CLIENT_EPHEMERAL });
  server.push(client.opening());
  return concat(written);
}

/** A Noise client in its handshake phase fed mutated device replies (hello, rejection, message 2). */
export const noiseHandshake = {
  name: 'noise-handshake',
  setup() {
    const reply = capturedReply();
    const rejection = concat([
      encodeNoiseFrame(Uint8Array.of(1)),
      encodeNoiseFrame(concat([Uint8Array.of(1), Buffer.from('Handshake MAC failure')])),
    ]);
    return { corpus: [reply, rejection] };
  },
  generate: (rng, { corpus }) => (rng.chance(0.1) ? rng.bytes(rng.int(160)) : mutate(rng, rng.pick(corpus), corpus)),
  async run(input) {
    const codec = new NoiseClientCodec(() => {}, { psk: PSK, ephemeralPrivateKey: CLIENT_EPHEMERAL, expectedName: 'fuzz-node' });
    const result = collect(() => codec.push(input));
    if (codec.phase === 'failed') {
      // What connect() awaits must fail as well, with the same typed error: not resolve, not hang.
      const ready = await codec.ready.then(
        () => 'resolved',
        (error) => error,
      );
      check(result.code !== undefined, 'noise-handshake: failed phase without an error from push()');
      check(
        typedCode(ready) === result.code,
        () =>
          `noise-handshake: push() failed with ${result.code}, but ready ${ready === 'resolved' ? 'resolved' : `rejected with ${typedCode(ready) ?? ready?.stack ?? ready}`}`,
      );
    } else if (codec.phase === 'data') {
      await codec.ready; // a completed handshake resolves it; were it left pending, the hang watchdog would say so
    }
    return result.code;
  },
};

function reportOf(address, rssi, addressType, batch, start, end) {
  return { address, rssi, addressType, data: batch.subarray(start, end), start, end };
}

/** Wire type each known field must have: batch field 1 is an entry, entry fields 1-3 varints, 4 bytes. */
const BATCH_WIRE_TYPES = { 1: 2 };
const ENTRY_WIRE_TYPES = { 1: 0, 2: 0, 3: 0, 4: 2 };

/**
 * True when a known field carries another wire type. protobuf-ts then reads it as the declared type anyway,
 * where protobuf's reference implementations (and our decoder) treat it as an unknown field: no oracle there.
 */
function hasWireTypeMismatch(bytes, types = BATCH_WIRE_TYPES) {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    const want = types[field];
    if (want !== undefined && want !== wireType) return true;
    if (types === BATCH_WIRE_TYPES && field === 1) {
      if (hasWireTypeMismatch(reader.bytes(), ENTRY_WIRE_TYPES)) return true;
    } else reader.skip(wireType);
  }
  return false;
}

/** Hand-decoded raw advertisement batches, against the generated protobuf codec as oracle. */
export const adBatch = {
  name: 'ad-batch',
  setup: (corpus) => ({ corpus: corpus.batches, lenient: 0, mismatched: 0 }),
  generate: (rng, { corpus }) => generateBytes(rng, corpus, 300),
  run(input, state) {
    const reports = [];
    const result = collect(() =>
      decodeRawAdvertisements(input, (address, rssi, addressType, batch, start, end) => {
        check(batch === input, 'ad-batch: report handed a buffer other than the batch');
        check(
          start >= 0 && start <= end && end <= input.length,
          () => `ad-batch: AD bytes [${start}, ${end}) outside the ${input.length}-byte batch`,
        );
        check(Number.isSafeInteger(address) && address >= 0, () => `ad-batch: address ${address} is not a non-negative safe integer`);
        check(Number.isInteger(rssi) && rssi >= -(2 ** 31) && rssi < 2 ** 31, () => `ad-batch: rssi ${rssi} outside int32`);
        check(
          Number.isInteger(addressType) && addressType >= 0 && addressType < 2 ** 32,
          () => `ad-batch: address type ${addressType} outside uint32`,
        );
        reports.push(reportOf(address, rssi, addressType, batch, start, end));
      }),
    );
    let expected;
    try {
      expected = BluetoothLERawAdvertisementsResponse.fromBinary(input).advertisements;
    } catch {
      if (result.code === undefined) state.lenient++;
      return result.code;
    }
    if (result.code !== undefined) return result.code;
    try {
      if (hasWireTypeMismatch(input)) {
        state.mismatched++;
        return undefined;
      }
    } catch {
      // protobuf-ts decoded what its own reader cannot walk: no oracle for this input either.
      state.mismatched++;
      return undefined;
    }
    check(expected.length === reports.length, () => `ad-batch: ${reports.length} reports, protobuf-ts decodes ${expected.length}`);
    for (let i = 0; i < reports.length; i++) {
      const [a, b] = [reports[i], expected[i]];
      check(
        a.address === b.address && a.rssi === b.rssi && a.addressType === b.addressType && sameBytes(a.data, b.data),
        () =>
          `ad-batch: report ${i} differs from protobuf-ts: ${JSON.stringify({ ...a, data: undefined })} vs ${JSON.stringify({ ...b, data: undefined })}`,
      );
    }
    return undefined;
  },
  summary: (state) =>
    `${state.lenient} inputs accepted that protobuf-ts rejects, ${state.mismatched} not compared (a known field with another wire type)`,
};

function readAll(ad, bytes) {
  check(ad.localName === undefined || typeof ad.localName === 'string', 'ad-parser: localName is not a string');
  check(ad.localName === undefined || ad.localName.length <= bytes.length, 'ad-parser: localName longer than the input');
  check(ad.localName === undefined || typeof ad.shortName === 'boolean', 'ad-parser: a name without shortName');
  for (const key of ['flags', 'txPower', 'appearance']) {
    const v = ad[key];
    check(v === undefined || Number.isInteger(v), () => `ad-parser: ${key} = ${v}`);
  }
  check(ad.txPower === undefined || (ad.txPower >= -128 && ad.txPower <= 127), 'ad-parser: txPower outside int8');
  let total = 0;
  for (const uuid of ad.serviceUuids) check(UUID.test(uuid), () => `ad-parser: malformed service UUID ${uuid}`);
  check(new Set(ad.serviceUuids).size === ad.serviceUuids.length, 'ad-parser: duplicate service UUIDs');
  for (const [uuid, value] of ad.serviceData) {
    check(UUID.test(uuid), () => `ad-parser: malformed service-data UUID ${uuid}`);
    check(value instanceof Uint8Array, 'ad-parser: service data is not bytes');
    total += value.length;
  }
  for (const [company, value] of ad.manufacturerData) {
    check(Number.isInteger(company) && company >= 0 && company <= 0xffff, () => `ad-parser: company id ${company}`);
    check(value instanceof Uint8Array, 'ad-parser: manufacturer data is not bytes');
    total += value.length;
  }
  check(total <= bytes.length, 'ad-parser: data values add up to more than the input');
}

/** The AD parser, eager (parseAdvertisementData) and lazy (every getter of a raw report, then toJSON). */
export const adParser = {
  name: 'ad-parser',
  setup: (corpus) => ({ corpus: corpus.adData }),
  generate: (rng, { corpus }) => {
    const bytes = generateBytes(rng, corpus, 80);
    const start = rng.chance(0.7) ? 0 : rng.int(bytes.length + 1);
    return { bytes, start, end: rng.chance(0.7) ? bytes.length : start + rng.int(bytes.length - start + 1) };
  },
  describe: (input) => ({ bytes: Buffer.from(input.bytes).toString('hex'), start: input.start, end: input.end }),
  run({ bytes, start, end }, _state, rng) {
    return collect(() => {
      readAll(parseAdvertisementData(bytes.subarray(start, end)), bytes.subarray(start, end));
      const address = rng.chance(0.9) ? rng.int(2 ** 24) * 2 ** 24 + rng.int(2 ** 24) : rng.pick([0, 2 ** 48 - 1]);
      const ad = parseRawAdvertisement(address, -rng.int(128), rng.int(4), bytes, Date.now(), start, end);
      readAll(ad, bytes.subarray(start, end));
      check(within(ad.raw, bytes) && ad.raw.length === end - start, 'ad-parser: raw is not the report bytes');
      for (const value of [...ad.serviceData.values(), ...ad.manufacturerData.values()]) {
        check(within(value, bytes.subarray(start, end)), 'ad-parser: a data value lies outside the report bytes');
      }
      check(/^([0-9A-F]{2}:){5}[0-9A-F]{2}$/.test(ad.mac), () => `ad-parser: mac ${ad.mac}`);
      JSON.stringify(ad);
    }).code;
  },
};
