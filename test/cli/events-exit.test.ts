import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';

describe('cli events exit codes (built CLI)', () => {
  let keyed: CliServer;
  let silent: Server;
  const sockets = new Set<Socket>();
  let silentPort: number;
  let keyedHost: string;

  beforeAll(async () => {
    keyed = await startCliServer(['--port', '0', '--name', 'events-keyed', '--psk', TEST_PSK], 1, {}, 60_000);
    keyedHost = `127.0.0.1:${(keyed.lines[0] as { port: number }).port}`;
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentPort = (silent.address() as { port: number }).port;
  }, 90_000);

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await Promise.all([keyed.stop(), new Promise<void>((resolve) => silent.close(() => resolve()))]);
  }, 90_000);

  it('cli events - every proxy refusing the key before any came up stops the log at once with exit 3; --keep-trying keeps retrying until --duration, still exit 3', async () => {
    const started = Date.now();
    const [stopped, kept] = await Promise.all([
      runCliProcess(['events', '--proxy', keyedHost, '--psk', OTHER_PSK, '--json'], { timeoutMs: 60_000 }),
      runCliProcess(['events', '--proxy', keyedHost, '--psk', OTHER_PSK, '--json', '--keep-trying', '--duration', '4s'], {
        timeoutMs: 60_000,
      }),
    ]);
    expect(stopped.code, stopped.stderr).toBe(3);
    expect(stopped.stderr).toContain('no proxy can be used and retrying cannot fix it (--keep-trying retries anyway)');
    expect(stopped.stdout).toContain('"event":"proxyDown"');
    // It ended by itself (without --duration it would run until Ctrl-C), long before the test's kill.
    expect(Date.now() - started).toBeLessThan(55_000);
    expect(kept.code, kept.stderr).toBe(3);
    expect(kept.stderr).not.toContain('no proxy can be used');
  }, 90_000);

  it('cli events - no proxy ever up exits by the failure table: every connect timed out 4, a refused port 1; one up exits 0', async () => {
    const [timedOut, refused] = await Promise.all([
      runCliProcess(['events', '--proxy', `127.0.0.1:${silentPort}`, '--timeout', '1s', '--duration', '3s'], { timeoutMs: 60_000 }),
      runCliProcess(['events', '--proxy', '127.0.0.1:1', '--duration', '2s'], { timeoutMs: 60_000 }),
    ]);
    for (const socket of sockets) socket.destroy();
    expect(timedOut.code, timedOut.stderr).toBe(4);
    expect(refused.code, refused.stderr).toBe(1);
    const up = await runCliProcess(['events', '--proxy', keyedHost, '--psk', TEST_PSK, '--duration', '2s', '--json'], {
      timeoutMs: 60_000,
    });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain('"event":"proxyUp"');
  }, 90_000);
});
