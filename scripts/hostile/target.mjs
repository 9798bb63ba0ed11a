// A target of the hostile run: `esphome-ble serve` or `esphome-ble relay` as built (dist/cli/main.js), in its
// own process with the memory probe preloaded.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { ROOT } from './common.mjs';

/** The CLI under attack: this build, or another one (HOSTILE_DIST, e.g. main's, to see the oracle fail on it). */
const CLI = resolve(process.env.HOSTILE_DIST ?? resolve(ROOT, 'dist'), 'cli/main.js');
const PROBE = pathToFileURL(resolve(ROOT, 'scripts/hostile/probe.mjs')).href;
/** How long a target may take to print that it listens. */
const START_TIMEOUT_MS = 15_000;

/** The memory figures a sample holds. */
export const METRICS = ['rss', 'heapUsed', 'external', 'arrayBuffers'];

/**
 * Starts `esphome-ble <command> ...args` and resolves once it printed its `listening` line. Every JSON line it
 * prints is kept (`events`); `sample()` asks the process itself for its memory.
 */
export async function startTarget(command, args, { env = {} } = {}) {
  const child = spawn(process.execPath, ['--expose-gc', '--import', PROBE, CLI, command, ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, NO_COLOR: '1', ...env },
  });
  const events = [];
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const pending = new Map();
  let nextId = 1;
  child.on('message', (message) => {
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    waiter?.(message);
  });
  const listening = new Promise((resolveListening, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not start: ${stderr}`)), START_TIMEOUT_MS);
    createInterface({ input: child.stdout }).on('line', (line) => {
      let event;
      try {
        event = JSON.parse(line);
      } catch {
        return;
      }
      events.push(event);
      if (event.event === 'listening') {
        clearTimeout(timer);
        resolveListening(event);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited with ${code} before listening: ${stderr}`));
    });
  });
  const info = await listening;
  return {
    pid: child.pid,
    port: info.port,
    events,
    stderr: () => stderr,
    /** The target's memory now (after a forced GC with `gc`). */
    sample(gc = false) {
      const id = nextId++;
      return new Promise((resolveSample, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${command} did not answer a memory sample`));
        }, 5_000);
        pending.set(id, (message) => {
          clearTimeout(timer);
          resolveSample(message);
        });
        child.send({ type: 'sample', id, gc });
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const closed = once(child, 'close');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await closed;
      clearTimeout(timer);
    },
  };
}

/** Samples `target` every `everyMs` until stopped; keeps the peak of each metric. */
export function startSampling(target, everyMs) {
  const peak = Object.fromEntries(METRICS.map((m) => [m, 0]));
  let samples = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const sample = await target.sample(false);
        samples++;
        for (const metric of METRICS) peak[metric] = Math.max(peak[metric], sample[metric]);
      } catch {
        // A target that is too busy to answer within 5 s is reported by the missing samples.
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return { peak, samples };
    },
  };
}
