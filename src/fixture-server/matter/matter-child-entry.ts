import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MatterDeviceError } from '../../errors.js';

/**
 * The compiled entry of the device process, next to `moduleFile` (the MatterDevice module). Run from src/ (the
 * tests), the device process still runs dist/: every src/fixture-server/matter file must have been built since it
 * last changed, or the device would run the last build's code under this build's tests. Throws
 * MatterDeviceError naming the stale file and `npm run build` otherwise.
 */
export function matterChildEntry(moduleFile: string): string {
  const srcDir = dirname(moduleFile);
  if (moduleFile.endsWith('.js')) return join(srcDir, 'matter-device-child.js');
  const distDir = srcDir.replace(/([\\/])src([\\/]fixture-server[\\/]matter)$/, '$1dist$2');
  for (const file of readdirSync(srcDir)) {
    if (!file.endsWith('.ts') || file.endsWith('.d.ts')) continue;
    const built = join(distDir, file.replace(/\.ts$/, '.js'));
    const missing = !existsSync(built);
    if (missing || statSync(built).mtimeMs < statSync(join(srcDir, file)).mtimeMs) {
      throw new MatterDeviceError(
        `The simulated Matter device runs the build, and ${built} is ${missing ? 'missing' : `older than src/fixture-server/matter/${file}`}: run npm run build`,
      );
    }
  }
  return join(distDir, 'matter-device-child.js');
}
