// Fuzz targets for the two message paths: what a client does with whatever a device sends (ApiConnection's
// dispatch into the generated codecs and the BluetoothProxy/BleConnection listeners), and what the fixture
// server (ApiServer/ApiSession + SimulatedProxy) does with whatever a client sends.
import { EventEmitter } from 'node:events';
import { connect as netConnect } from 'node:net';
import { ScalarType } from '@protobuf-ts/runtime';
import { check, loadDist, mutate, typedCode } from './common.mjs';

const { ApiConnection, BluetoothProxy } = await loadDist('index.js');
const { ApiServer, ApiSession, SimulatedProxy, messageInfoById, encodePlaintextFrame, allMessageInfos } = await loadDist('internal.js');
const { loadProfile, DEFAULT_PROFILE_PATH } = await loadDist('fixture-server/profile.js');
const pb = await loadDist('gen/api_pb.js');

/** The default profile's connectable demo peripheral and its Device Name handle. */
const DEMO = { address: 0xc0ffee000001, addressType: 1, nameHandle: 3 };
/** Deadline of each step of opening a client: below the 1 s after which an input counts as hung. */
const STEP_TIMEOUT_MS = 700;
/** The demo peripheral's counter characteristic (notifies every 500 ms). */
const COUNTER_HANDLE = 18;
/** Messages per client batch: enough to amortise the ping that proves they were all handled. */
const CLIENT_BATCH = 48;
/**
 * Every this many inputs a slot audit runs (see auditSlots): often enough to catch a slot the simulation can no
 * longer free within seconds of the input that broke it, rare enough to cost the throughput little.
 */
const AUDIT_EVERY = { inProcess: 1024, socket: 32 };
/** An audited DISCONNECT frees its slot after the two connected=false replies (2 ms apart): this is plenty. */
const AUDIT_SETTLE_MS = 250;
/** Requests per in-process server input (after the optional Hello). */
const MAX_REQUESTS = 8;

const EDGE_INTS = [0, 1, -1, 2, 127, 128, 255, 256, 0xffff, 0x10000, 2 ** 31 - 1, -(2 ** 31), 2 ** 32 - 1];
const EDGE_LONGS = [0, 1, 2 ** 32, 2 ** 48 - 1, 2 ** 53 - 1];

function edgeScalar(rng, field) {
  switch (field.T) {
    case ScalarType.BOOL:
      return rng.chance(0.5);
    case ScalarType.STRING:
      return rng.pick(['', 'x', '\u0000', '\ufffd'.repeat(rng.int(40)), 'é'.repeat(rng.int(300))]);
    case ScalarType.BYTES:
      return rng.bytes(rng.pick([0, 1, 20, 512, 4000]));
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return rng.pick([0, -1, 1e300, Number.NaN]);
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.SINT64: {
      const n = rng.pick(EDGE_LONGS);
      return field.L === 2 ? n : BigInt(n);
    }
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return rng.pick(EDGE_INTS) >>> 0;
    default:
      return rng.pick(EDGE_INTS) | 0;
  }
}

/** Structure-aware mutation: decoded, a few fields set to edge values (or to `address`), encoded again. */
function mutateMessage(rng, info, payload, address, depth = 0) {
  let message;
  try {
    message = info.type.fromBinary(payload);
  } catch {
    message = info.type.create();
  }
  for (const field of info.type.fields) {
    if (field.localName === 'address' && address !== undefined && rng.chance(0.7)) {
      message.address = address;
      continue;
    }
    if (!rng.chance(0.25)) continue;
    if (field.kind === 'scalar' || field.kind === 'enum') {
      const value = field.kind === 'enum' ? rng.pick(EDGE_INTS) | 0 : edgeScalar(rng, field);
      if (field.repeat) message[field.localName] = Array.from({ length: rng.int(6) }, () => value);
      else message[field.localName] = value;
    } else if (field.kind === 'message' && depth < 2) {
      const sub = { type: field.T() };
      const current = field.repeat ? message[field.localName] : [message[field.localName]].filter(Boolean);
      const mutated = current.map((m) => sub.type.fromBinary(mutateMessage(rng, sub, sub.type.toBinary(m), address, depth + 1)));
      if (rng.chance(0.2)) mutated.push(sub.type.create());
      message[field.localName] = field.repeat ? mutated : mutated[0];
    }
  }
  try {
    return info.type.toBinary(message);
  } catch {
    return payload;
  }
}

function craft(rng, messages, payloads, address) {
  const base = rng.pick(messages);
  const id = rng.chance(0.05) ? rng.int(160) : base.id;
  const info = messageInfoById(id);
  let payload = base.payload;
  if (info !== undefined && rng.chance(0.7)) payload = mutateMessage(rng, info, id === base.id ? payload : new Uint8Array(0), address);
  if (rng.chance(0.3)) payload = mutate(rng, payload, payloads, 8192);
  return { id, payload };
}

/**
 * The client's receive path over a real loopback socket: an attached BluetoothProxy with a live link (GATT
 * listeners, a notification stream, a pending read) receives batches of crafted device messages followed by
 * a ping. The ping's answer proves the batch was handled; a session that ends must end with a typed error.
 */
