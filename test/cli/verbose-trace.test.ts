import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { TEST_PSK } from '../helpers/fixture.js';

const DEMO = 'C0:FF:EE:00:00:01';
/** The first line of every traced session: our Hello, with its wire id, size and fields. */
const HELLO_OUT =
  /^\+\d+\.\d{3}s 127\.0\.0\.1:\d+ -> HelloRequest \(1\) \d+ B \{"clientInfo":"[^"]+","apiVersionMajor":1,"apiVersionMinor":\d+\}$/m;
const HELLO_IN = /^\+\d+\.\d{3}s 127\.0\.0\.1:\d+ <- HelloResponse \(2\) \d+ B \{.*"name":"[^"]+"/m;

function portOf(server: CliServer): string {
  return `127.0.0.1:${(server.lines[0] as { port: number }).port}`;
}

/** Runs the commands one after the other (a node serves one Bluetooth subscriber at a time, as the firmware). */
async function chain(commands: string[][]): Promise<CliResult[]> {
  const results: CliResult[] = [];
  for (const args of commands) results.push(await runCliProcess([...args, '--verbose'], { timeoutMs: 20_000 }));
  return results;
}

describe('cli --verbose (built CLI)', () => {
  const nodes: CliServer[] = [];
  let keyed: CliServer;
  let locked: CliServer;

  beforeAll(async () => {
    nodes.push(
      ...(await Promise.all(
        [1, 2, 3, 4].map((i) => startCliServer(['--port', '0', '--name', `trace-${i}`, '--subscription', 'newest-wins'])),
      )),
    );
    [keyed, locked] = await Promise.all([
      startCliServer(['--port', '0', '--name', 'trace-keyed', '--psk', TEST_PSK]),
      startCliServer(['--port', '0', '--name', 'trace-locked', '--password', 'hunter2', '--firmware', '2024.10']),
    ]);
  }, 90_000);

  afterAll(async () => {
    await Promise.all([...nodes, keyed, locked].map((n) => n.stop()));
  }, 90_000);

  it('cli --verbose - every command that talks to proxies traces the messages it exchanges on stderr (name, id, size, fields)', async () => {
    const [a, b, c, d] = nodes.map(portOf) as [string, string, string, string];
    const chains: string[][][] = [
      [
        ['info', '--host', a],
        ['slots', '--proxy', a],
        ['discover', '--proxy', a],
        ['unpair', DEMO, '--host', a, '--yes'],
        ['clear-cache', DEMO, '--host', a, '--yes'],
        ['scanner-mode', 'active', '--host', a, '--yes'],
      ],
      [
        ['scan', '--host', b, '--duration', '1s'],
        ['mqtt', '--proxy', b, '--broker-listen', '127.0.0.1:0', '--duration', '500ms'],
      ],
      [
        ['read', DEMO, '3', '--host', c],
        ['gatt', DEMO, '--host', c],
        ['pair', DEMO, '--proxy', c],
      ],
      [
        ['events', '--proxy', d, '--duration', '1s'],
        ['explain', DEMO, '--proxy', d, '--listen-for', '500ms'],
        ['relay', '--proxy', d, '--duration', '1s'],
      ],
    ];
    const results = await Promise.all(chains.map(chain));
    for (const [i, commands] of chains.entries()) {
      for (const [j, args] of commands.entries()) {
        const result = results[i]![j]!;
        const what = `${args.join(' ')}\n${result.stderr.slice(0, 2000)}`;
        expect(result.stderr, what).toMatch(HELLO_OUT);
        expect(result.stderr, what).toMatch(HELLO_IN);
        // With one --host the connect phases too, so a silent node shows where it stops.
        if (args.includes('--host'))
          expect(result.stderr, what).toMatch(/^\+\d+\.\d{3}s 127\.0\.0\.1:\d+ \.\. opening the TCP connection$/m);
      }
    }
    // Decoded fields where they are cheap: the GATT read names its handle; advertisements are summarised per batch.
    expect(results[2]![0]!.stderr).toMatch(/-> BluetoothGATTReadRequest \(\d+\) \d+ B \{"address":"\d+","handle":3\}/);
    expect(results[1]![0]!.stderr).toMatch(
      /<- BluetoothLERawAdvertisementsResponse \(93\) \d+ B \d+ advertisements?: ([0-9A-F]{2}:){5}[0-9A-F]{2} -\d+/,
    );
    // Without --verbose: no trace.
    const quiet = await runCliProcess(['info', '--host', a]);
    expect(quiet.stderr).not.toContain('HelloRequest');
  }, 90_000);

  it('cli --verbose - keys and passwords are never shown: not the Noise key, not the API password', async () => {
    const [noise, password] = await Promise.all([
      runCliProcess(['info', '--host', portOf(keyed), '--psk', TEST_PSK, '--verbose']),
      runCliProcess(['info', '--host', portOf(locked), '--password', 'hunter2', '--verbose']),
    ]);
    expect(noise.code, noise.stderr).toBe(0);
    expect(noise.stderr).toContain('Noise handshake sent, waiting for the reply');
    expect(noise.stderr).toMatch(HELLO_OUT);
    expect(noise.stderr + noise.stdout).not.toContain(TEST_PSK);
    expect(password.code, password.stderr).toBe(0);
    // Not even its length: the size of the message carrying it would tell it.
    expect(password.stderr).toMatch(/-> (AuthenticationRequest|ConnectRequest) \(3\) size hidden \{"password":"\*\*\*"\}/);
    expect(password.stderr).not.toMatch(/\(3\) \d+ B/);
    expect(password.stderr + password.stdout).not.toContain('hunter2');
  }, 90_000);
});
