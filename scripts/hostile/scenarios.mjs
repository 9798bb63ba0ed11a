// What the hostile run does: each scenario is one attack on one target, with the memory the target may use for it.
import { KiB, MiB, PSK } from './common.mjs';

/**
 * What one session may hold, as README "Security" states it: its backlog up to the close level (1 MiB), the rest
 * of one read held while it is paused (64 KiB), Node's read buffer (64 KiB) and a partial frame (32 KiB), plus
 * the session's own objects.
 */
export const SESSION_BOUND = 1 * MiB + 64 * KiB + 64 * KiB + 32 * KiB + 16 * KiB;
/** What an idle or stalled session may hold: its objects, a partial frame of at most 256 bytes, socket buffers. */
export const IDLE_SESSION_BOUND = 24 * KiB;
/**
 * What RSS may move by on its own under load: answering a flood allocates fast (a DeviceInfoResponse is built
 * and encoded per request), and V8 lets garbage grow its heap before a full collection; pages it took stay in
 * RSS. Measured: +87 MB for a flood whose sender reads every answer (nothing queued at all), +102 MB at most
 * with six non-reading flooders on the relay, 0.1-0.7 MB of heap left after a forced GC. Growth without bound
 * (the 2.3 GB this run was written for: 600 MB after 10 s) is far beyond it.
 */
export const RSS_SLACK = 128 * MiB;
/** What the heap may keep after a forced GC at the end of an attack (compiled code, caches, the attack's sessions' objects). */
export const HEAP_RETAINED_SLACK = 8 * MiB;
/** What Buffers (external, arrayBuffers) may move by on their own: socket read buffers and TLS-free crypto scratch. */
export const BUFFER_SLACK = 8 * MiB;

const STALLED_NOISE = [1, 0xff, 0xff];
/** An empty client hello, then a handshake header of the largest allowed size (128) and 10 bytes of it. */
const STALLED_ALLOWED = [1, 0, 0, 1, 0, 0x80, ...new Array(10).fill(0)];

const serve = (...args) => ({ command: 'serve', args: ['--port', '0', ...args] });
const serveNoise = (...args) => ({ command: 'serve', args: ['--port', '0', ...args], env: { ESPHOME_BLE_PSK: PSK }, psk: PSK });
const relay = (...args) => ({ command: 'relay', args: ['--listen', '127.0.0.1:0', '--json', ...args], relay: true });
const relayNoise = (...args) => ({ ...relay(...args), env: { ESPHOME_BLE_DOWNSTREAM_PSK: PSK }, psk: PSK });

/** Every scenario; `quick` ones make the CI run. Sizes are (full, quick). */
export function scenarios(quick) {
  const q = (full, short) => (quick ? short : full);
  const list = [
    {
      id: 'flood, never reads',
      target: serve(),
      attack: 'floodNonReader',
      params: { sessions: 3, bytes: q(10 * MiB, 4 * MiB) },
      held: 3,
      perSession: SESSION_BOUND,
      ms: q(6_000, 3_000),
      newcomer: 'in',
      quick: true,
    },
    {
      id: 'flood, reads',
      target: serve(),
      attack: 'floodReader',
      params: { sessions: 3 },
      held: 3,
      perSession: SESSION_BOUND,
      ms: q(4_000, 2_000),
    },
    {
      id: '2000 idle sockets',
      target: serve(),
      attack: 'idle',
      params: { sockets: 2000 },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(3_000, 2_000),
      newcomer: 'out',
    },
    {
      id: 'slowloris (1 byte/s)',
      target: serve(),
      attack: 'slowloris',
      params: { sockets: 4 },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(4_000, 2_000),
      newcomer: 'out',
    },
    {
      id: 'silent after Hello',
      target: serve(),
      attack: 'silentAfterHello',
      params: { sessions: 4 },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(3_000, 2_000),
    },
    {
      id: 'refused frames, 200/s',
      target: serve(),
      attack: 'garbage',
      params: { rate: 200 },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(4_000, 2_000),
    },
    {
      id: '2000 × 01 FF FF',
      target: serveNoise(),
      attack: 'stalled',
      params: { sockets: q(2000, 1000), bytes: STALLED_NOISE },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(4_000, 2_000),
      quick: true,
    },
    {
      id: '2000 stalled 128-byte headers',
      target: serveNoise(),
      attack: 'stalled',
      params: { sockets: 2000, bytes: STALLED_ALLOWED },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(4_000, 2_000),
    },
    {
      id: 'flood with the key, never reads',
      target: serveNoise(),
      attack: 'floodNonReader',
      params: { sessions: 3, bytes: q(3 * MiB, 2 * MiB) },
      held: 3,
      perSession: SESSION_BOUND,
      ms: q(6_000, 3_000),
      newcomer: 'in',
    },
    {
      id: '2000 × 01 FF FF, cap 2100',
      target: serveNoise('--max-connections', '2100'),
      attack: 'stalled',
      params: { sockets: 2000, bytes: STALLED_NOISE },
      held: 0,
      perSession: IDLE_SESSION_BOUND,
      ms: 4_000,
    },
    {
      id: '2000 stalled 128-byte headers, cap 2100',
      target: serveNoise('--max-connections', '2100'),
      attack: 'stalled',
      params: { sockets: q(2000, 1000), bytes: STALLED_ALLOWED },
      held: q(2000, 1000),
      perSession: IDLE_SESSION_BOUND,
      ms: q(5_000, 3_000),
      quick: true,
    },
    {
      id: '2000 silent after Hello, cap 2100',
      target: serve('--max-connections', '2100'),
      attack: 'silentAfterHello',
      params: { sessions: 2000 },
      held: 2000,
      perSession: IDLE_SESSION_BOUND,
      ms: 5_000,
    },
    {
      id: 'flood, never reads',
      target: relay(),
      attack: 'floodNonReader',
      params: { sessions: 6, bytes: q(10 * MiB, 3 * MiB) },
      held: 6,
      perSession: SESSION_BOUND,
      ms: q(8_000, 4_000),
      newcomer: 'in',
      quick: true,
    },
    {
      id: '2000 idle sockets',
      target: relay(),
      attack: 'idle',
      params: { sockets: 2000 },
      held: 7,
      perSession: IDLE_SESSION_BOUND,
      ms: q(3_000, 2_000),
      newcomer: 'out',
    },
    {
      id: 'slowloris (1 byte/s)',
      target: relay(),
      attack: 'slowloris',
      params: { sockets: 7 },
      held: 7,
      perSession: IDLE_SESSION_BOUND,
      ms: q(4_000, 2_000),
      newcomer: 'out',
    },
    {
      id: '2000 × 01 FF FF',
      target: relayNoise(),
      attack: 'stalled',
      params: { sockets: 2000, bytes: STALLED_NOISE },
      held: 7,
      perSession: IDLE_SESSION_BOUND,
      ms: 4_000,
    },
    {
      id: 'flood with the key, never reads',
      target: relayNoise(),
      attack: 'floodNonReader',
      params: { sessions: 6, bytes: q(3 * MiB, 2 * MiB) },
      held: 6,
      perSession: SESSION_BOUND,
      ms: q(8_000, 4_000),
      newcomer: 'in',
    },
  ];
  return quick ? list.filter((s) => s.quick) : list;
}