export const clientMessages = {
  name: 'client-messages',
  stateful: true,
  async setup(corpus) {
    const profile = await loadProfile(DEFAULT_PROFILE_PATH);
    const bluetooth = new SimulatedProxy({ peripherals: profile.peripherals, advertise: false });
    const state = { bluetooth, messages: corpus.d2c, payloads: corpus.payloads, live: undefined, sessions: 0 };
    // The client's answer to our ping is how the device side learns that the whole batch was handled.
    const probe = {
      intercept(session, type) {
        if (type === 8 && session === state.live?.session) state.live.onPong?.();
        return false;
      },
    };
    state.server = new ApiServer({ host: '127.0.0.1', port: 0, name: 'fuzz-client-target', plugins: [probe, bluetooth] });
    await state.server.listen();
    return state;
  },
  generate(rng, state) {
    return Array.from({ length: CLIENT_BATCH }, () =>
      craft(rng, state.messages, state.payloads, rng.chance(0.8) ? DEMO.address : undefined),
    );
  },
  describe: (batch) => batch.map((m) => ({ id: m.id, payload: Buffer.from(m.payload).toString('hex') })),
  async run(batch, state, _rng, beat) {
    const live = state.live ?? (state.live = await openClient(state, beat));
    const session = live.session;
    const answered = new Promise((resolve) => {
      live.onPong = resolve;
    });
    for (const { id, payload } of batch) session.sendRaw(id, payload);
    session.sendRaw(7, new Uint8Array(0));
    const closed = await Promise.race([answered.then(() => undefined), live.api.closed().then((error) => ({ error }))]);
    if (closed === undefined && !live.api.isClosed) return batch.map(() => 'ok');
    state.live = undefined;
    session.close();
    live.api.destroy();
    const error = closed?.error ?? (await live.api.closed());
    const code = typedCode(error);
    check(code !== undefined, () => `client-messages: session ended with an untyped error: ${error?.stack ?? error}`);
    return batch.map((_, i) => (i === batch.length - 1 ? code : 'ok'));
  },
  async teardown(state) {
    state.live?.api.destroy();
    await state.server.close();
  },
  summary: (state) => `${state.sessions} client sessions`,
};

/** A fresh attached client with a live link; each step has its own deadline under the 1 s hang limit, and beats. */
async function openClient(state, beat) {
  state.sessions++;
  const nextSession = state.server.nextSession();
  const api = await ApiConnection.connect({ host: '127.0.0.1', port: state.server.address.port, timeout: STEP_TIMEOUT_MS });
  const session = await nextSession;
  beat();
  const live = { api, session, onPong: undefined };
  try {
    const proxy = await BluetoothProxy.attach(api, { timeout: STEP_TIMEOUT_MS, subscriberCheckTimeout: 300 });
    beat();
    const link = await proxy.connect(DEMO.address, { addressType: DEMO.addressType, timeout: STEP_TIMEOUT_MS });
    beat();
    const stream = await link.notifications(COUNTER_HANDLE, { timeout: STEP_TIMEOUT_MS }).catch(() => undefined);
    if (stream) void drain(stream);
    link.read(DEMO.nameHandle, { timeout: 60_000 }).catch(() => {});
  } catch (error) {
    // A device left in an odd state by the previous batch may refuse; the receive path is what we fuzz.
    if (typedCode(error) === undefined) throw error;
  }
  return live;
}

async function drain(stream) {
  try {
    for await (const _ of stream);
  } catch (error) {
    if (typedCode(error) === undefined) throw error;
  }
}

/** An in-process stand-in for a TCP socket: ApiSession only needs these members. */
class LoopbackSocket extends EventEmitter {
  destroyed = false;
  bytesWritten = 0;
  /** Everything written is taken at once: nothing ever waits for the client. */
  writableLength = 0;
  remoteAddress = '127.0.0.1';
  remotePort = 0;
  setNoDelay() {
    return this;
  }
  cork() {}
  uncork() {}
  pause() {
    return this;
  }
  resume() {
    return this;
  }
  write(bytes) {
    check(!this.destroyed, 'server: wrote to a closed socket');
    this.bytesWritten += bytes.length;
    return true;
  }
  end(bytes) {
    if (bytes) this.write(bytes);
    this.destroy();
  }
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}

const HELLO = encodePlaintextFrame(
  1,
  pb.HelloRequest.toBinary(pb.HelloRequest.create({ clientInfo: 'fuzz', apiVersionMajor: 1, apiVersionMinor: 15 })),
);

/** A simulated proxy on an API server that reports why it drops a session, and the requests to fuzz it with. */
async function serverState(corpus, serverOptions) {
  const requests = [...corpus.c2d];
  // Every client-sourced message id, so requests the recordings lack are reached too.
  for (const info of allMessageInfos()) if (info.direction !== 'device') requests.push({ id: info.id, payload: new Uint8Array(0) });
  const state = { requests, payloads: corpus.payloads, errors: [], inputs: 0, audits: 0, releasedSlots: 0 };
  const profile = await loadProfile(DEFAULT_PROFILE_PATH);
  state.bluetooth = new SimulatedProxy({ peripherals: profile.peripherals, advertise: false });
  state.server = new ApiServer({ ...serverOptions, plugins: [state.bluetooth], onSessionError: (_s, e) => state.errors.push(e) });
  return state;
}

