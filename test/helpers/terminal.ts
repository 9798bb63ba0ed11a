import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { CLI, cliEnv } from './cli.js';

/**
 * `script` runs its command through $SHELL, which may be a shell that refuses commands (a service account's
 * /usr/sbin/nologin): every run here names the shell.
 */
const SCRIPT_ENV = { SHELL: '/bin/sh' };

/**
 * util-linux `script` gives a child a pseudo-terminal: the CLI then behaves as in a terminal (live tables, Ctrl-C).
 * Probed by making one: `script` may be installed where no pseudo-terminal can be made (no devpts in a container).
 */
export const HAS_SCRIPT =
  spawnSync('script', ['-qec', 'true', '/dev/null'], { stdio: 'ignore', env: cliEnv(SCRIPT_ENV), timeout: 10_000 }).status === 0;

/** What a run in a terminal printed (stdout and stderr mixed, as a terminal shows them) and how it ended. */
export interface TerminalResult {
  code: number | null;
  screen: string;
  /** ms from the Ctrl-C to the first output after it (undefined without one). */
  ackMs: number | undefined;
}

/** How runInTerminal types into the terminal and how long it waits. */
export interface TerminalOptions {
  /** Sends Ctrl-C (the terminal's ^C, so SIGINT reaches the process group as from a keyboard) once the screen matches. */
  ctrlCWhen?: RegExp;
  /** Typed, then Enter, once the screen shows the first `[y/N]` question. */
  answer?: string;
  /** The run is killed after this long (default 10 s). */
  timeoutMs?: number;
}

/** Runs the built CLI on a pseudo-terminal, typing what `options` says. */
export async function runInTerminal(args: string[], options: TerminalOptions = {}): Promise<TerminalResult> {
  // `exec`: a shell that stayed as the parent (dash does) takes the Ctrl-C too and reports 130 whatever the CLI
  // returned.
  const command = `exec ${[process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')}`;
  const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: cliEnv(SCRIPT_ENV) });
  let screen = '';
  let sentAt: number | undefined;
  let ackMs: number | undefined;
  let answered = false;
  child.stdout.on('data', (d: Buffer) => {
    screen += d.toString();
    if (sentAt !== undefined && ackMs === undefined && /stopping/.test(screen)) ackMs = Date.now() - sentAt;
    if (options.ctrlCWhen !== undefined && sentAt === undefined && options.ctrlCWhen.test(screen)) {
      sentAt = Date.now();
      child.stdin.write('\u0003');
    }
    if (options.answer !== undefined && !answered && /\[y\/N\]/.test(screen)) {
      answered = true;
      child.stdin.write(`${options.answer}\r`);
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 10_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, screen, ackMs };
}
