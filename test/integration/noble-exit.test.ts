import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { fastProfile } from '../helpers/noble.js';
import { REPO_ROOT } from '../helpers/repo-root.js';

/** A child process may take this long to finish its noble session and exit by itself. */
const EXIT_DEADLINE_MS = 8_000;

// The whole session through the package's public export, `esphome-ble/noble` (dist, kept fresh by global-setup).
// It never calls process.exit: the process must end because nothing is left open.
const SCRIPT = `
import { createNoble } from 'esphome-ble/noble';
const noble = createNoble({ proxies: JSON.parse(process.env.PROXIES), backoff: { initialDelay: 50 } });
await noble.waitForPoweredOnAsync(5000);
const found = new Promise((resolve) => noble.on('discover', (p) => p.id === 'c0ffee000001' && resolve(p)));
await noble.startScanningAsync([], false);
const peripheral = await found;
await noble.stopScanningAsync();
await peripheral.connectAsync();
const { characteristics } = await peripheral.discoverAllServicesAndCharacteristicsAsync();
const name = characteristics.find((c) => c.uuid === '2a00');
console.log('name', (await name.readAsync()).toString());
const counter = characteristics.find((c) => c.uuid === 'a3f1c2e05b7d4e8a9c3b0d1e2f3a4b04');
const notified = new Promise((resolve) => counter.once('data', resolve));
await counter.subscribeAsync();
console.log('notified', (await notified).length);
if (process.env.MODE === 'disconnect') await peripheral.disconnectAsync();
// noble.stop() with the link (and its subscription) still up in the other mode: the bindings close both, then the pool they own.
noble.stop();
console.log('stopped');
`;

let fleet: SimulatedFleet | undefined;

afterEach(async () => {
  await fleet?.close();
  fleet = undefined;
});

// Hides the optional peer the way a project without it sees it: every resolution of @stoprocent/noble fails.
const WITHOUT_NOBLE = `
import { createRequire } from 'node:module';
const Module = createRequire(import.meta.url)('node:module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (String(request).startsWith('@stoprocent/noble')) throw Object.assign(new Error('Cannot find module ' + request), { code: 'MODULE_NOT_FOUND' });
  return resolve.call(this, request, ...rest);
};
const { createNoble, createNobleBindings } = await import('esphome-ble/noble');
try {
  createNoble(['127.0.0.1:1']);
} catch (error) {
  console.log(error.code);
}
console.log(typeof createNobleBindings(['127.0.0.1:1']).startScanning);
`;

// A CommonJS consumer (many Homebridge plugins): require() of the ESM package, which Node ≥ 20.19 loads synchronously.
const COMMONJS = `
const { createNoble } = require('esphome-ble/noble');
const { ProxyPool } = require('esphome-ble');
const pool = new ProxyPool(JSON.parse(process.env.PROXIES), { backoff: { initialDelay: 50 } });
const noble = createNoble(pool);
noble.on('discover', (p) => {
  if (p.id !== 'c0ffee000001') return;
  console.log('found', p.advertisement.localName);
  noble.stopScanning(() => pool.close().then(() => console.log('closed')));
});
noble.waitForPoweredOnAsync(5000).then(() => noble.startScanningAsync([], false));
`;

async function run(
  mode: 'disconnect' | 'stop' | 'no-peer' | 'commonjs',
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const args = mode === 'commonjs' ? ['-e', COMMONJS] : ['--input-type=module', '-e', mode === 'no-peer' ? WITHOUT_NOBLE : SCRIPT];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, PROXIES: JSON.stringify(fleet?.addresses ?? []), MODE: mode },
    stdio: ['ignore', 'pipe', 'pipe'],
    // `esphome-ble` resolves to this package (its self-reference) only from inside the project.
    cwd: REPO_ROOT,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_DEADLINE_MS);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr, ms: performance.now() - started };
}

describe('noble bindings - process lifetime', () => {
  it.each(['disconnect', 'stop'] as const)('noble - a script using createNoble exits by itself with code 0 (%s)', async (mode) => {
    fleet = await SimulatedFleet.start([{ profile: await fastProfile('default') }]);
    const result = await run(mode);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('name esphome-ble-demo\nnotified 1\nstopped\n');
    expect(result.code).toBe(0);
    expect(result.ms).toBeLessThan(EXIT_DEADLINE_MS);
  });

  it('noble - a CommonJS script can require esphome-ble and esphome-ble/noble', async () => {
    fleet = await SimulatedFleet.start([{ profile: await fastProfile('default') }]);
    const result = await run('commonjs');
    // Node 22.12 alone still printed an ExperimentalWarning for require(esm); anything else on stderr is a failure.
    expect(result.stderr.split('\n').filter((line) => line !== '' && !/ExperimentalWarning|--trace-warnings/.test(line))).toEqual([]);
    expect(result.stdout).toBe('found esphome-ble-demo\nclosed\n');
    expect(result.code).toBe(0);
  });

  it('noble - without the optional peer, createNoble throws a typed error and createNobleBindings still works', async () => {
    const result = await run('no-peer');
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('ESPAPI_ERR_MISSING_PEER\nfunction\n');
    expect(result.code).toBe(0);
  });
});
