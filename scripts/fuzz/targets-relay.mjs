// Fuzz targets for the relay's downstream path, with an authorisation oracle. A victim client holds a link to one
// device for the whole run; an attacker host (another loopback address, so another client to the relay) with two
// sessions sends, from one of them per input, batches of crafted requests (structure-aware mutations, repeated
// fields, addresses beyond 48 bits, byte-level damage). Every request the upstream proxy receives is decoded there
// and judged against who sent it: it must address a link its sender opened, or be a connect / unpair / clear-cache
// for a device no other client holds; and the proxy never holds more links of the attacker host's sessions (gone
// ones included: their links count until the proxy has freed them) than its slot quota. The restricted variant's policy keeps the attacker host from scanner-mode changes, unpair
// and clear-cache: none of those from it may reach the proxy, its own links' included.
import { connect as netConnect } from 'node:net';
import { check, loadDist, mutate, typedCode, varint } from './common.mjs';

const { ApiConnection, BluetoothProxy, RelayServer } = await loadDist('index.js');
const { messageInfoById, encodePlaintextFrame, PlaintextFrameDecoder, startSimulatedProxy } = await loadDist('internal.js');
const { loadProfile, DEFAULT_PROFILE_PATH } = await loadDist('fixture-server/profile.js');
const { formatMac } = await loadDist('bluetooth/address.js');
const pb = await loadDist('gen/api_pb.js');

/** The victim's device (the default profile's demo peripheral) and the attacker's own (clones of it), two per session. */
const VICTIM = 0xc0ffee000001;
const OWN = [0xc0ffee000100, 0xc0ffee000101, 0xc0ffee000102, 0xc0ffee000103];
const OWN_OF_SESSION = [OWN.slice(0, 2), OWN.slice(2, 4)];
/** The attacker host: Linux routes all of 127/8 to lo, so the relay sees another client than the victim's 127.0.0.1. */
const ATTACKER_ADDRESS = '127.0.0.2';
/** The slot quota of a client address; the proxy has room for the victim's link and twice that. */
const QUOTA = 2;
const SLOTS = 1 + 2 * QUOTA;
const STATUS_HANDLE = 12;
/** The firmware opens, unpairs and clears the cache of the low 48 bits of a uint64 address. */
const LOW48 = 2 ** 48;
/** Scanner-mode values from here on are the harness's markers: the victim sends one after each batch. */
const MARKER = 0x40000000;
/**
 * Each wait of one input stays well under the 1 s after which the main thread calls it a hang. It counts the time
 * the worker's event loop ran, not the wall clock: on a loaded host the thread can be starved for longer than this,
 * and a lone timer then fires in the loop's timers phase before its poll phase has read the frames already waiting
 * on the loopback sockets (a marker "lost" that was only not read yet).
 */
const WAIT_MS = 600;
/** The wait's clock: a tick this late or later means the thread was starved, and only counts as TICK_MS * 2. */
const TICK_MS = 20;
/** How often an input starts with its session's connects to its own devices. */
const RECONNECT_CHANCE = 0.25;
/** Requests per batch. */
const MAX_REQUESTS = 8;
/** Every this many inputs the victim reads its device: its link must be up and its data untouched. */
const VICTIM_CHECK_EVERY = 64;
/** Request ids the relay acts on; the crafted requests mostly use these. */
const BLUETOOTH_REQUESTS = [66, 68, 70, 73, 75, 76, 77, 78, 80, 87, 124, 127, 145];
/** Requests the relay may send upstream for a client (plus its own keep-alive pings). */
const FORWARDED = new Set([68, 70, 73, 75, 76, 77, 78, 127, 145]);
const KEEPALIVE = new Set([7, 8]);
const CONNECT_TYPES = new Set([0, 4, 5]);
const UNPAIR = 3;
const CLEAR_CACHE = 6;
const DISCONNECT = 1;

const EDGE_INTS = [0, 1, -1, 2, 3, 4, 5, 6, 7, 127, 128, 255, 0xffff, 2 ** 31 - 1, 2 ** 32 - 1];

const frame = (id, message) => encodePlaintextFrame(id, messageInfoById(id).type.toBinary(messageInfoById(id).type.create(message)));
const connectFrame = (address) => frame(68, { address, requestType: 5, hasAddressType: true, addressType: 1 });
const HELLO = frame(1, { clientInfo: 'fuzz-attacker', apiVersionMajor: 1, apiVersionMinor: 15 });
const SUBSCRIBE = frame(66, { flags: 1 });
const PING = encodePlaintextFrame(7, new Uint8Array(0));

