/** Polls `check` every few ms until it holds; rejects naming `what` after `ms`. */
export async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** `promise`, or a rejection naming `what` after `ms`: bounds a wait the code under test does not bound itself. */
export async function within<T>(promise: Promise<T>, what: string, ms = 2000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The next value of `iterator` within `ms`; rejects if it ends or stays silent. */
export async function nextWithin<T>(iterator: AsyncIterator<T>, what: string, ms = 2000): Promise<T> {
  const result = await within(iterator.next(), what, ms);
  if (result.done) throw new Error(`stream ended before ${what}`);
  return result.value;
}

/** Waits `ms` (for "nothing more arrives" checks). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A wait the code under test must not sit out: a test that checks a call returns early gives it (or the proxy's
 * silence) this long, so that a call which did wait fails the test's AT_ONCE_MS check with room to spare.
 */
export const LONG_WAIT_MS = 10_000;

/**
 * "At once" on a loaded 2-core machine (other test workers and engineers on the same cores): a fifth of
 * LONG_WAIT_MS. Far above the event-loop stalls such load causes (hundreds of ms), far below the wait a call that
 * did not return early would have sat out.
 */
export const AT_ONCE_MS = LONG_WAIT_MS / 5;
