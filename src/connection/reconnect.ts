import { ConnectionClosedError } from '../errors.js';
import { isPermanentFailure } from '../failure-table.js';
import { type CallOptions, sleep, withDeadline } from '../util/abort.js';
import { type AsyncQueue, openQueue, type QueueOptions } from '../util/async-queue.js';
import { ApiConnection, type ConnectOptions, checkKeepaliveInterval, DEFAULT_API_PORT, type MessageTap } from './connection.js';

/** Base of the exponential backoff (aioesphomeapi: 1.8^tries seconds). */
export const RECONNECT_BACKOFF_BASE = 1.8;
/** Longest wait between attempts: one minute, as aioesphomeapi. */
export const MAX_RECONNECT_DELAY_MS = 60_000;
/** Pause after the device announced its own disconnect (it is probably rebooting). */
export const EXPECTED_DISCONNECT_DELAY_MS = 5_000;
/** A session that connected just as the loop was stopped gets this long to say goodbye (DisconnectRequest). */
const STOPPED_CLOSE_TIMEOUT_MS = 1_000;
/** Jitter spreads reconnect storms after a Wi-Fi blip across the fleet (±20 %). */
export const RECONNECT_JITTER = 0.2;

/** Backoff tuning (ms). */
export interface BackoffOptions {
  /** First delay (default 1000 ms, i.e. 1.8^0 s). */
  initialDelay?: number;
  maxDelay?: number;
  jitter?: number;
  expectedDisconnectDelay?: number;
}

/** Delay before reconnect attempt `tries` (0-based), jittered. Pure; `random` is injectable for tests. */
export function reconnectDelay(tries: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialDelay ?? 1000;
  const max = options.maxDelay ?? MAX_RECONNECT_DELAY_MS;
  const jitter = options.jitter ?? RECONNECT_JITTER;
  const base = Math.min(initial * RECONNECT_BACKOFF_BASE ** Math.min(tries, 10), max);
  return Math.max(0, Math.round(base * (1 + jitter * (2 * random() - 1))));
}

/** Events of a reconnecting session. */
export type ReconnectStatus =
  | { type: 'connecting'; attempt: number }
  | { type: 'connected'; connection: ApiConnection }
  | { type: 'disconnected'; error: Error | undefined; retryInMs: number }
  | { type: 'stopped'; error: Error | undefined };

/** Options of a reconnecting session. */
export interface ReconnectOptions extends Omit<ConnectOptions, 'signal' | 'timeout'> {
  /** Deadline of each connect attempt in ms. */
  connectTimeout?: number;
  backoff?: BackoffOptions;
  /** Makes a fresh message tap for each connect attempt (e.g. one recording per session). */
  tapFor?: (target: { host: string; port?: number | undefined; psk?: string | undefined }) => MessageTap | undefined;
  /** Runs after every successful connect (re-subscribe here); a throw counts as a failed attempt. */
  onConnect?: (connection: ApiConnection) => void | Promise<void>;
  /**
   * What a permanent failure of the failure table does (wrong key or password, encryption on one side only, another
   * device at the address, not a Bluetooth proxy): 'stop' (default) ends the session with it; 'retry' keeps trying
   * with the backoff, for a proxy whose configuration will be fixed while this runs.
   */
  permanentErrors?: 'stop' | 'retry';
  random?: () => number;
}

/**
 * Keeps one API session alive: reconnects with jittered exponential backoff and stops for good on permanent
 * errors of the one failure table (src/failure-table.ts: wrong key or password, encryption mismatch, identity,
 * not a proxy) unless told to keep trying. Used by the pool and the relay's upstreams.
 */
export class ReconnectingConnection {
  readonly options: ReconnectOptions;
  #current: ApiConnection | undefined;
  #lastError: Error | undefined;
  #stopped = false;
  #running: Promise<void> | undefined;
  readonly #stop = new AbortController();
  #wake: AbortController | undefined;
  readonly #queues = new Set<AsyncQueue<ReconnectStatus>>();
  readonly #connectedWaiters = new Set<{ resolve: (c: ApiConnection) => void; reject: (e: unknown) => void }>();

  constructor(options: ReconnectOptions) {
    checkKeepaliveInterval(options.keepaliveInterval);
    this.options = options;
  }

  /** The live session, if connected. */
  get current(): ApiConnection | undefined {
    return this.#current;
  }

  /** The error of the last failed attempt or disconnect. */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  /** True once stopped (closed or permanent error). */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Starts the connect loop (idempotent). */
  start(): this {
    this.#running ??= this.#loop();
    return this;
  }

