import { type ApiConnection, DEFAULT_KEEPALIVE_INTERVAL_MS, PONG_TIMEOUT_FACTOR } from '../connection/connection.js';
import { TimeoutError } from '../errors.js';
import { messageId } from '../frame/message-types.js';
import { PingRequest, PingResponse } from '../gen/api_pb.js';

const PING_REQUEST_ID = messageId(PingRequest);
const PING_RESPONSE_ID = messageId(PingResponse);
const EMPTY = new Uint8Array(0);

/**
 * How long the ping behind a relayed connect may go unanswered before the upstream is taken for dead: the keep-alive's
 * default bound (4.5 × 20 s), whatever the keep-alive is set to (RelayServerOptions.connectPingTimeout).
 */
export const DEFAULT_CONNECT_PING_TIMEOUT_MS = DEFAULT_KEEPALIVE_INTERVAL_MS * PONG_TIMEOUT_FACTOR;

/** How long a barrier waits before it pings again, and before it takes the upstream for dead. */
export interface BarrierTiming {
  /** A callback waiting this long without its pong gets one more ping behind it (the proxy may have dropped one). */
  readonly interval: number;
  /** A callback waiting this long ends the session as the keep-alive ends a silent one (ESPAPI_ERR_PING_TIMEOUT). */
  readonly deadline: number;
}

/**
 * The barrier's timing for an upstream session with keep-alive `keepaliveInterval`: dead after `deadline` (default
 * 90 s), pinged again after each keep-alive interval — at most 20 s (the keep-alive's default) and at most a 4.5th
 * of the deadline, so that a dropped pong is made up well before it.
 *
 * The deadline does not follow a shorter keep-alive. The keep-alive measures whether the proxy is alive (any message
 * counts, and a proxy advertises all the time); the barrier measures whether it has read what the relay queued for
 * it, up to the ping. That ping waits behind whatever the clients sent before it: the upstream hold lets 256 KiB of
 * writes queue in the relay, plus what the kernel holds (about 4 MB on loopback), which a slow ESP32 takes seconds to
 * read. With the deadline at 4.5 keep-alive intervals, a 1 s keep-alive ended every client's links on a healthy
 * upstream after 4.5 s of it. Timing the ping from when it left the relay's queue would not fix that either: the
 * kernel's share cannot be seen.
 */
export function barrierTiming(keepaliveInterval: number | undefined, deadline = DEFAULT_CONNECT_PING_TIMEOUT_MS): BarrierTiming {
  const valid = keepaliveInterval !== undefined && keepaliveInterval > 0 && keepaliveInterval < DEFAULT_KEEPALIVE_INTERVAL_MS;
  const keepalive = valid ? keepaliveInterval : DEFAULT_KEEPALIVE_INTERVAL_MS;
  return { interval: Math.min(keepalive, deadline / PONG_TIMEOUT_FACTOR), deadline };
}

/**
 * Tells the relay when the proxy has handled what the relay sent it. The proxy answers a request at once when it
 * handles it (a connect: the slot report that reserves the slot, or connected=false, or nothing when it ignores it)
 * and answers pings in order, so once the answer to a ping sent after a request has arrived, every immediate answer
 * to that request has arrived too. The keep-alive's pings count in the order (ApiConnection.pingsSent).
 *
 * Bounded in time: a callback whose pong has not come after `timing.interval` gets another ping behind it (a pong
 * the proxy dropped is healed by the next: pongs count, so any later one proves the earlier requests handled), and
 * after `timing.deadline` the session is destroyed with ESPAPI_ERR_PING_TIMEOUT — the relay's ledger resets with it
 * and every client holding a link hears connected=false. Bounded in size by its callers: one connect in flight per
 * address and client, one settling DISCONNECT per address (ConnectSequencer), and the in-process pool's connects.
 */
export class UpstreamBarrier {
  readonly #api: ApiConnection;
  readonly #timing: BarrierTiming;
  /** Callbacks in the order of their pings, each with the ping count it waits for and when it started waiting. */
  readonly #waiting: Array<{ pong: number; since: number; done: () => void }> = [];
  readonly #off: () => void;
  /** Pings again while a callback waits longer than `timing.interval`. */
  #repinger: NodeJS.Timeout | undefined;
  /** Ends the session when the oldest callback has waited `timing.deadline` (re-armed as the oldest changes). */
  #deadline: NodeJS.Timeout | undefined;

  constructor(api: ApiConnection, timing: BarrierTiming = barrierTiming(undefined)) {
    this.#api = api;
    this.#timing = timing;
    this.#off = api.onRaw(PING_RESPONSE_ID, () => this.#flush());
  }

  /** Callbacks waiting for their pong. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Calls `done` once the proxy has handled everything sent before now; false (never called) when the session is gone. */
  after(done: () => void): boolean {
    if (!this.#ping()) return false;
    this.#waiting.push({ pong: this.#api.pingsSent, since: performance.now(), done });
    this.#repinger ??= setInterval(() => this.#reping(), this.#timing.interval);
    if (this.#deadline === undefined) this.#armDeadline();
    return true;
  }

  /** Stops listening; callbacks still waiting are dropped (their session is gone, and the ledger with it). */
  close(): void {
    this.#off();
    this.#waiting.length = 0;
    this.#stopTimers();
  }

  #ping(): boolean {
    const api = this.#api;
    if (api.isClosed) return false;
    try {
      api.sendRaw(PING_REQUEST_ID, EMPTY);
      return true;
    } catch {
      return false;
    }
  }

  #reping(): void {
    const head = this.#waiting[0];
    if (head === undefined) this.#stopTimers();
    else if (performance.now() - head.since >= this.#timing.interval) this.#ping();
  }

  /** Arms the deadline of the oldest callback: exactly `timing.deadline` after it began to wait. */
  #armDeadline(): void {
    clearTimeout(this.#deadline);
    this.#deadline = undefined;
    const head = this.#waiting[0];
    if (head === undefined) return;
    const left = Math.max(0, head.since + this.#timing.deadline - performance.now());
    this.#deadline = setTimeout(() => this.#expire(), left);
  }

  #expire(): void {
    const api = this.#api;
    this.close();
    api.destroy(
      new TimeoutError(`Ping response from ${api.label} (behind a relayed Bluetooth request)`, this.#timing.deadline, {
        code: 'ESPAPI_ERR_PING_TIMEOUT',
      }),
    );
  }

  #flush(): void {
    const received = this.#api.pongsReceived;
    const oldest = this.#waiting[0];
    while (this.#waiting.length > 0 && (this.#waiting[0]?.pong ?? Number.POSITIVE_INFINITY) <= received) {
      this.#waiting.shift()?.done();
    }
    if (this.#waiting.length === 0) this.#stopTimers();
    else if (this.#waiting[0] !== oldest) this.#armDeadline();
  }

  #stopTimers(): void {
    clearInterval(this.#repinger);
    this.#repinger = undefined;
    clearTimeout(this.#deadline);
    this.#deadline = undefined;
  }
}
