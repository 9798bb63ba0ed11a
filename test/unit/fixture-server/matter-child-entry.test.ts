import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MatterDeviceError } from '../../../src/errors.js';
import { matterChildEntry } from '../../../src/fixture-server/matter/matter-child-entry.js';

let root: string | undefined;

afterEach(() => {
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
  root = undefined;
});

/** A checkout with src/ and dist/ of the matter directory with the given mtimes (seconds since the epoch). */
function checkout(files: Record<string, number>): { src: string; dist: string } {
  root = mkdtempSync(join(tmpdir(), 'esphome-ble-entry-'));
  const src = join(root, 'src', 'fixture-server', 'matter');
  const dist = join(root, 'dist', 'fixture-server', 'matter');
  mkdirSync(src, { recursive: true });
  mkdirSync(dist, { recursive: true });
  for (const [path, mtime] of Object.entries(files)) {
    const full = join(root, path);
    writeFileSync(full, '');
    utimesSync(full, mtime, mtime);
  }
  return { src, dist };
}

describe('matter-child-entry - the device process runs the build, which must be current', () => {
  it('matter-child-entry - run from dist, the entry is next to the module', () => {
    expect(matterChildEntry('/x/dist/fixture-server/matter/matter-device.js')).toBe('/x/dist/fixture-server/matter/matter-device-child.js');
  });

  it('matter-child-entry - run from src, a build at least as new as every source gives the dist entry', () => {
    const { src, dist } = checkout({
      'src/fixture-server/matter/matter-device.ts': 1_000,
      'src/fixture-server/matter/bridge-ble.ts': 1_000,
      'dist/fixture-server/matter/matter-device.js': 1_000,
      'dist/fixture-server/matter/bridge-ble.js': 2_000,
    });
    expect(matterChildEntry(join(src, 'matter-device.ts'))).toBe(join(dist, 'matter-device-child.js'));
  });

  it('matter-child-entry - a source newer than its build, or never built, fails naming it and npm run build', () => {
    const { src } = checkout({
      'src/fixture-server/matter/matter-device.ts': 1_000,
      'src/fixture-server/matter/bridge-ble.ts': 3_000,
      'dist/fixture-server/matter/matter-device.js': 2_000,
      'dist/fixture-server/matter/bridge-ble.js': 2_000,
    });
    expect(() => matterChildEntry(join(src, 'matter-device.ts'))).toThrow(MatterDeviceError);
    expect(() => matterChildEntry(join(src, 'matter-device.ts'))).toThrow(
      /bridge-ble\.js is older than src\/fixture-server\/matter\/bridge-ble\.ts: run npm run build/,
    );
    writeFileSync(join(src, 'new-file.ts'), '');
    utimesSync(join(src, 'bridge-ble.ts'), 1_000, 1_000);
    expect(() => matterChildEntry(join(src, 'matter-device.ts'))).toThrow(/new-file\.js is missing: run npm run build/);
  });
});
