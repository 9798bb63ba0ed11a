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
 * What the target's sockets and sessions hold (probe.mjs): bytes queued for accepted sockets (sum and the largest
 * one), Node's unread input on them, bytes queued towards the relay's upstream, sessions' held input.
 */
export const HOLDINGS = ['serverSockets', 'queued', 'queuedMax', 'readable', 'upstreamQueued', 'sessions', 'input', 'inputMax'];

/** Every target process this run started and has not seen exit: killed on any way out of the run. */
const running = new Set();

/** Kills every target still running (SIGKILL: the run is going away and cannot wait). Synchronous, for 'exit'. */
export function killTargets() {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
  running.clear();
}

/**
 * Starts `esphome-ble <command> ...args` and resolves once it printed its `listening` line. Every JSON line it
 * prints is kept (`events`); `sample()` asks the process itself for its memory.
 */
export async function startTarget(command, args, { env = {} } = {}) {
  const child = spawn(process.execPath, ['--expose-gc', '--import', PROBE, CLI, command, ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...targetEnv(), NO_COLOR: '1', ...env },
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  // A send to a target that just died reports here (and to its callback), never as an unhandled 'error'.
  child.on('error', () => {});
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
        const failed = (error) => {
          clearTimeout(timer);
          pending.delete(id);
          reject(new Error(`${command} cannot be sampled: ${error?.message ?? 'it exited'}`));
        };
        if (!child.connected) {
          failed(undefined);
          return;
        }
        child.send({ type: 'sample', id, gc }, (error) => {
          if (error) failed(error);
        });
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

/** The run's environment without the variables that would change what serve and relay do (keys, recording). */
function targetEnv() {
  const env = { ...process.env };
  for (const name of ['ESPHOME_BLE_PSK', 'ESPHOME_BLE_DOWNSTREAM_PSK', 'ESPHOME_BLE_PASSWORD', 'ESPHOME_BLE_RECORD']) delete env[name];
  return env;
}

/** Samples `target` every `everyMs` until stopped; keeps the peak of each metric and holding. */
export function startSampling(target, everyMs) {
  const peak = Object.fromEntries([...METRICS, ...HOLDINGS].map((m) => [m, 0]));
  let samples = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const sample = await target.sample(false);
        samples++;
        for (const metric of [...METRICS, ...HOLDINGS]) peak[metric] = Math.max(peak[metric], sample[metric] ?? 0);
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
