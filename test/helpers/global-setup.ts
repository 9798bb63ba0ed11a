import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './repo-root.js';

// CLI tests run the real binary (dist/cli/main.js); rebuild it when any source is newer than the build.
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export default function setup(): void {
  const marker = join(REPO_ROOT, 'dist/cli/main.js');
  if (existsSync(marker) && statSync(marker).mtimeMs >= newestMtime(join(REPO_ROOT, 'src'))) return;
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit', cwd: REPO_ROOT });
}
