import { afterEach, beforeEach, expect } from 'vitest';

// Leak guard: every test must leave no socket, server or timer behind.
const WATCHED = new Set(['TCPSocketWrap', 'TCPServerWrap', 'Timeout', 'UDPWrap', 'PipeWrap']);

function watchedResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const name of process.getActiveResourcesInfo()) {
    if (WATCHED.has(name)) counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}

let baseline = new Map<string, number>();

beforeEach(() => {
  baseline = watchedResources();
});

afterEach(async () => {
  let leaked: string[] = [];
  // Closing sockets and clearing timers settle over a few turns of the event loop.
  for (let i = 0; i < 50; i++) {
    leaked = [];
    for (const [name, count] of watchedResources()) {
      const extra = count - (baseline.get(name) ?? 0);
      if (extra > 0) leaked.push(`${name} x${extra}`);
    }
    if (leaked.length === 0) return;
    await new Promise((resolve) => setImmediate(resolve));
    if (i > 20) await new Promise((resolve) => setTimeout(resolve, 5).unref());
  }
  expect(leaked, 'resources left open by the test').toEqual([]);
});