const auditSummary = (state) => `${state.audits} slot audits released ${state.releasedSlots} slots`;

async function serverTeardown(state) {
  await state.server.close();
  checkServerErrors(state);
}

const SUBSCRIBE = encodePlaintextFrame(
  66,
  pb.SubscribeBluetoothLEAdvertisementsRequest.toBinary(pb.SubscribeBluetoothLEAdvertisementsRequest.create({ flags: 1 })),
);
const release = (address) =>
  encodePlaintextFrame(
    68,
    pb.BluetoothDeviceRequest.toBinary(
      pb.BluetoothDeviceRequest.create({ address, requestType: pb.BluetoothDeviceRequestType.DISCONNECT }),
    ),
  );

/**
 * The proxy must free every slot the input made it reserve once a client asks, while the input's session is
 * still open (after it closes, the simulation drops a gone subscriber's slots itself, leaked or not): a second
 * session subscribes (it becomes the subscriber unless the input's session is one) and sends DISCONNECT for
 * every address holding a slot, as our pool releases orphans, and within AUDIT_SETTLE_MS none may be left.
 */
async function auditSlots(state) {
  state.audits++;
  const socket = new LoopbackSocket();
  const auditor = new ApiSession(state.server, socket);
  state.server.sessions.add(auditor);
  const held = state.bluetooth.linkAddresses;
  state.releasedSlots += held.length;
  socket.emit('data', Buffer.concat([HELLO, SUBSCRIBE, ...held.map(release)]));
  const deadline = performance.now() + AUDIT_SETTLE_MS;
  while (state.bluetooth.linkAddresses.length > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
  const left = state.bluetooth.linkAddresses;
  socket.destroy();
  check(
    left.length === 0,
    () => `server: the proxy still holds slots for ${left.map((a) => a.toString(16)).join(', ')} ${AUDIT_SETTLE_MS} ms after DISCONNECTs`,
  );
}

function craftRequests(rng, state) {
  const parts = rng.chance(0.85) ? [HELLO] : [];
  const count = 1 + rng.int(MAX_REQUESTS);
  for (let i = 0; i < count; i++) {
    const { id, payload } = craft(rng, state.requests, state.payloads, rng.chance(0.6) ? DEMO.address : undefined);
    parts.push(encodePlaintextFrame(id & 0xffff, payload.subarray(0, 65535)));
  }
  let bytes = Uint8Array.from(Buffer.concat(parts));
  if (rng.chance(0.1)) bytes = mutate(rng, bytes, state.payloads, 16384);
  return bytes;
}

function checkServerErrors(state) {
  const errors = state.errors.splice(0);
  for (const error of errors)
    check(typedCode(error) !== undefined, () => `server: dropped a session with an untyped error: ${error?.stack ?? error}`);
  return errors.map(typedCode);
}

/** The fixture server's request path in process: ApiSession + SimulatedProxy on an in-memory socket. */
export const serverRequests = {
  name: 'server-requests',
  stateful: true,
  setup: (corpus) => serverState(corpus, { name: 'fuzz-server-target' }),
  generate: craftRequests,
  async run(bytes, state) {
    const socket = new LoopbackSocket();
    const session = new ApiSession(state.server, socket);
    state.server.sessions.add(session);
    socket.emit('data', Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    if (++state.inputs % AUDIT_EVERY.inProcess === 0) await auditSlots(state);
    socket.destroy();
    check(!state.server.sessions.has(session), 'server: a closed session stayed registered');
    // Let the simulation's timers (connects, link loss, slot reports) run now and then.
    if ((state.inputs & 255) === 0) await new Promise((resolve) => setImmediate(resolve));
    return checkServerErrors(state)[0];
  },
  teardown: serverTeardown,
  summary: auditSummary,
};

/** The same request path over real TCP: fewer inputs, but the socket, corking and close paths are the real ones. */
export const serverSocket = {
  name: 'server-socket',
  stateful: true,
  async setup(corpus) {
    const state = await serverState(corpus, { host: '127.0.0.1', port: 0, name: 'fuzz-server-socket' });
    await state.server.listen();
    return state;
  },
  generate: craftRequests,
  async run(bytes, state) {
    const socket = netConnect({ host: '127.0.0.1', port: state.server.address.port });
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.on('error', () => {});
    socket.on('data', () => {});
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write(bytes);
    // The server either drops us (bad input) or answers and waits; give it a moment, then hang up.
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2))]);
    if (++state.inputs % AUDIT_EVERY.socket === 0) await auditSlots(state);
    socket.destroy();
    await closed;
    return checkServerErrors(state)[0];
  },
  teardown: serverTeardown,
  summary: auditSummary,
};