/** Addresses a crafted request points at: its own links, the victim's, the victim's behind high bits, others. */
function pickAddress(rng) {
  return rng.pick([
    OWN[0],
    OWN[1],
    VICTIM,
    VICTIM,
    LOW48 + VICTIM,
    LOW48 + OWN[0],
    0,
    2 ** 48 - 1,
    2 ** 53 - 1,
    rng.u32() * 65536 + rng.int(65536),
  ]);
}

/** Decoded, fields set to edge values or addresses, encoded again. */
function mutateFields(rng, info, payload) {
  let message;
  try {
    message = info.type.fromBinary(payload);
  } catch {
    message = info.type.create();
  }
  for (const field of info.type.fields) {
    if (field.localName === 'address') {
      if (rng.chance(0.9)) message.address = pickAddress(rng);
    } else if (field.kind === 'enum' || (field.kind === 'scalar' && field.T !== 9 && field.T !== 12)) {
      // ScalarType: 8 bool, 13 uint32; the rest of the request fields are int32 or enums.
      if (rng.chance(0.3))
        message[field.localName] = field.T === 8 ? rng.chance(0.5) : field.T === 13 ? rng.pick(EDGE_INTS) >>> 0 : rng.pick(EDGE_INTS) | 0;
    } else if (field.kind === 'scalar' && field.T === 12 && rng.chance(0.3)) {
      message[field.localName] = rng.bytes(rng.pick([0, 1, 2, 20, 600]));
    }
  }
  try {
    return info.type.toBinary(message);
  } catch {
    return payload;
  }
}

/** One crafted request: mostly a Bluetooth request with mutated fields, often with its address field repeated. */
function craft(rng, corpus) {
  const base = rng.chance(0.8) ? { id: rng.pick(BLUETOOTH_REQUESTS), payload: new Uint8Array(0) } : rng.pick(corpus.c2d);
  const id = base.id;
  const info = messageInfoById(id);
  let payload = base.payload;
  if (info !== undefined && rng.chance(0.85)) payload = mutateFields(rng, info, payload);
  if (rng.chance(0.35)) {
    // The address field once more, after (last wins) or before the others.
    const extra = Uint8Array.from([0x08, ...varint(pickAddress(rng))]);
    payload = rng.chance(0.7) ? Uint8Array.from([...payload, ...extra]) : Uint8Array.from([...extra, ...payload]);
  }
  if (rng.chance(0.05)) payload = mutate(rng, payload, corpus.payloads, 2048);
  return { id, payload };
}

/** A plaintext client on a raw socket from the attacker host: frames out as given, frames in decoded, close noticed. */
function openRaw(port) {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress: ATTACKER_ADDRESS });
    const client = { socket, closed: false, waiters: new Set(), pongs: 0 };
    const decoder = new PlaintextFrameDecoder((type) => {
      if (type === 8) client.pongs++;
      for (const wake of [...client.waiters]) wake();
    });
    socket.on('data', (chunk) => {
      try {
        decoder.push(chunk);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      client.closed = true;
      client.gone = true;
      for (const wake of [...client.waiters]) wake();
    });
    socket.once('connect', () => resolve(client));
    socket.once('error', reject);
  });
}

/**
 * Resolves when `test()` holds (checked on every wake-up of `waiters`), or with false once the event loop has run
 * for `ms` (see WAIT_MS). A starved stretch counts as two ticks and beats: the thread was not running, so the input
 * is not hanging; the I/O that waited meanwhile gets its turn before the next tick.
 */
function waitFor(waiters, test, beat, ms = WAIT_MS) {
  return new Promise((resolve) => {
    if (test()) return resolve(true);
    let left = ms;
    let last = performance.now();
    const finish = (result) => {
      clearInterval(timer);
      waiters.delete(wake);
      resolve(result);
    };
    const wake = () => {
      if (test()) finish(true);
    };
    const timer = setInterval(() => {
      const now = performance.now();
      const elapsed = now - last;
      last = now;
      if (elapsed > TICK_MS * 2) beat();
      left -= Math.min(elapsed, TICK_MS * 2);
      if (left <= 0) finish(test());
    }, TICK_MS);
    waiters.add(wake);
  });
}

