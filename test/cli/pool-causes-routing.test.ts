import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { CLI, type CliServer, cliEnv, runCliProcess, startCliServer } from '../helpers/cli.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';

// The CLI's pool mode reads the same failure table and routing as the library: a proxy that refuses our key exits 3
// as the single-proxy path does, Ctrl-C ends a connect still waiting to hear its device at once, and routing
// decisions (pins, excludes) show in explain and in each attempt.

const DEMO = 'C0:FF:EE:00:00:01';
const UNHEARD = '11:22:33:44:55:66';

let vault: CliServer;
let plain: CliServer;
let other: CliServer;

function portOf(server: CliServer): number {
  return (server.lines[0] as { port: number }).port;
}

beforeAll(async () => {
  [vault, plain, other] = await Promise.all([
    startCliServer(['--port', '0', '--name', 'vault', '--psk', TEST_PSK]),
    startCliServer(['--port', '0', '--name', 'plain']),
    startCliServer(['--port', '0', '--name', 'other']),
  ]);
});

afterAll(async () => {
  await Promise.all([vault?.stop(), plain?.stop(), other?.stop()]);
});

describe('cli - true causes in pool mode', () => {
  it('cli pool - a wrong key on every proxy exits 3 and names each proxy with its cause (text and --json)', async () => {
    const text = await runCliProcess(['read', DEMO, '2a00', '--proxy', `127.0.0.1:${portOf(vault)}`, '--psk', OTHER_PSK]);
    expect(text.code, text.stderr).toBe(3);
    expect(text.stderr).toContain('ESPAPI_ERR_NO_PROXY');
    expect(text.stderr).toContain('ESPAPI_ERR_INVALID_KEY');
    expect(text.stderr).not.toContain(OTHER_PSK);
    const json = await runCliProcess(['gatt', DEMO, '--proxy', `127.0.0.1:${portOf(vault)}`, '--psk', OTHER_PSK, '--json']);
    expect(json.code, json.stderr).toBe(3);
    expect(JSON.parse(json.stdout.trim().split('\n').at(-1)!)).toMatchObject({ error: { code: 'ESPAPI_ERR_NO_PROXY' } });
    const explain = await runCliProcess([
      'explain',
      DEMO,
      '--proxy',
      `127.0.0.1:${portOf(vault)}`,
      '--psk',
      OTHER_PSK,
      '--listen-for',
      '0',
    ]);
    expect(explain.code, explain.stderr).toBe(3);
  });

  it('cli pool - --psk goes to every proxy: a plaintext one refuses it too, and both causes are named with exit 3', async () => {
    const result = await runCliProcess([
      'read',
      DEMO,
      '2a00',
      '--proxy',
      `127.0.0.1:${portOf(plain)}`,
      '--proxy',
      `127.0.0.1:${portOf(vault)}`,
      '--psk',
      OTHER_PSK,
    ]);
    expect(result.code, result.stderr).toBe(3);
    expect(result.stderr).toContain('ESPAPI_ERR_DEVICE_PLAINTEXT');
    expect(result.stderr).toContain('ESPAPI_ERR_INVALID_KEY');
  });

  it('cli pool - one proxy with a wrong key beside a working one: the working one reads, the other is noted', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pool-causes-'));
    try {
      const config = join(dir, 'proxies.json');
      await writeFile(
        config,
        JSON.stringify({
          proxies: [
            { host: '127.0.0.1', port: portOf(plain) },
            { host: '127.0.0.1', port: portOf(vault), psk: OTHER_PSK },
          ],
        }),
      );
      const result = await runCliProcess(['read', DEMO, '2a00', '--config', config, '--listen-for', '300']);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(Buffer.from('esphome-ble-demo').toString('hex'));
      // Refused for its key: named as such, not as "offline" (it answered).
      expect(result.stderr).toMatch(/note proxy \S+ refused the key or password \(.*encryption key/);
      expect(result.stderr).not.toMatch(/is offline/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('cli pool - Ctrl-C while waiting to hear a device ends the run at once with 130', async () => {
    // An in-process proxy, so the test sees the moment the CLI has subscribed (its pool is up, the connect is next).
    const node = await startSimulatedProxy({ name: 'local' });
    const child = spawn(
      process.execPath,
      [CLI, 'read', UNHEARD, '2a00', '--proxy', `127.0.0.1:${node.server.address.port}`, '--listen-for', '0'],
      {
        env: cliEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const closed = once(child, 'close');
    try {
      await expect.poll(() => node.bluetooth.subscriber, { timeout: 10_000 }).toBeDefined();
      // The connect now waits to hear a device nobody hears (2 s per attempt, 4 attempts).
      await new Promise((resolve) => setTimeout(resolve, 300));
      const interruptedAt = performance.now();
      child.kill('SIGINT');
      const [code] = (await closed) as [number | null];
      expect(code, stderr).toBe(130);
      expect(stderr).toContain('interrupted');
      // Before: 4–6 s (the rest of the attempts). Now the abort ends the wait; the margin is for closing the pool.
      expect(performance.now() - interruptedAt).toBeLessThan(1000);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await node.server.close();
    }
  });
});

describe('cli - routing decisions', () => {
  it('cli explain - --prefer pins a proxy: it goes first, the verdict says it is pinned, --json lists the decision', async () => {
    const args = ['explain', DEMO, '--proxy', `127.0.0.1:${portOf(plain)}`, '--proxy', `127.0.0.1:${portOf(other)}`, '--listen-for', '600'];
    const json = await runCliProcess([...args, '--prefer', 'other', '--json']);
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as {
      ranking: Array<{ proxy: string }>;
      routing: Array<{ kind: string; proxy: string | null; detail: string }>;
      verdict: { action: string; proxy: string; message: string };
    };
    const otherId = `127.0.0.1:${portOf(other)}`;
    expect(report.ranking[0]?.proxy).toBe(otherId);
    expect(report.routing).toEqual([expect.objectContaining({ kind: 'prefer', proxy: otherId })]);
    expect(report.verdict).toMatchObject({ action: 'connect', proxy: otherId, message: expect.stringContaining('it is pinned') });
    const text = await runCliProcess([...args, '--exclude', 'other']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/Routing \(exclude\): 127\.0\.0\.1:\d+ may not connect/);
    // A name no proxy has is a usage error, before anything waits.
    const unknown = await runCliProcess([...args, '--require', 'attic']);
    expect(unknown.code, unknown.stderr).toBe(2);
    expect(unknown.stderr).toContain('No proxy of the pool is named "attic"');
  });

  it('cli pool - routes in --config pin a device to a proxy, and its attempt says so in --json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pool-routes-'));
    try {
      const config = join(dir, 'proxies.json');
      await writeFile(
        config,
        JSON.stringify({
          proxies: [
            { host: '127.0.0.1', port: portOf(plain), name: 'plain' },
            { host: '127.0.0.1', port: portOf(other), name: 'other' },
          ],
          routes: { [DEMO.toLowerCase()]: { prefer: ['other'] } },
        }),
      );
      const result = await runCliProcess(['read', DEMO, '2a00', '--config', config, '--json']);
      expect(result.code, result.stderr).toBe(0);
      const line = JSON.parse(result.stdout.trim()) as { proxy: string; attempts: Array<{ route: Array<{ kind: string }> }> };
      expect(line.proxy).toBe('other');
      expect(line.attempts[0]?.route).toEqual([expect.objectContaining({ kind: 'prefer', proxy: 'other' })]);
      const bad = join(dir, 'bad.json');
      await writeFile(bad, JSON.stringify({ proxies: [], routes: { 'not-a-mac': { prefer: ['x'] } } }));
      const refused = await runCliProcess(['read', DEMO, '2a00', '--config', bad]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('routes.not-a-mac');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
