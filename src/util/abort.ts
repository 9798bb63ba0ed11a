import { TimeoutError } from '../errors.js';

/** The longest delay Node's timers take (2^31 - 1 ms); a longer one, Infinity included, fires after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647;

/** Options every public async call accepts. */
export interface CallOptions {
  /** Aborts the call; it rejects with `signal.reason`. */
  signal?: AbortSignal | undefined;
  /** Deadline in ms; the call rejects with TimeoutError when it passes. */
  timeout?: number | undefined;
}

/**
 * Runs `fn` with a signal that fires on the caller's abort or on the deadline, whichever is first.
 * A deadline rejects with TimeoutError naming `operation`; a caller abort rejects with its reason.
 */
export async function withDeadline<T>(
  operation: string,
  options: CallOptions,
  defaultTimeoutMs: number | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const outer = options.signal;
  outer?.throwIfAborted();
  const timeoutMs = options.timeout ?? defaultTimeoutMs;
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(outer?.reason);
  outer?.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
    timer = setTimeout(() => controller.abort(new TimeoutError(operation, timeoutMs)), timeoutMs);
  }
  try {
    return await fn(controller.signal);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    outer?.removeEventListener('abort', onAbort);
  }
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A promise rejected when `signal` aborts, plus a cleanup to detach the listener. */
export function abortPromise(signal: AbortSignal): { promise: Promise<never>; cleanup: () => void } {
  let onAbort: () => void = () => {};
  const promise = new Promise<never>((_, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => {});
  return { promise, cleanup: () => signal.removeEventListener('abort', onAbort) };
}

/** The two ways a pending one-shot reply ends. */
export interface Settler<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/**
 * A promise for one reply that arrives through the handlers handed to `install` (which stores them and
 * sends the request). Aborting `signal` calls `uninstall` and rejects with the signal's reason, and so does an
 * `install` that throws (with its error); the abort listener is detached however the promise ends.
 */
export function pendingReply<T>(signal: AbortSignal, install: (settler: Settler<T>) => void, uninstall: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      uninstall();
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      install({
        resolve: (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      });
    } catch (error) {
      // The request never went out (a closed session, a refusing send guard): nothing will answer it.
      signal.removeEventListener('abort', onAbort);
      uninstall();
      reject(error);
    }
  });
}
