// Worker thread of the hostile run: runs one attack against 127.0.0.1:port until told to stop, in its own event
// loop so that the attacker's work does not slow the well-behaved client. Reports what its sockets went through.
import { connect } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { loadDist, sleep } from './common.mjs';

const { encodePlaintextFrame } = await loadDist('frame/plaintext.js');
const { NoiseClientCodec } = await loadDist('connection/frame-codec.js');
const { parsePsk } = await loadDist('noise/psk.js');
const { HelloRequest } = await loadDist('gen/api_pb.js');

const { attack, port, psk, params } = workerData;
const HELLO = HelloRequest.toBinary(HelloRequest.create({ clientInfo: `hostile ${attack}`, apiVersionMajor: 1, apiVersionMinor: 15 }));
/** Connects opened at once, at most: the kernel's accept queue on loopback is a few thousand. */
const CONNECT_BATCH = 500;

const stats = { opened: 0, refused: 0, closedByPeer: 0, bytesWritten: 0, bytesRead: 0, handshakes: 0, rejections: 0 };
const sockets = new Set();
let stopping = false;

parentPort.on('message', (message) => {
  if (message?.type !== 'stop') return;
  stopping = true;
  for (const socket of sockets) socket.destroy();
  parentPort.postMessage({ type: 'done', stats });
});

/** Opens one connection; counts how it ends. */
function open({ read = true } = {}) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    sockets.add(socket);
    let connected = false;
    socket.on('error', () => {});
    socket.on('close', () => {
      sockets.delete(socket);
      if (!connected) stats.refused++;
      else if (!stopping) stats.closedByPeer++;
      resolve(undefined);
    });
    socket.once('connect', () => {
      connected = true;
      stats.opened++;
      if (read) socket.on('data', (chunk) => (stats.bytesRead += chunk.length));
      else socket.pause();
      resolve(socket);
    });
  });
}

function write(socket, bytes) {
  if (socket.destroyed) return true;
  stats.bytesWritten += bytes.length;
  return socket.write(bytes);
}

/** A session past Hello: plaintext at once, Noise after the handshake (the attacker knows the key). */
async function session({ read }) {
  const socket = await open({ read: true });
  if (socket === undefined) return undefined;
  if (psk === undefined) {
    write(socket, encodePlaintextFrame(1, HELLO));
    if (!read) socket.removeAllListeners('data').pause();
    return { socket, encode: (type, payload) => encodePlaintextFrame(type, payload) };
  }
  const codec = new NoiseClientCodec(() => {}, { psk: parsePsk(psk) });
  socket.on('data', (chunk) => {
    try {
      codec.push(chunk);
    } catch {
      socket.destroy();
    }
  });
  write(socket, codec.opening());
  try {
    await codec.ready;
  } catch {
    socket.destroy();
    return undefined;
  }
  stats.handshakes++;
  write(socket, codec.encode(1, HELLO));
  if (!read) socket.removeAllListeners('data').pause();
  return { socket, encode: (type, payload) => codec.encode(type, payload) };
}

const EMPTY = new Uint8Array(0);

/** `bytes` worth of DeviceInfoRequests (the smallest request with the largest answer), in 64 KiB writes. */
function* requestChunks(encode, bytes) {
  // Each Noise frame carries its own nonce: every frame is encoded afresh (and none may be encoded unsent).
  const frameBytes = psk === undefined ? 3 : 3 + 4 + 16;
  const perChunk = Math.floor(65536 / frameBytes);
  let sent = 0;
  while (sent < bytes) {
    const frames = [];
    for (let i = 0; i < perChunk; i++) frames.push(encode(9, EMPTY));
    const chunk = Buffer.concat(frames);
    sent += chunk.length;
    yield chunk;
  }
}

