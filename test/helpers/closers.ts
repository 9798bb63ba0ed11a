import { afterEach } from 'vitest';

/** Clean-ups of one test, run in reverse (last opened, first closed) after it. */
export type Closers = Array<() => Promise<unknown> | unknown>;

/**
 * The test file's one clean-up list: every helper that opens something (a proxy, a client, a pool, a socket) pushes
 * its close here, and an afterEach of this file runs them in reverse before the leak guard judges the test.
 */
export function useClosers(): Closers {
  const closers: Closers = [];
  afterEach(async () => {
    // Every clean-up runs even when one fails (a failed check must not leave the rest open); the first failure is the test's.
    const failures: unknown[] = [];
    for (const close of closers.splice(0).reverse()) {
      try {
        await close();
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) throw failures[0];
  });
  return closers;
}

/** `resource`, closed after the test (for anything with a close(): pools, servers, sessions). */
export function closeAfter<T extends { close(): unknown }>(closers: Closers, resource: T): T {
  closers.push(() => resource.close());
  return resource;
}
