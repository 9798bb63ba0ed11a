import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ApiConnection } from '../../src/connection/connection.js';
import { CLI, cliEnv, runCliProcess } from '../helpers/cli.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';
import { until } from '../helpers/wait.js';

/** A third key, only ever given through a file or the environment. */
const RELAY_PSK = 'q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=';
const PASSWORD = 'correct-horse-battery-staple';

/** A long-running CLI process whose whole output is kept, to be searched for secrets afterwards. */
interface Running {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  output: () => string;
  stop: () => Promise<number | null>;
}

const running: Running[] = [];
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'esphome-ble-secrets-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

function start(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: cliEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const lines: Array<Record<string, unknown>> = [];
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    stdout += `${line}\n`;
    lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  const entry: Running = {
    child,
    lines,
    output: () => stdout + stderr,
    stop: async () => {
      if (child.exitCode !== null) return child.exitCode;
      const closed = once(child, 'close');
      child.kill('SIGTERM');
      const [code] = (await closed) as [number | null];
      return code;
    },
  };
  running.push(entry);
  return entry;
}

async function event(run: Running, type: string): Promise<Record<string, unknown>> {
  await until(() => run.lines.some((l) => l.event === type), `a ${type} line; got ${run.output()}`, 8000);
  return run.lines.find((l) => l.event === type)!;
}

/** Every spelling of a key that could leak: as given, its raw bytes in hex, and without padding. */
function spellings(secret: string): string[] {
  const forms = [secret, secret.replace(/=+$/, '')];
  if (secret.endsWith('=')) forms.push(Buffer.from(secret, 'base64').toString('hex'));
  return forms;
}

function expectNoSecrets(text: string, secrets: readonly string[]): void {
  for (const secret of secrets) for (const form of spellings(secret)) expect(text, `output holds a form of a secret`).not.toContain(form);
}

