import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { CLI, cliEnv, startCliServer } from '../helpers/cli.js';
import { until } from '../helpers/wait.js';

const closers: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** `count` connections that each send a frame the firmware refuses (a Noise hello to a plaintext node), at once. */
async function refusedFrames(port: number, count: number): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, async () => {
      const socket = netConnect({ host: '127.0.0.1', port });
      socket.on('error', () => {});
      socket.on('data', () => {});
      closers.push(() => {
        socket.destroy();
      });
      await once(socket, 'connect');
      socket.write(Uint8Array.of(1, 0, 0));
      await once(socket, 'close');
    }),
  );
}

type Line = Record<string, unknown> & { count?: number };

const total = (lines: Line[]): number => lines.reduce((sum, line) => sum + (line.count ?? 0), 0);

describe('cli/event-lines', () => {
  it('serve - 60 refused connections within a second are two lines, the second with the count', async () => {
    const serve = await startCliServer(['--port', '0', '--max-connections', '100']);
    closers.push(() => serve.stop());
    const port = (serve.lines[0] as { port: number }).port;
    await refusedFrames(port, 60);
    const events = serve.events as Line[];
    await until(() => total(events) === 60, 'lines standing for every drop', 5_000);
    // One line, then one per second the connections took (a loaded machine may stretch 60 connects over seconds).
    expect(events.length).toBeLessThanOrEqual(5);
    expect(events[0]).toMatchObject({ event: 'sessionDropped', reason: 'protocol', count: 1 });
    expect(events.at(-1)?.count).toBeGreaterThan(1);
  });

  it('relay --json - 60 refused connections within a second are two clientDropped lines, the second with the count', async () => {
    const upstream = await startSimulatedProxy({ name: 'lines-upstream', advertise: false });
    closers.push(() => upstream.server.close());
    const child = spawn(
      process.execPath,
      [CLI, 'relay', '--proxy', `127.0.0.1:${upstream.server.address.port}`, '--max-clients', '100', '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv() },
    );
    closers.push(async () => {
      if (child.exitCode !== null) return;
      const exited = once(child, 'close');
      child.kill('SIGTERM');
      await exited;
    });
    const lines: Line[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => lines.push(JSON.parse(line) as Line));
    await until(() => lines.some((l) => l.event === 'listening'), 'the listener', 10_000);
    const port = lines.find((l) => l.event === 'listening')!.port as number;
    await refusedFrames(port, 60);
    const dropped = (): Line[] => lines.filter((l) => l.event === 'clientDropped');
    await until(() => total(dropped()) === 60, 'lines standing for every drop', 5_000);
    expect(dropped().length).toBeLessThanOrEqual(5);
    expect(dropped()[0]).toMatchObject({ reason: 'protocol', count: 1 });
    // Never-Hello clients leave no clientDisconnected line either.
    expect(lines.filter((l) => l.event === 'clientDisconnected')).toEqual([]);
  });
});
