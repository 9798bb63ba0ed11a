import { createHook } from 'node:async_hooks';
import { afterEach, beforeEach, expect } from 'vitest';

// Leak guard: every socket, server and timer a test creates must be gone when it ends.
// async_hooks sees each handle created during the test, so vitest's own timers cannot mask a leak.
const WATCHED = new Set(['Timeout', 'TCPWRAP', 'TCPSERVERWRAP', 'UDPWRAP', 'PIPEWRAP', 'Immediate']);
const live = new Map<number, string>();
let tracking = false;
/** vitest's own test and hook deadline timers (vitest.config.ts) are not the test's doing. */
const RUNNER_TIMEOUT_MS = 15_000;

createHook({
  init(asyncId, type, _trigger, resource) {
    if (!tracking || !WATCHED.has(type)) return;
    if (type === 'Timeout' && (resource as { _idleTimeout?: number })._idleTimeout === RUNNER_TIMEOUT_MS) return;
    live.set(asyncId, type);
  },
  destroy(asyncId) {
    live.delete(asyncId);
  },
}).enable();

/** Handles created by the test and still open, by type. */
function leaks(): string[] {
  const counts = new Map<string, number>();
  for (const type of live.values()) if (type !== 'Immediate') counts.set(type, (counts.get(type) ?? 0) + 1);
  return [...counts].map(([type, n]) => `${type} x${n}`);
}

beforeEach(() => {
  live.clear();
  tracking = true;
});

afterEach(async () => {
  tracking = false;
  // Closing sockets and clearing timers settle over a few turns of the event loop.
  for (let i = 0; i < 60 && leaks().length > 0; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    if (i > 20) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const left = leaks();
  live.clear();
  expect(left, 'handles left open by the test').toEqual([]);
});