/**
 * Where the relay could be holding the victim's frames, for a marker that did not arrive: its session not read
 * (UpstreamHold, or its replies piling up) or requests queued for the upstream proxy.
 */
function holds(state) {
  const proxy = state.relay.proxies[0];
  const sessions = [...(proxy.server?.sessions ?? [])].filter((s) => s.clientInfo === 'fuzz-victim');
  const victim = sessions.map((s) => `victim session: input held ${s.inputHeld}, paused ${s.inputPaused}, backlog ${s.backlogBytes} B`);
  return [...victim, `upstream send backlog ${proxy.bluetooth?.api.sendBacklog ?? 'none'} B`].join('; ');
}

/** The default profile with the attacker's devices added (clones of the demo peripheral). */
async function profile() {
  const base = await loadProfile(DEFAULT_PROFILE_PATH);
  const demo = base.peripherals.find((p) => p.address === VICTIM);
  const clones = OWN.map((address, i) => ({ ...demo, address, mac: address.toString(16), name: `own-${i}` }));
  return { ...base, peripherals: [...base.peripherals, ...clones] };
}

/**
 * The oracle. `sender` is the attacker session whose batch preceded the marker (the relay's own clean-up of a
 * gone session is attributed to it too); `owners` maps every address whose connect reached the proxy to the
 * session that sent it, and the victim holds VICTIM throughout.
 */
function judge(state, request, sender) {
  const { type, message } = request;
  if (KEEPALIVE.has(type)) return;
  check(FORWARDED.has(type), () => `relay: message ${type} of a client reached the proxy (${JSON.stringify(request.json)})`);
  state.judged++;
  if (type === 127) {
    // Allowed to every client by default, as on the firmware; the restricted variant's policy forbids it.
    check(!state.restricted, () => `relay: a scanner-mode change of the restricted attacker reached the proxy (${request.json})`);
    state.scannerModes++;
    return;
  }
  const address = Number(message.address ?? 0);
  const device = address % LOW48;
  const owner = state.owners.get(address);
  const what = () => `${messageInfoById(type).name} ${JSON.stringify(request.json)} from attacker session ${sender.id}`;
  if (type === 68 && CONNECT_TYPES.has(message.requestType)) {
    check(device !== VICTIM, () => `relay: a connect for the victim's device reached the proxy: ${what()}`);
    state.owners.set(address, sender);
    state.connects++;
    return;
  }
  if (type === 68 && (message.requestType === UNPAIR || message.requestType === CLEAR_CACHE)) {
    check(!state.restricted, () => `relay: an unpair / clear-cache of the restricted attacker reached the proxy: ${what()}`);
    check(device !== VICTIM, () => `relay: an unpair / clear-cache of the victim's device reached the proxy: ${what()}`);
    state.deviceOps++;
    return;
  }
  if (type === 68 && message.requestType === DISCONNECT && owner !== undefined && owner !== state.victimSession) {
    // The relay releasing the links of an attacker session that went away or unsubscribed: no session held the
    // link when the proxy got the disconnect. The victim's link is never released.
    if (owner.gone || request.heldBy === undefined) {
      state.releases++;
      return;
    }
  }
  check(
    owner === sender,
    () => `relay: a request for a link the sender does not own reached the proxy: ${what()} (owner: ${owner?.id ?? 'none'})`,
  );
  state.owned++;
}

/**
 * Sends the victim's next marker and judges everything the proxy received before it, as sent by `sender`
 * (`own` picks out one request of the victim's own, which is not judged).
 */
async function judgeSegment(state, sender, beat, own) {
  // A client's connect for an address it holds waits while its previous one is in flight, and goes out once the
  // proxy has answered the ping behind that one: wait for every such ping, so that it lands in its sender's segment.
  const quiet = () => {
    // The live upstream session's, read again at each wake-up: the relay may have reconnected meanwhile.
    const api = state.relay.proxies[0].bluetooth?.api;
    return api === undefined || api.isClosed || api.pongsReceived >= api.pingsSent;
  };
  check(await waitFor(state.logWaiters, quiet, beat), () => `relay: the proxy left the relay's pings unanswered (${holds(state)})`);
  const seq = ++state.markers;
  state.victim.sendRaw(127, pb.BluetoothScannerSetModeRequest.toBinary({ mode: MARKER + seq }));
  const isMarker = (r) => r.type === 127 && r.message?.mode === MARKER + seq;
  const arrived = await waitFor(state.logWaiters, () => state.log.slice(state.cursor).some(isMarker), beat);
  check(arrived, () => {
    const upstream = state.relay.snapshot().proxies[0].upstream;
    return `relay: the victim's marker ${seq} did not reach the proxy (upstream ${upstream.state}${upstream.lastError ? `: ${upstream.lastError}` : ''}; ${holds(state)})`;
  });
  beat();
  const segment = state.log.slice(state.cursor).filter((r) => !isMarker(r));
  state.cursor = state.log.length;
  const mine = own === undefined ? -1 : segment.findIndex(own);
  if (mine >= 0) segment.splice(mine, 1);
  for (const request of segment) judge(state, request, sender);
}

