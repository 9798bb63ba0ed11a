import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from './repo-root.js';

/** Path of the built CLI (global-setup keeps it fresh). */
export const CLI = join(REPO_ROOT, 'dist/cli/main.js');

/**
 * Variables the CLI reads that would change what a test runs (keys, passwords, recording): a developer's shell or
 * CI may have them set. Every helper starts the CLI without them, unless the test gives them.
 */
export const CLI_ENV_VARIABLES = ['ESPHOME_BLE_PSK', 'ESPHOME_BLE_DOWNSTREAM_PSK', 'ESPHOME_BLE_PASSWORD', 'ESPHOME_BLE_RECORD'] as const;

/** The environment of a CLI child process: this one's without CLI_ENV_VARIABLES, no colours, then `extra`. */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const name of CLI_ENV_VARIABLES) delete env[name];
  return { ...env, ...extra };
}

/** Result of one CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real binary to completion. */
export async function runCliProcess(args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return startCliProcess(args, options).done;
}

/** Starts the real binary; `done` resolves when it exits (killed after `timeoutMs`), `child` takes signals (Ctrl-C: SIGINT). */
export function startCliProcess(
  args: string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: cliEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 10_000);
  const done = (async () => {
    const [code] = (await once(child, 'close')) as [number | null];
    clearTimeout(timer);
    return { code, stdout, stderr };
  })();
  return { child, done };
}

/** The real-home note a command prints when it holds proxies' Bluetooth subscription (src/cli/real-home.ts). */
export const SUBSCRIPTION_NOTE = /^note this command holds the Bluetooth subscription of .*$/m;

/** stderr without the subscription note, for tests about the rest of it. */
export function withoutNote(stderr: string): string {
  return stderr
    .split('\n')
    .filter((line) => !SUBSCRIPTION_NOTE.test(line))
    .join('\n');
}

/** A long-running CLI process (e.g. `serve`) with its parsed JSON stdout lines. */
export interface CliServer {
  child: ChildProcess;
  /** The `listening` lines, one per node. */
  lines: unknown[];
  /** Every other line (`sessionRefused`, `sessionDropped`...), as it came. */
  events: unknown[];
  stop(): Promise<void>;
}

/**
 * Starts `esphome-ble serve ...` (with `env` added to this process's environment) and resolves once `count` JSON
 * lines (listening events) arrived. A serve that does not get there within `timeoutMs` is killed, and the promise
 * rejects once it is gone.
 */
export async function startCliServer(args: string[], count = 1, env: NodeJS.ProcessEnv = {}, timeoutMs = 10_000): Promise<CliServer> {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv(env) });
  const lines: unknown[] = [];
  const events: unknown[] = [];
  const reader = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    reader.on('line', (line) => {
      const parsed = JSON.parse(line) as { event?: string };
      if (parsed.event !== 'listening') {
        events.push(parsed);
        return;
      }
      lines.push(parsed);
      if (lines.length === count) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(timedOut ? `serve did not start within ${timeoutMs} ms` : `serve exited with ${code ?? signal}`));
    });
  });
  return {
    child,
    lines,
    events,
    async stop() {
      if (child.exitCode !== null) return;
      const closed = once(child, 'close');
      child.kill('SIGTERM');
      await closed;
      reader.close();
    },
  };
}
