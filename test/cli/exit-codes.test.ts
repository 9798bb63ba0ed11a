import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';

const DEMO = 'C0:FF:EE:00:00:01';
/** The embedded broker on a free loopback port, so runs in parallel do not collide. */
const BROKER = ['--broker-listen', '127.0.0.1:0'];

/** Per run: generous, a loaded 2-core machine may take seconds to start node; a hang still fails. */
const RUN = { timeoutMs: 30_000 };

/** Runs `cases` at most `limit` at a time, in order of the results. */
async function runAll<T extends string[][]>(cases: [...T], limit = 4): Promise<{ [K in keyof T]: CliResult }> {
  const results: CliResult[] = [];
  for (let i = 0; i < cases.length; i += limit) {
    results.push(...(await Promise.all(cases.slice(i, i + limit).map((args) => runCliProcess(args, RUN)))));
  }
  return results as { [K in keyof T]: CliResult };
}

function portOf(server: CliServer): number {
  return (server.lines[0] as { port: number }).port;
}

function lastJson(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

describe('cli exit codes in every mode (built CLI)', () => {
  let plain: CliServer;
  let keyed: CliServer;
  let locked: CliServer;
  let silent: Server;
  const held = new Set<Socket>();
  let silentHost: string;
  let dir: string;

  beforeAll(async () => {
    [plain, keyed, locked] = await Promise.all([
      startCliServer(['--port', '0', '--name', 'exits-plain']),
      startCliServer(['--port', '0', '--name', 'exits-keyed', '--psk', TEST_PSK]),
      startCliServer(['--port', '0', '--name', 'exits-locked', '--password', 'hunter2', '--firmware', '2024.10']),
    ]);
    // Accepts and never answers: every connect to it times out.
    silent = createServer((socket) => {
      held.add(socket);
      socket.on('close', () => held.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentHost = `127.0.0.1:${(silent.address() as { port: number }).port}`;
    dir = await mkdtemp(join(tmpdir(), 'cli-exits-'));
  }, 90_000);

  afterAll(async () => {
    for (const socket of held) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
    await Promise.all([plain.stop(), keyed.stop(), locked.stop(), rm(dir, { recursive: true })]);
  }, 90_000);

  it('cli exits - every proxy timed out is exit 4 in every mode (one proxy, the pool, relay, mqtt), with the cause named', async () => {
    const t = ['--timeout', '1500ms'];
    const cases: string[][] = [
      ['info', '--host', silentHost, ...t],
      ['scan', '--proxy', silentHost, '--duration', '1s', ...t],
      ['scan', '--proxy', silentHost, '--json', ...t],
      ['read', DEMO, '3', '--proxy', silentHost, ...t],
      ['slots', '--proxy', silentHost, ...t],
      ['discover', '--proxy', silentHost, ...t],
      ['explain', DEMO, '--proxy', silentHost, '--listen-for', '0', ...t],
      ['pair', DEMO, '--proxy', silentHost, ...t],
      ['relay', '--proxy', silentHost, ...t],
      ['mqtt', '--proxy', silentHost, ...BROKER, ...t],
      ['mqtt', '--relay', '--proxy', silentHost, ...BROKER, ...t],
    ];
    const results = await runAll(cases);
    for (const socket of held) socket.destroy();
    for (const [i, result] of results.entries()) expect(result.code, `${cases[i]!.join(' ')}\n${result.stderr}`).toBe(4);
    expect(results[1]!.stderr).toMatch(
      /error ESPAPI_ERR_NO_PROXY: No proxy is usable: 127\.0\.0\.1:\d+ is offline \(Connecting to .* timed out/,
    );
    expect(lastJson(results[2]!.stdout)).toMatchObject({ error: { code: 'ESPAPI_ERR_NO_PROXY' } });
  }, 90_000);

  it('cli exits - relay and mqtt --relay name the upstream error when their start times out (exit 4)', async () => {
    const [relay, mqtt] = await runAll([
      ['relay', '--proxy', '127.0.0.1:1', '--timeout', '1500ms'],
      ['mqtt', '--relay', '--proxy', '127.0.0.1:1', ...BROKER, '--timeout', '1500ms'],
    ]);
    for (const result of [relay, mqtt]) {
      expect(result.code, result.stderr).toBe(4);
      expect(result.stderr).toMatch(
        /^error ESPAPI_ERR_TIMEOUT: Starting the relay \(127\.0\.0\.1:1: Cannot connect to 127\.0\.0\.1:1: ECONNREFUSED\) timed out after 1500 ms$/m,
      );
      // Said at once too, while it retried.
      expect(result.stderr).toMatch(
        /^\d\d:\d\d:\d\d upstream 127\.0\.0\.1:1 failed: Cannot connect to 127\.0\.0\.1:1: ECONNREFUSED; retrying in /m,
      );
    }
  }, 90_000);

  it('cli exits - mqtt: an unreachable broker is a timeout (exit 4) naming what the broker said', async () => {
    const result = await runCliProcess([
      'mqtt',
      '--proxy',
      `127.0.0.1:${portOf(plain)}`,
      '--broker',
      'mqtt://127.0.0.1:1',
      '--timeout',
      '1500ms',
    ]);
    expect(result.code, result.stderr).toBe(4);
    expect(result.stderr).toMatch(/^error ESPAPI_ERR_TIMEOUT: Starting the MQTT gateway timed out after 1500 ms: .*ECONNREFUSED/m);
  }, 90_000);

  it('cli exits - mqtt in pool mode waits for the pool: a refused key is exit 3, the subscription note is printed, one proxy down of two is named and the run goes on', async () => {
    const keyedHost = `127.0.0.1:${portOf(keyed)}`;
    const [wrongKey, mixed] = await runAll([
      ['mqtt', '--proxy', keyedHost, '--psk', OTHER_PSK, ...BROKER, '--timeout', '3s', '--json'],
      ['mqtt', '--proxy', `127.0.0.1:${portOf(plain)}`, '--proxy', '127.0.0.1:1', ...BROKER, '--duration', '300ms'],
    ]);
    expect(wrongKey.code, wrongKey.stderr).toBe(3);
    expect(lastJson(wrongKey.stdout)).toMatchObject({ error: { code: 'ESPAPI_ERR_NO_PROXY' } });
    expect(wrongKey.stdout).toContain('ESPAPI_ERR_INVALID_KEY');
    expect(mixed.code, mixed.stderr).toBe(0);
    expect(mixed.stderr).toMatch(/^note this command holds the Bluetooth subscription of exits-plain \(127\.0\.0\.1:\d+\)/m);
    expect(mixed.stderr).toMatch(
      /^note proxy 127\.0\.0\.1:1 is offline \(Cannot connect to 127\.0\.0\.1:1: ECONNREFUSED\); using the others$/m,
    );
    expect(mixed.stdout).toMatch(/^mqtt gateway esphome-ble on mqtt:\/\/127\.0\.0\.1:\d+ \(embedded broker\)$/m);
  }, 90_000);

  it('cli exits - mqtt --relay takes what relay takes: --proxy-password(-file), --config keys, the relay note, --allow-plaintext named, relay-only flags refused without --relay', async () => {
    const passwordFile = join(dir, 'proxy.pass');
    await writeFile(passwordFile, 'hunter2\n');
    const config = join(dir, 'proxies.json');
    await writeFile(
      config,
      JSON.stringify({ proxies: [{ host: '127.0.0.1', port: portOf(keyed), name: 'exits-keyed' }], keys: { 'exits-keyed': TEST_PSK } }),
    );
    const lockedHost = `127.0.0.1:${portOf(locked)}`;
    const [withPassword, wrongPassword, fromConfig, exposed, relayOnly] = await runAll([
      ['mqtt', '--relay', '--proxy', lockedHost, '--proxy-password-file', passwordFile, ...BROKER, '--duration', '300ms', '--json'],
      ['mqtt', '--relay', '--proxy', lockedHost, '--proxy-password', 'nope', ...BROKER, '--timeout', '5s', '--json'],
      ['mqtt', '--relay', '--config', config, ...BROKER, '--duration', '300ms', '--json'],
      ['mqtt', '--relay', '--proxy', `127.0.0.1:${portOf(plain)}`, '--relay-listen', '0.0.0.0:0', ...BROKER],
      ['mqtt', '--proxy', `127.0.0.1:${portOf(plain)}`, '--downstream-psk', TEST_PSK, ...BROKER],
    ]);
    expect(withPassword.code, withPassword.stderr).toBe(0);
    const events = withPassword.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(events.find((e) => e.event === 'relayListening')).toMatchObject({ name: 'exits-locked' });
    expect(events.find((e) => e.event === 'started')).toBeDefined();
    expect(withPassword.stderr).toMatch(/^note the relay holds the Bluetooth subscription of 127\.0\.0\.1:\d+ while it runs/m);
    expect(withPassword.stderr + withPassword.stdout).not.toContain('hunter2');
    expect(wrongPassword.code, wrongPassword.stderr).toBe(3);
    expect(lastJson(wrongPassword.stdout)).toMatchObject({ error: { code: 'ESPAPI_ERR_INVALID_PASSWORD' } });
    expect(wrongPassword.stderr).toMatch(/upstream 127\.0\.0\.1:\d+ stopped: .*\(retrying cannot fix this; --keep-trying retries anyway\)/);
    expect(fromConfig.code, fromConfig.stderr).toBe(0);
    expect(fromConfig.stdout).toContain('"event":"relayListening"');
    expect(fromConfig.stdout).toContain('"name":"exits-keyed"');
    expect(exposed.code).toBe(2);
    expect(exposed.stderr).toContain('ESPAPI_ERR_INSECURE_LISTENER');
    expect(exposed.stderr).toContain('--allow-plaintext');
    expect(relayOnly.code).toBe(2);
    expect(relayOnly.stderr).toContain('--downstream-psk goes with --relay');
  }, 90_000);
});
