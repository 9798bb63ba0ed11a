import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

/** Path of the built CLI (global-setup keeps it fresh). */
export const CLI = 'dist/cli/main.js';

/** Result of one CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real binary to completion. */
export async function runCliProcess(args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, NO_COLOR: '1', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 10_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** A long-running CLI process (e.g. `serve`) with its parsed JSON stdout lines. */
export interface CliServer {
  child: ChildProcess;
  lines: unknown[];
  stop(): Promise<void>;
}

/**
 * Starts `esphome-ble serve ...` (with `env` added to this process's environment) and resolves once `count` JSON
 * lines (listening events) arrived. A serve that does not get there within `timeoutMs` is killed, and the promise
 * rejects once it is gone.
 */
export async function startCliServer(args: string[], count = 1, env: NodeJS.ProcessEnv = {}, timeoutMs = 10_000): Promise<CliServer> {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const lines: unknown[] = [];
  const reader = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    reader.on('line', (line) => {
      lines.push(JSON.parse(line));
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
    async stop() {
      if (child.exitCode !== null) return;
      const closed = once(child, 'close');
      child.kill('SIGTERM');
      await closed;
      reader.close();
    },
  };
}