const attacks = {
  /** Sessions that send `bytes` of requests each and never read a reply. */
  async floodNonReader({ sessions, bytes }) {
    const opened = await Promise.all(Array.from({ length: sessions }, () => session({ read: false })));
    const flood = async (s) => {
      if (s === undefined) return;
      // Plaintext frames are all the same: one buffer written many times. Noise frames each take their own nonce.
      if (psk === undefined) {
        const chunk = Buffer.concat(Array.from({ length: 21_845 }, () => s.encode(9, EMPTY)));
        for (let sent = 0; sent < bytes; sent += chunk.length) write(s.socket, chunk);
      } else {
        for (const chunk of requestChunks(s.encode, bytes)) {
          write(s.socket, chunk);
          // Encrypting is the attacker's work: let its other sockets and the stop message through.
          await new Promise((r) => setImmediate(r));
          if (stopping) return;
        }
      }
    };
    await Promise.all(opened.map(flood));
  },
  /** Sessions that read (and discard) their answers and send requests as fast as their socket takes them. */
  async floodReader({ sessions }) {
    const opened = await Promise.all(Array.from({ length: sessions }, () => session({ read: true })));
    // Launched once the sessions are open; the flood goes on until stopped.
    void Promise.all(
      opened.map(async (s) => {
        if (s === undefined) return;
        while (!stopping && !s.socket.destroyed) {
          const chunk = requestChunks(s.encode, 65_536).next().value;
          if (!write(s.socket, chunk)) await new Promise((r) => s.socket.once('drain', r).once('close', r));
        }
      }),
    );
  },
  /** Sockets that send the same few bytes (a Noise header, a partial frame...) and then nothing; with `read: false` they never read either. */
  async stalled({ sockets: count, bytes, read = true }) {
    const payload = Uint8Array.from(bytes);
    for (let done = 0; done < count && !stopping; done += CONNECT_BATCH) {
      const batch = await Promise.all(Array.from({ length: Math.min(CONNECT_BATCH, count - done) }, () => open({ read })));
      for (const socket of batch) if (socket !== undefined) write(socket, payload);
    }
  },
  /** Sockets that connect and never send anything (pre-Hello idlers, or thousands of sessions). */
  async idle({ sockets: count }) {
    for (let done = 0; done < count && !stopping; done += CONNECT_BATCH) {
      await Promise.all(Array.from({ length: Math.min(CONNECT_BATCH, count - done) }, () => open({ read: true })));
    }
  },
  /** Sessions past Hello that then say nothing and answer no ping. */
  async silentAfterHello({ sessions }) {
    await Promise.all(Array.from({ length: sessions }, () => session({ read: true })));
  },
  /** Sockets that send a HelloRequest frame one byte per second, forever (slowloris). */
  async slowloris({ sockets: count }) {
    const frame = encodePlaintextFrame(1, HELLO);
    const opened = (await Promise.all(Array.from({ length: count }, () => open({ read: true })))).filter(Boolean);
    void (async () => {
      for (let i = 0; !stopping; i = (i + 1) % frame.length) {
        for (const socket of opened) write(socket, frame.subarray(i, i + 1));
        await sleep(1_000);
      }
    })();
  },
  /** New sessions that send a frame the firmware refuses (an oversized or malformed header), again and again. */
  async garbage({ rate }) {
    const frames = [
      Uint8Array.of(0, 0xff, 0xff, 0x03),
      Uint8Array.of(0x05, 0, 7),
      Uint8Array.of(0, 0x80, 0x80, 0x80, 0x80, 0x01),
      Uint8Array.of(1, 0xff, 0xff),
    ];
    void (async () => {
      for (let i = 0; !stopping; i++) {
        const socket = await open({ read: true });
        if (socket !== undefined) write(socket, frames[i % frames.length]);
        await sleep(1_000 / rate);
      }
    })();
  },
};

const run = attacks[attack];
if (run === undefined) throw new Error(`unknown attack ${attack}`);
run(params)
  .then(() => parentPort.postMessage({ type: 'started', stats }))
  .catch((error) => parentPort.postMessage({ type: 'error', message: String(error?.stack ?? error) }));
