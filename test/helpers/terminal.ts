import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { CLI, cliEnv } from './cli.js';

/** util-linux `script` gives a child a pseudo-terminal: the CLI then behaves as in a terminal (live tables, Ctrl-C). */
export const HAS_SCRIPT = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

/** What a run in a terminal printed (stdout and stderr mixed, as a terminal shows them) and how it ended. */
export interface TerminalResult {
  code: number | null;
  screen: string;
  /** ms from the Ctrl-C to the first output after it (undefined without one). */
  ackMs: number | undefined;
}

/**
 * Runs the built CLI on a pseudo-terminal; `ctrlCWhen` sends Ctrl-C (the terminal's ^C, so SIGINT reaches the
 * process group as from a keyboard) once the screen matches it. Killed after `timeoutMs`.
 */
export async function runInTerminal(args: string[], options: { ctrlCWhen?: RegExp; timeoutMs?: number } = {}): Promise<TerminalResult> {
  // `exec`: script runs the command through $SHELL; a shell that stayed as the parent (dash does) takes the Ctrl-C too
  // and reports 130 whatever the CLI returned.
  const command = `exec ${[process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')}`;
  const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: cliEnv() });
  let screen = '';
  let sentAt: number | undefined;
  let ackMs: number | undefined;
  child.stdout.on('data', (d: Buffer) => {
    screen += d.toString();
    if (sentAt !== undefined && ackMs === undefined && /stopping/.test(screen)) ackMs = Date.now() - sentAt;
    if (options.ctrlCWhen !== undefined && sentAt === undefined && options.ctrlCWhen.test(screen)) {
      sentAt = Date.now();
      child.stdin.write('\u0003');
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 10_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, screen, ackMs };
}
