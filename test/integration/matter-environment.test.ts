import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/repo-root.js';

/** Runs an ES module script in a fresh Node process (cwd: the project). */
async function runNodeScript(source: string): Promise<{ code: number | null; stdout: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'inherit'], cwd: REPO_ROOT });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout };
}

describe('matter-environment - prepareMatterEnvironment() must come first', () => {
  it('matter-environment - matter.js loaded before it: a typed error naming what stays on, not a silent half set-up', async () => {
    // A process of its own: matter.js's switches are process-wide and this one must load it the wrong way round.
    const result = await runNodeScript(`
      await import('@matter/main');
      const { prepareMatterEnvironment } = await import('./dist/fixture-server/matter/matter-environment.js');
      try {
        await prepareMatterEnvironment({ mdnsPort: 1 });
        console.log('prepared');
      } catch (error) {
        console.log(error.code);
        console.log(error.message);
      }
      process.exit(0);
    `);
    expect(result.code).toBe(0);
    const [code, message] = result.stdout.split('\n');
    expect(code).toBe('ESPAPI_ERR_MATTER_ENVIRONMENT');
    expect(message).toContain('matter.js was loaded before prepareMatterEnvironment() and keeps trapProcessSignals = true');
    expect(message).toContain('call prepareMatterEnvironment() before anything imports @matter/*');
  }, 30_000);
});
