import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCliProcess } from '../helpers/cli.js';

const DEMO = 'C0:FF:EE:00:00:01';

describe('cli silent-port notes (built CLI)', () => {
  let silent: Server;
  const sockets = new Set<Socket>();
  let port: number;

  beforeAll(async () => {
    // Accepts and never says a word, as a port behind a stuck service does.
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    port = (silent.address() as { port: number }).port;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  });

  it('cli feedback - discover names the flag that bounds its connect (--connect-timeout), not --timeout', async () => {
    const result = await runCliProcess(['discover', '--proxy', `127.0.0.1:${port}`, '--connect-timeout', '4s', '--json'], {
      timeoutMs: 30_000,
    });
    for (const socket of sockets) socket.destroy();
    expect(result.stderr).toMatch(
      new RegExp(
        `note 127\\.0\\.0\\.1:${port}: no answer for 2s; waiting for its HelloResponse: .*; giving up in \\S+ \\(--connect-timeout\\)`,
      ),
    );
    expect(result.stderr).not.toContain('(--timeout)');
  }, 90_000);

  it('cli feedback - the pool names what a silent proxy waits for, as --host does (its HelloResponse; TCP or the Noise reply with a key)', async () => {
    const [plain, keyed] = await Promise.all([
      runCliProcess(['read', DEMO, '3', '--proxy', `127.0.0.1:${port}`, '--timeout', '4s'], { timeoutMs: 30_000 }),
      runCliProcess(['read', DEMO, '3', '--proxy', `127.0.0.1:${port}`, '--timeout', '4s'], {
        timeoutMs: 30_000,
        env: { ESPHOME_BLE_PSK: 'px7CPsVjoMj1wHwz2ex6yL9eCFOzTvvHOAnK/A14Ldc=' },
      }),
    ]);
    for (const socket of sockets) socket.destroy();
    expect(plain.stderr).toMatch(
      new RegExp(
        `note waiting for proxy 127\\.0\\.0\\.1:${port} to connect: waiting for its HelloResponse: the port accepted the connection but says nothing.*; giving up in \\S+ \\(--timeout\\)`,
      ),
    );
    expect(keyed.stderr).toMatch(
      new RegExp(
        `note waiting for proxy 127\\.0\\.0\\.1:${port} to connect: waiting for the TCP connection or its reply to the Noise handshake`,
      ),
    );
  }, 90_000);
});