async function openAttacker(state, beat) {
  const client = await openRaw(state.port);
  client.id = ++state.sessions;
  client.gone = false;
  beat();
  return client;
}

/** The links the proxy holds for the attacker host's sessions, being released or not: never more than its quota. */
function checkQuota(state) {
  const held = state.node.bluetooth.allocated.filter((address) => {
    const owner = state.owners.get(address);
    return owner !== undefined && owner !== state.victimSession;
  });
  state.mostHeld = Math.max(state.mostHeld, held.length);
  check(
    held.length <= QUOTA,
    () =>
      `relay: the proxy holds ${held.length} links of the attacker host's sessions, over its quota of ${QUOTA}: ` +
      held.map((a) => `${a.toString(16)} (session ${state.owners.get(a).id})`).join(', '),
  );
}

/** The relay-requests target; `restricted`: the attacker host may not change the scanner mode, unpair or clear the cache. */
function relayTarget(name, restricted) {
  return {
    name,
    stateful: true,
    async setup(corpus) {
      const state = {
        corpus,
        restricted,
        mostHeld: 0,
        errors: [],
        log: [],
        logWaiters: new Set(),
        owners: new Map(),
        markers: 0,
        sessions: 0,
        judged: 0,
        owned: 0,
        connects: 0,
        deviceOps: 0,
        releases: 0,
        scannerModes: 0,
        victimChecks: 0,
        inputs: 0,
        attackers: [undefined, undefined],
      };
      state.node = await startSimulatedProxy({ name: 'fuzz-relay-upstream', slots: SLOTS, advertise: false, profile: await profile() });
      // Everything the proxy receives, decoded as the proxy decodes it.
      state.node.server.plugins.unshift({
        intercept(_session, type, payload) {
          const info = messageInfoById(type);
          let message;
          let json = Buffer.from(payload).toString('hex');
          try {
            message = info?.type.fromBinary(payload);
            if (message !== undefined) json = info.type.toJson(message);
          } catch {
            // Shown as hex; a message the proxy cannot decode is judged by its id alone.
          }
          // Which session of the relay held the link when the proxy got a disconnect for it (none: a release).
          const heldBy =
            type === 68 && message?.requestType === DISCONNECT
              ? state.relay?.snapshot().proxies[0]?.clients.find((c) => c.slots.includes(formatMac(Number(message.address))))?.id
              : undefined;
          state.log.push({ type, message, json, heldBy });
          for (const wake of [...state.logWaiters]) wake();
          return false;
        },
      });
      // Only the victim's address may do what the restricted variant forbids (its markers are scanner-mode changes).
      const victimOnly = ['127.0.0.1'];
      state.relay = new RelayServer({
        proxies: [{ host: '127.0.0.1', port: state.node.server.address.port }],
        watchdog: false,
        slotsPerClient: QUOTA,
        ...(restricted ? { clientPolicy: { scannerMode: victimOnly, unpair: victimOnly, clearCache: victimOnly } } : {}),
      });
      // The relay's pings are answered on its upstream session, each answer possibly letting a held-back connect go
      // out: wake the waiters on the pongs of every upstream session (registered before the first one starts).
      state.relay.proxies[0].onBluetooth((bluetooth) => {
        bluetooth.api.onRaw(8, () => {
          for (const wake of [...state.logWaiters]) wake();
        });
      });
      const [listening] = await state.relay.start({ timeout: 5000 });
      state.port = listening.port;
      const server = state.relay.proxies[0].server;
      server.options.onSessionError = (_session, error) => state.errors.push(error);
      state.victim = await ApiConnection.connect({ host: '127.0.0.1', port: state.port, clientInfo: 'fuzz-victim', timeout: 5000 });
      state.victimProxy = await BluetoothProxy.attach(state.victim, { timeout: 5000, watchdog: false });
      state.victimLink = await state.victimProxy.connect(VICTIM, { addressType: 1, timeout: 5000 });
      state.victimSession = { id: 'victim', gone: false };
      state.owners.set(VICTIM, state.victimSession);
      state.cursor = state.log.length;
      return state;
    },
    generate(rng, state) {
      const session = rng.int(2);
      // Now and then a session asks for its own links again (refused while the host is at its quota, e.g. with the
      // links of a session that went away still being released), so that most inputs find it holding some.
      const reconnect = rng.chance(RECONNECT_CHANCE);
      const count = 1 + rng.int(MAX_REQUESTS);
      return { session, reconnect, requests: Array.from({ length: count }, () => craft(rng, state.corpus)) };
    },
    describe: ({ session, reconnect, requests }) => ({
      session,
      reconnect,
      requests: requests.map((m) => ({ id: m.id, payload: Buffer.from(m.payload).toString('hex') })),
    }),
    async run({ session, reconnect, requests: batch }, state, _rng, beat) {
      if (state.attackers[session]?.closed) state.attackers[session] = undefined;
      let attacker = state.attackers[session];
      const fresh = attacker === undefined;
      if (fresh) attacker = state.attackers[session] = await openAttacker(state, beat);
      const frames = batch.map(({ id, payload }) => encodePlaintextFrame(id & 0xffff, payload.subarray(0, 65535)));
      // A fresh session says Hello, subscribes and opens its own two links first (the host's quota: both sessions' two).
      const own = OWN_OF_SESSION[session].map(connectFrame);
      const setup = fresh ? [HELLO, SUBSCRIBE, ...own] : reconnect ? own : [];
      const pongs = attacker.pongs;
      attacker.socket.write(Buffer.concat([...setup, ...frames, PING]));
      // Answered ping: every request before it was handled. A closed session: the relay dropped it (bad input).
      const answered = await waitFor(attacker.waiters, () => attacker.pongs > pongs || attacker.closed, beat);
      check(answered, 'relay: no answer to a ping behind the batch, and the session is still open');
      beat();
      if (attacker.closed) {
        attacker.gone = true;
        state.attackers[session] = undefined;
      }
      await judgeSegment(state, attacker, beat);
      checkQuota(state);
      check(state.victimLink.isConnected, "relay: the victim's link was closed (by a request, or the relay lost its upstream session)");
      if (++state.inputs % VICTIM_CHECK_EVERY === 0) {
        // The victim reads its device: its data must be untouched. Its own read is the one request of its
        // session in the segment the next marker closes.
        state.victimChecks++;
        const value = new TextDecoder().decode(await state.victimLink.read(STATUS_HANDLE, { timeout: WAIT_MS }));
        check(value === 'ready', () => `relay: the victim's device reads ${JSON.stringify(value)}, not 'ready': someone wrote to it`);
        beat();
        await judgeSegment(
          state,
          attacker,
          beat,
          (r) => r.type === 73 && r.message?.address === VICTIM && r.message?.handle === STATUS_HANDLE,
        );
      }
      const errors = state.errors.splice(0);
      for (const error of errors)
        check(typedCode(error) !== undefined, () => `relay: dropped a client with an untyped error: ${error?.stack ?? error}`);
      return batch.map((_, i) => (i === batch.length - 1 && errors.length > 0 ? typedCode(errors[0]) : 'ok'));
    },
    async teardown(state) {
      for (const attacker of state.attackers ?? []) attacker?.socket.destroy();
      await state.victimLink?.disconnect({ timeout: 1000 }).catch(() => {});
      state.victim?.destroy();
      await state.relay?.close({ timeout: 500 });
      await state.node?.server.close();
    },
    summary: (state) =>
      `${state.judged} upstream requests judged (${state.owned} on the sender's own links, ${state.connects} connects, ` +
      `${state.deviceOps} unpair/clear-cache, ${state.scannerModes} scanner modes, ${state.releases} releases of gone or unsubscribed sessions' links), ` +
      `${state.sessions} attacker sessions (most links held by the attacker host at once: ${state.mostHeld} of ${QUOTA}), ` +
      `${state.victimChecks} victim reads`,
  };
}

export const relayRequests = relayTarget('relay-requests', false);
export const relayRequestsRestricted = relayTarget('relay-requests-restricted', true);
