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
/**
 * What may be queued for one client (Node's socket queue, sampled inside the target): the close level (1 MiB,
 * DEFAULT_BACKLOG_LIMITS.closeAt) and one write on top. A flooder is paused at 512 KiB; without backpressure its
 * queue grows by megabytes a second, which this catches long before RSS does.
 */
export const QUEUE_BOUND = 1 * MiB + 64 * KiB;
/** Input one session may hold: the rest of a read and one more chunk a paused socket hands over (64 KiB each), a partial frame (32 KiB). */
export const INPUT_BOUND = 160 * KiB;
/** What may wait towards the relay's upstream: UPSTREAM_HOLD_BYTES (256 KiB) and one frame per client past it. */
export const UPSTREAM_QUEUE_BOUND = 512 * KiB;
/** Server sockets still open at the end beyond the sessions the attack can hold and the good client (a refusal still closing). */
export const SOCKET_SLACK = 2;
/**
 * How much heap or Buffers may grow, after a forced GC, from the middle of an attack to its end, besides what each
 * held session may still add up to its bound (a flooder's queue reaching the pause level): anything more is
 * growth that a longer attack would keep adding.
 */
export const GROWTH_SLACK = 2 * MiB;

const STALLED_NOISE = [1, 0xff, 0xff];
/** An empty client hello, then a handshake header of the largest allowed size (128) and 10 bytes of it. */
const STALLED_ALLOWED = [1, 0, 0, 1, 0, 0x80, ...new Array(10).fill(0)];

const serve = (...args) => ({ command: 'serve', args: ['--port', '0', ...args] });
const serveNoise = (...args) => ({ command: 'serve', args: ['--port', '0', ...args], env: { ESPHOME_BLE_PSK: PSK }, psk: PSK });
const relay = (...args) => ({ command: 'relay', args: ['--listen', '127.0.0.1:0', '--json', ...args], relay: true });
const relayNoise = (...args) => ({ ...relay(...args), env: { ESPHOME_BLE_DOWNSTREAM_PSK: PSK }, psk: PSK });

/**
 * Every scenario; `quick` ones make the CI run. Sizes are (full, quick). Floods last 10 s in the full run: long
 * enough that a queue without a bound grows by tens of megabytes, and that the GC'd middle and end differ.
 */
export function scenarios(quick) {
  const q = (full, short) => (quick ? short : full);
  const list = [
    {
      id: 'flood, never reads',
      target: serve(),
      attack: 'floodNonReader',
      // Two flooders in the quick run: answered fast enough to fill the loopback buffers (about 10 MB per
      // connection) within it, so that a queue without a bound shows there too.
      params: { sessions: q(3, 2), bytes: q(10 * MiB, 4 * MiB) },
      held: q(3, 2),
      perSession: SESSION_BOUND,
      ms: q(10_000, 5_000),
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
      ms: q(8_000, 2_000),
    },
    {
      id: '2000 idle sockets',
      target: serve(),
      attack: 'idle',
      params: { sockets: 2000 },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 2_000),
      newcomer: 'out',
    },
    {
      id: '2000 idle sockets, --evict-unauthenticated',
      target: serve('--evict-unauthenticated'),
      attack: 'idle',
      params: { sockets: 2000 },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 2_000),
      newcomer: 'in',
    },
    {
      id: 'slowloris (1 byte/s)',
      target: serve(),
      attack: 'slowloris',
      params: { sockets: 4 },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 2_000),
      newcomer: 'out',
    },
    {
      id: 'silent after Hello',
      target: serve(),
      attack: 'silentAfterHello',
      params: { sessions: 4 },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 2_000),
    },
    {
      id: 'refused frames, 200/s',
      target: serve(),
      attack: 'garbage',
      params: { rate: 200 },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 2_000),
    },
    {
      id: '2000 × 01 FF FF',
      target: serveNoise(),
      attack: 'stalled',
      params: { sockets: q(2000, 1000), bytes: STALLED_NOISE },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 3_000),
      quick: true,
    },
    {
      id: '4000 × 01 FF FF, never read nor close',
      target: serveNoise(),
      attack: 'stalled',
      params: { sockets: 4000, bytes: STALLED_NOISE, read: false },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 3_000),
    },
    {
      id: '2000 stalled 128-byte headers',
      target: serveNoise(),
      attack: 'stalled',
      params: { sockets: 2000, bytes: STALLED_ALLOWED },
      held: 4,
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 2_000),
    },
    {
      id: 'flood with the key, never reads',
      target: serveNoise(),
      attack: 'floodNonReader',
      params: { sessions: 3, bytes: q(4 * MiB, 2 * MiB) },
      held: 3,
      perSession: SESSION_BOUND,
      ms: q(10_000, 3_000),
      newcomer: 'in',
    },
    {
      id: '2000 × 01 FF FF, cap 2100',
      target: serveNoise('--max-connections', '2100'),
      attack: 'stalled',
      params: { sockets: 2000, bytes: STALLED_NOISE },
      held: 0,
      perSession: IDLE_SESSION_BOUND,
      ms: 6_000,
    },
    {
      id: '2000 stalled 128-byte headers, cap 2100',
      target: serveNoise('--max-connections', '2100'),
      attack: 'stalled',
      params: { sockets: q(2000, 1000), bytes: STALLED_ALLOWED },
      held: q(2000, 1000),
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 3_000),
      quick: true,
    },
    {
      id: '2000 silent after Hello, cap 2100',
      target: serve('--max-connections', '2100'),
      attack: 'silentAfterHello',
      params: { sessions: 2000 },
      held: 2000,
      perSession: IDLE_SESSION_BOUND,
      ms: 6_000,
    },
    {
      id: 'flood, never reads',
      target: relay(),
      attack: 'floodNonReader',
      // Three flooders (two in the quick run): each is answered fast enough to fill the loopback buffers (about
      // 10 MB per connection) early in the attack, so that a queue without a bound would show for seconds.
      params: { sessions: q(3, 2), bytes: q(10 * MiB, 3 * MiB) },
      held: q(3, 2),
      perSession: SESSION_BOUND,
      ms: q(12_000, 6_000),
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
      ms: q(6_000, 2_000),
      // The relay evicts the oldest client that has not said Hello: idle sockets do not keep anyone out.
      newcomer: 'in',
    },
    {
      id: 'slowloris (1 byte/s)',
      target: relay(),
      attack: 'slowloris',
      params: { sockets: 7 },
      held: 7,
      perSession: IDLE_SESSION_BOUND,
      ms: q(6_000, 2_000),
      newcomer: 'in',
    },
    {
      id: '2000 × 01 FF FF',
      target: relayNoise(),
      attack: 'stalled',
      params: { sockets: 2000, bytes: STALLED_NOISE },
      held: 7,
      perSession: IDLE_SESSION_BOUND,
      ms: 6_000,
    },
    {
      id: 'flood with the key, never reads',
      target: relayNoise(),
      attack: 'floodNonReader',
      params: { sessions: 3, bytes: q(4 * MiB, 2 * MiB) },
      held: 3,
      perSession: SESSION_BOUND,
      ms: q(12_000, 4_000),
      newcomer: 'in',
    },
  ];
  return quick ? list.filter((s) => s.quick) : list;
}
