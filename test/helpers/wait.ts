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