describe('cli listener rule and secrets', () => {
  it('cli serve - a non-loopback --host without a key is refused before binding (exit 2) and says why', async () => {
    const result = await runCliProcess(['serve', '--host', '0.0.0.0', '--port', '0']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('ESPAPI_ERR_INSECURE_LISTENER');
    expect(result.stderr).toMatch(/--allow-plaintext/);
    expect(result.stdout).toBe('');
  });

  it('cli relay - a non-loopback --listen without a downstream key is refused (exit 2) before any upstream connect', async () => {
    const started = Date.now();
    const result = await runCliProcess(['relay', '--proxy', '127.0.0.1:9', '--listen', '0.0.0.0:0', '--json']);
    expect(result.code).toBe(2);
    expect(result.stdout).toContain('ESPAPI_ERR_INSECURE_LISTENER');
    expect(result.stdout).not.toContain('upstreamConnecting');
    expect(Date.now() - started).toBeLessThan(8000);
  });

  it('cli serve - the key from --psk-file or $ESPHOME_BLE_PSK makes a Noise node; the key is never printed', async () => {
    const fromFile = start(['serve', '--port', '0', '--name', 'secret-file', '--psk-file', file('serve.key', `${TEST_PSK}\n`)]);
    const fromEnv = start(['serve', '--port', '0', '--name', 'secret-env'], { ESPHOME_BLE_PSK: OTHER_PSK });
    for (const [run, key] of [
      [fromFile, TEST_PSK],
      [fromEnv, OTHER_PSK],
    ] as const) {
      const listening = await event(run, 'listening');
      expect(listening.encryption).toBe('noise');
      const api = await ApiConnection.connect({ host: '127.0.0.1', port: listening.port as number, psk: key, timeout: 3000 });
      await api.close();
    }
    for (const run of [fromFile, fromEnv]) expect(await run.stop()).toBe(0);
    expectNoSecrets(fromFile.output() + fromEnv.output(), [TEST_PSK, OTHER_PSK]);
  });

  it('cli serve - --max-connections caps sessions; the refused one is a sessionRefused line', async () => {
    const serve = start(['serve', '--port', '0', '--max-connections', '1']);
    const port = (await event(serve, 'listening')).port as number;
    const api = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: 3000 });
    try {
      const extra = netConnect({ host: '127.0.0.1', port });
      extra.on('error', () => {});
      await once(extra, 'close');
      expect(await event(serve, 'sessionRefused')).toMatchObject({ node: 'esphome-ble-proxy', reason: 'maxConnections', limit: 1 });
    } finally {
      await api.close();
    }
  });

  it('cli relay - keys and passwords from files and the environment reach the proxies and clients, and no output path holds them', async () => {
    // Upstream: a Noise proxy with a password (pre-2026.1 style), reached with keys given by file and environment.
    const upstream = start([
      'serve',
      '--port',
      '0',
      '--name',
      'vault',
      '--psk-file',
      file('up.key', TEST_PSK),
      '--password-file',
      file('up.pw', PASSWORD),
    ]);
    const upPort = (await event(upstream, 'listening')).port as number;
    const relay = start(
      [
        'relay',
        '--proxy',
        `127.0.0.1:${upPort}`,
        '--psk-file',
        file('relay-up.key', TEST_PSK),
        '--password-file',
        file('relay-up.pw', PASSWORD),
        '--json',
      ],
      { ESPHOME_BLE_DOWNSTREAM_PSK: RELAY_PSK },
    );
    const listening = await event(relay, 'listening');
    expect(listening.encryption).toBe('noise');
    const port = listening.port as number;
    // A client with the relay's key gets in; one with a wrong key is refused; a plaintext client too.
    const api = await ApiConnection.connect({ host: '127.0.0.1', port, psk: RELAY_PSK, clientInfo: 'secret-test', timeout: 3000 });
    await event(relay, 'clientConnected');
    await expect(ApiConnection.connect({ host: '127.0.0.1', port, psk: OTHER_PSK, timeout: 3000 })).rejects.toMatchObject({
      code: 'ESPAPI_ERR_INVALID_KEY',
    });
    await expect(ApiConnection.connect({ host: '127.0.0.1', port, timeout: 3000 })).rejects.toMatchObject({
      code: 'ESPAPI_ERR_ENCRYPTION_REQUIRED',
    });
    await api.close();
    await event(relay, 'stats');
    expect(await relay.stop()).toBe(0);
    expect(await upstream.stop()).toBe(0);
    expectNoSecrets(relay.output() + upstream.output(), [TEST_PSK, RELAY_PSK, PASSWORD]);
  });

  it('cli relay - a wrong upstream key, a key file that is not a key and a missing file fail (exit 3) without printing the secret', async () => {
    const upstream = start(['serve', '--port', '0', '--name', 'vault2', '--psk', TEST_PSK]);
    const upPort = (await event(upstream, 'listening')).port as number;
    const wrong = await runCliProcess(['relay', '--proxy', `127.0.0.1:${upPort}`, '--json'], {
      env: { ESPHOME_BLE_PSK: OTHER_PSK },
    });
    expect(wrong.code).toBe(3);
    expect(wrong.stdout).toContain('ESPAPI_ERR_INVALID_KEY');
    const junk = 'this-is-not-base64-but-a-secret!!';
    const badFile = await runCliProcess(['relay', '--proxy', `127.0.0.1:${upPort}`, '--psk-file', file('junk.key', junk)]);
    expect(badFile.code).toBe(3);
    expect(badFile.stderr).toContain('ESPAPI_ERR_INVALID_PSK');
    const missing = await runCliProcess(['relay', '--proxy', `127.0.0.1:${upPort}`, '--downstream-psk-file', join(dir, 'nope.key')]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('ESPAPI_ERR_SECRET');
    const both = await runCliProcess(['relay', '--proxy', `127.0.0.1:${upPort}`, '--psk', TEST_PSK, '--psk-file', file('x.key', TEST_PSK)]);
    expect(both.code).toBe(2);
    const all = [wrong, badFile, missing, both].map((r) => r.stdout + r.stderr).join('\n');
    expectNoSecrets(all, [TEST_PSK, OTHER_PSK, junk]);
  });
});
