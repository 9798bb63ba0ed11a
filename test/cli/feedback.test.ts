import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliServer, runCliProcess, startCliProcess, startCliServer, withoutNote } from '../helpers/cli.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';
import { HAS_SCRIPT, runInTerminal } from '../helpers/terminal.js';

const DEMO = 'C0:FF:EE:00:00:01';

function portOf(server: CliServer): number {
  return (server.lines[0] as { port: number }).port;
}

async function listen(server: Server | HttpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

async function close(server: Server | HttpServer): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

describe('cli feedback (built CLI)', () => {
  let plain: CliServer;
  let keyed: CliServer;
  let http: HttpServer;
  let silent: Server;
  const silentSockets = new Set<Socket>();
  let httpPort: number;
  let silentPort: number;

  beforeAll(async () => {
    [plain, keyed] = await Promise.all([
      startCliServer(['--port', '0', '--name', 'plain']),
      startCliServer(['--port', '0', '--name', 'keyed', '--psk', TEST_PSK]),
    ]);
    http = createHttpServer((_req, res) => res.end('not esphome'));
    // Accepts and never says a word, as a port behind a stuck service does.
    silent = createServer((socket) => {
      silentSockets.add(socket);
      socket.on('close', () => silentSockets.delete(socket));
    });
    [httpPort, silentPort] = await Promise.all([listen(http), listen(silent)]);
  });

  afterAll(async () => {
    for (const socket of silentSockets) socket.destroy();
    http.closeAllConnections();
    await Promise.all([plain.stop(), keyed.stop(), close(http), close(silent)]);
  });

  it('cli feedback - a silent port is named after a short grace with what the connect waits for, then times out (exit 4)', async () => {
    const result = await runCliProcess(['info', '--host', `127.0.0.1:${silentPort}`, '--timeout', '3500ms']);
    for (const socket of silentSockets) socket.destroy();
    expect(result.code, result.stderr).toBe(4);
    const lines = result.stderr.trim().split('\n');
    expect(lines[0]).toMatch(
      new RegExp(
        `^note 127\\.0\\.0\\.1:${silentPort}: no answer for 2s; waiting for its HelloResponse: the port accepted the connection but says nothing .*; giving up in \\d+(ms|\\.\\ds|s) \\(--timeout\\)$`,
      ),
    );
    expect(lines[1]).toMatch(/^error ESPAPI_ERR_TIMEOUT: Connecting to 127\.0\.0\.1:\d+ timed out after 3500 ms$/);
    // Over Noise the connect waits for the handshake's reply instead.
    const noise = await runCliProcess(['info', '--host', `127.0.0.1:${silentPort}`, '--psk', TEST_PSK, '--timeout', '2500ms']);
    for (const socket of silentSockets) socket.destroy();
    expect(noise.stderr).toContain('waiting for its reply to the Noise handshake');
    // Two runs that each wait out their deadline: room for a loaded machine.
  }, 30_000);

  it('cli feedback - an HTTP port is named as such, with one --host and in the pool, and retrying it is pointless', async () => {
    const [single, pool] = await Promise.all([
      runCliProcess(['info', '--host', `127.0.0.1:${httpPort}`]),
      runCliProcess(['scan', '--proxy', `127.0.0.1:${httpPort}`, '--duration', '1s']),
    ]);
    expect(single.code).toBe(1);
    expect(single.stderr).toMatch(
      /^error ESPAPI_ERR_NOT_ESPHOME: 127\.0\.0\.1:\d+: this port speaks HTTP, not the ESPHome native API \(it answered "HTTP\/1\.1 400 Bad Request"\)/,
    );
    expect(single.stderr).not.toContain('indicator byte');
    // In the pool the same cause is permanent: the run stops at once with it instead of waiting out the timeout.
    expect(pool.code).toBe(1);
    expect(pool.stderr).toContain('this port speaks HTTP, not the ESPHome native API');
  });

  it('cli feedback - scan counts the proxies that served: two of three failing is "via 1 of 3 proxies", each named with its cause, exit 1', async () => {
    // A key per proxy: the plaintext one has none, the keyed one the wrong one.
    const dir = await mkdtemp(join(tmpdir(), 'cli-feedback-'));
    const config = join(dir, 'proxies.json');
    await writeFile(
      config,
      JSON.stringify({
        proxies: [
          { host: '127.0.0.1', port: portOf(plain) },
          { host: '127.0.0.1', port: 1 },
          { host: '127.0.0.1', port: portOf(keyed), psk: OTHER_PSK },
        ],
      }),
    );
    const result = await runCliProcess(['scan', '--config', config, '--duration', '1s']).finally(() => rm(dir, { recursive: true }));
    expect(result.code, result.stderr).toBe(1);
    expect(result.stdout).toMatch(/\d+ devices, \d+ reports in \d\.\d s via 1 of 3 proxies \(2 not in use, see below\)/);
    expect(result.stdout).toContain(DEMO);
    const stderr = withoutNote(result.stderr);
    // Refused for its key is not "offline": it answered.
    expect(stderr).toMatch(/note proxy 127\.0\.0\.1:\d+ refused the key or password \(The device rejected the encryption key/);
    expect(stderr).not.toMatch(new RegExp(`127\\.0\\.0\\.1:${portOf(keyed)} is offline`));
    expect(stderr).toMatch(/note proxy 127\.0\.0\.1:1 is offline \(Cannot connect to 127\.0\.0\.1:1: ECONNREFUSED\)/);
    expect(stderr).toMatch(/error proxy 127\.0\.0\.1:1 is offline .*: this scan lacks what it hears/);
  });

  it('cli feedback - a wrong key exits 3 in every mode: one proxy, the pool, --json', async () => {
    const keyedHost = `127.0.0.1:${portOf(keyed)}`;
    const results = await Promise.all([
      runCliProcess(['info', '--host', keyedHost, '--psk', OTHER_PSK]),
      runCliProcess(['read', DEMO, '3', '--host', keyedHost, '--psk', OTHER_PSK, '--json']),
      runCliProcess(['read', DEMO, '3', '--proxy', keyedHost, '--psk', OTHER_PSK]),
      runCliProcess(['scan', '--proxy', keyedHost, '--psk', OTHER_PSK, '--json']),
      runCliProcess(['slots', '--proxy', keyedHost, '--psk', OTHER_PSK, '--json']),
      runCliProcess(['discover', '--proxy', keyedHost, '--psk', OTHER_PSK, '--json']),
      runCliProcess(['unpair', DEMO, '--proxy', keyedHost, '--psk', OTHER_PSK, '--yes', '--json']),
    ]);
    for (const result of results) expect(result.code, result.stderr + result.stdout).toBe(3);
    expect(JSON.parse(results[1]!.stdout)).toMatchObject({ error: { code: 'ESPAPI_ERR_INVALID_KEY' } });
  });

  it('cli feedback - the relay says at once what its upstream does: a refused connection on stderr while it retries, a wrong key stops it (exit 3) unless --keep-trying', async () => {
    const refused = startCliProcess(['relay', '--proxy', '127.0.0.1:1'], { timeoutMs: 15_000 });
    const wrongKey = runCliProcess(['relay', '--proxy', `127.0.0.1:${portOf(keyed)}`, '--psk', OTHER_PSK], { timeoutMs: 10_000 });
    const keepTrying = startCliProcess(['relay', '--proxy', `127.0.0.1:${portOf(keyed)}`, '--psk', OTHER_PSK, '--keep-trying', '--json'], {
      timeoutMs: 15_000,
    });
    const stderrOf = (child: typeof refused.child): Promise<string> =>
      new Promise((resolve) => {
        let text = '';
        child.stderr!.on('data', (d: Buffer) => {
          text += d.toString();
          if ((text.match(/failed: /g) ?? []).length >= 2) resolve(text);
        });
      });
    const [refusedText, keepText] = await Promise.all([stderrOf(refused.child), stderrOf(keepTrying.child)]);
    expect(refusedText).toMatch(
      /^\d\d:\d\d:\d\d upstream 127\.0\.0\.1:1 failed: Cannot connect to 127\.0\.0\.1:1: ECONNREFUSED; retrying in \S+$/m,
    );
    expect(keepText).toMatch(/upstream 127\.0\.0\.1:\d+ failed: The device rejected the encryption key .*; retrying in \S+$/m);
    refused.child.kill('SIGTERM');
    keepTrying.child.kill('SIGTERM');
    const [stopped, kept, wrong] = await Promise.all([refused.done, keepTrying.done, wrongKey]);
    expect(stopped.code).toBe(0);
    expect(kept.code).toBe(0);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(
      /upstream 127\.0\.0\.1:\d+ stopped: The device rejected the encryption key .*\(retrying cannot fix this; --keep-trying retries anyway\)/,
    );
    expect(wrong.stderr).toMatch(/^error ESPAPI_ERR_INVALID_KEY: /m);
  });

  it('cli feedback - serve refuses contradictory arguments (exit 2, nothing started)', async () => {
    const cases: Array<[string[], string]> = [
      [['--slots', '2', '--slots-busy', '5'], '--slots-busy 5 is more than the proxy has: --slots 2'],
      [['--board', 'rp2040', '--slots-busy', '2'], '--slots-busy 2 is more than the proxy has: 1 slots (--board rp2040)'],
      [['--board', 'bk72xx', '--slots', '2'], '--slots cannot go with --board bk72xx: that board has no connection slots'],
      [['--replay', 'fixtures/recordings/gatt.jsonl', '--fleet', '2'], '--fleet shapes a simulated proxy; --replay plays a recording back'],
      [['--allow-plaintext', '--psk', TEST_PSK], '--allow-plaintext asks for a listener without a key, but --psk gives it one'],
      [['--host', '0.0.0.0'], 'allow-plaintext'],
      [['--slots', '0'], '--slots must be a whole number from 1 to 9, got "0"'],
    ];
    const results = await Promise.all(cases.map(([args]) => runCliProcess(['serve', ...args, '--port', '0'], { timeoutMs: 5_000 })));
    for (const [i, result] of results.entries()) {
      expect(result.code, `${cases[i]![0].join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain(cases[i]![1]);
    }
  });

  it.skipIf(!HAS_SCRIPT)(
    'cli feedback - Ctrl-C on a terminal is acknowledged at once (waits for util-linux script for a pseudo-terminal)',
    async () => {
      const result = await runInTerminal(['scan', '--host', `127.0.0.1:${portOf(plain)}`, '--follow'], {
        ctrlCWhen: /reports in \d+ s via/,
      });
      expect(result.code).toBe(0);
      expect(result.screen).toContain('stopping… (Ctrl-C again quits at once)');
      // "At once" on a loaded machine: well before any network deadline.
      expect(result.ackMs).toBeLessThan(1_000);
    },
  );
});