  /** Skips the current backoff wait (e.g. the device just announced itself over mDNS). */
  retryNow(): void {
    this.#wake?.abort();
  }

  /** Resolves with a live session, waiting for the next successful connect if needed. */
  waitConnected(options: CallOptions = {}): Promise<ApiConnection> {
    this.start();
    const current = this.#current;
    if (current !== undefined && !current.isClosed) return Promise.resolve(current);
    return withDeadline(
      `Waiting for ${this.options.host}:${this.options.port ?? DEFAULT_API_PORT}`,
      options,
      undefined,
      (signal) =>
        new Promise<ApiConnection>((resolve, reject) => {
          if (this.#stopped) {
            reject(this.#lastError ?? new ConnectionClosedError('Reconnecting session is stopped'));
            return;
          }
          const waiter = {
            resolve: (c: ApiConnection) => {
              signal.removeEventListener('abort', onAbort);
              resolve(c);
            },
            reject: (e: unknown) => {
              signal.removeEventListener('abort', onAbort);
              reject(e);
            },
          };
          const onAbort = (): void => {
            this.#connectedWaiters.delete(waiter);
            reject(signal.reason);
          };
          signal.addEventListener('abort', onAbort, { once: true });
          this.#connectedWaiters.add(waiter);
        }),
    );
  }

  /** Life-cycle events. */
  status(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterable<ReconnectStatus> {
    return openQueue(this.#queues, this.#stopped, options);
  }

  /** Stops reconnecting and closes the live session gracefully. Idempotent. */
  async close(): Promise<void> {
    if (!this.#stopped) this.#halt(undefined);
    await this.#current?.close();
    await this.#running;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #loop(): Promise<void> {
    let tries = 0;
    const random = this.options.random ?? Math.random;
    while (!this.#stopped) {
      this.#emit({ type: 'connecting', attempt: tries + 1 });
      let connection: ApiConnection | undefined;
      try {
        const tap = this.options.tapFor?.(this.options) ?? this.options.tap;
        connection = await ApiConnection.connect({ ...this.options, tap, signal: this.#stop.signal, timeout: this.options.connectTimeout });
        await this.options.onConnect?.(connection);
      } catch (error) {
        connection?.destroy(error as Error);
        if (this.#stopped) break;
        this.#lastError = error as Error;
        if (this.options.permanentErrors !== 'retry' && isPermanentFailure(error)) {
          this.#halt(error as Error);
          break;
        }
        const delay = reconnectDelay(tries++, this.options.backoff, random);
        this.#emit({ type: 'disconnected', error: error as Error, retryInMs: delay });
        await this.#pause(delay);
        continue;
      }
      // close() ran while this connect (or its onConnect) was still under way: close() could not see the session, so
      // it is closed here; waiting for it to end by itself would keep close() waiting for good.
      if (this.#stopped) {
        await connection.close({ timeout: STOPPED_CLOSE_TIMEOUT_MS });
        break;
      }
      tries = 0;
      this.#current = connection;
      this.#emit({ type: 'connected', connection });
      for (const waiter of this.#connectedWaiters) waiter.resolve(connection);
      this.#connectedWaiters.clear();
      const error = await connection.closed();
      this.#current = undefined;
      if (this.#stopped) break;
      this.#lastError = error;
      const expected = error instanceof ConnectionClosedError && error.byDevice;
      const delay = expected
        ? (this.options.backoff?.expectedDisconnectDelay ?? EXPECTED_DISCONNECT_DELAY_MS)
        : reconnectDelay(tries++, this.options.backoff, random);
      this.#emit({ type: 'disconnected', error, retryInMs: delay });
      await this.#pause(delay);
    }
  }

  async #pause(ms: number): Promise<void> {
    this.#wake = new AbortController();
    try {
      await sleep(ms, AbortSignal.any([this.#wake.signal, this.#stop.signal]));
    } catch {
      // woken early or stopped
    } finally {
      this.#wake = undefined;
    }
  }

  #halt(error: Error | undefined): void {
    this.#stopped = true;
    this.#stop.abort(new ConnectionClosedError('Reconnecting session closed'));
    this.#emit({ type: 'stopped', error });
    for (const queue of this.#queues) queue.end();
    this.#queues.clear();
    const reason = error ?? new ConnectionClosedError('Reconnecting session closed');
    for (const waiter of this.#connectedWaiters) waiter.reject(reason);
    this.#connectedWaiters.clear();
  }

  #emit(status: ReconnectStatus): void {
    for (const queue of this.#queues) queue.push(status);
  }
}
