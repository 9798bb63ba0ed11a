import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTranscript } from '../../src/fixture-server/transcript.js';
import { type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { TEST_PSK } from '../helpers/fixture.js';

let dir: string;
let plain: CliServer;
let noise: CliServer;

function portOf(server: CliServer): string {
  return String((server.lines[0] as { port: number }).port);
}

function target(server: CliServer): string[] {
  return ['--host', '127.0.0.1', '--port', portOf(server)];
}

/** Starts `serve --replay file` (extra args e.g. --psk), runs `fn` against it and always stops it. */
async function withReplay<T>(file: string, extra: string[], fn: (server: CliServer) => Promise<T>): Promise<T> {
  const server = await startCliServer(['--port', '0', '--replay', file, ...extra]);
  try {
    return await fn(server);
  } finally {
    await server.stop();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'esphome-ble-record-'));
  [plain, noise] = await Promise.all([startCliServer(['--port', '0']), startCliServer(['--port', '0', '--psk', TEST_PSK])]);
});

afterAll(async () => {
  await Promise.all([plain?.stop(), noise?.stop()]);
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('cli record', () => {
  it('cli record - records info, and info against serve --replay prints the same device info', async () => {
    const file = join(dir, 'sub', 'info.jsonl');
    const live = await runCliProcess(['record', '--out', file, '--', 'info', ...target(plain)]);
    expect(live.code, live.stderr).toBe(0);
    expect(live.stdout).toContain('esphome-ble-proxy');
    expect(live.stderr).toMatch(/recorded \d+ messages of esphome-ble-proxy to .*info\.jsonl/);

    const transcript = await loadTranscript(file);
    expect(transcript.header).toMatchObject({ name: 'esphome-ble-proxy', encryption: 'plaintext' });
    expect(transcript.header.description).toContain('esphome-ble info --host 127.0.0.1');
    expect(transcript.entries.map((e) => e.type)).toEqual([
      // The client pipelines its set-up requests in one write.
      'HelloRequest',
      'AuthenticationRequest',
      'DeviceInfoRequest',
      'DeviceCapabilitiesRequest',
      'HelloResponse',
      'DeviceInfoResponse',
      'DeviceCapabilitiesResponse',
      'DisconnectRequest',
      'DisconnectResponse',
    ]);

    const replayed = await withReplay(file, [], (server) => runCliProcess(['info', ...target(server)]));
    expect(replayed.code, replayed.stderr).toBe(0);
    expect(replayed.stdout).toBe(live.stdout);
  });

  it('cli record - a Noise session is recorded decrypted, the key redacted, and replays over Noise', async () => {
    const file = join(dir, 'noise.jsonl');
    const live = await runCliProcess(['record', '--out', file, '--', 'info', ...target(noise), '--psk', TEST_PSK, '--json']);
    expect(live.code, live.stderr).toBe(0);
    const transcript = await loadTranscript(file);
    expect(transcript.header.encryption).toBe('noise');
    expect(transcript.header.description).toContain('--psk ***');
    expect(transcript.header.description).not.toContain(TEST_PSK);

    const replayed = await withReplay(file, ['--psk', TEST_PSK], (server) =>
      runCliProcess(['info', ...target(server), '--psk', TEST_PSK, '--json']),
    );
    expect(replayed.code, replayed.stderr).toBe(0);
    const [a, b] = [live, replayed].map((r) => JSON.parse(r.stdout) as Record<string, unknown>);
    expect(b).toEqual({ ...a, port: b?.port });
    expect(b).toMatchObject({ encryption: 'noise' });
  });

  it('cli record - $ESPHOME_BLE_RECORD records a plain command run, written on exit', async () => {
    const file = join(dir, 'env.jsonl');
    const live = await runCliProcess(['info', ...target(plain), '--password', 'hunter2'], { env: { ESPHOME_BLE_RECORD: file } });
    expect(live.code, live.stderr).toBe(0);
    const transcript = await loadTranscript(file);
    expect(transcript.header).toMatchObject({ name: 'esphome-ble-proxy', encryption: 'plaintext' });
    expect(transcript.header.mac).toMatch(/^[0-9A-F]{2}(:[0-9A-F]{2}){5}$/);
    const auth = transcript.entries.find((e) => e.type === 'AuthenticationRequest');
    expect(auth?.msg).toEqual({ password: '<redacted>' });
  });

  it('cli record - usage errors and a command that fails', async () => {
    const noOut = await runCliProcess(['record', '--', 'info', ...target(plain)]);
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toContain('--out FILE is required');

    const noCommand = await runCliProcess(['record', '--out', join(dir, 'x.jsonl')]);
    expect(noCommand.code).toBe(2);
    expect(noCommand.stderr).toContain('the command to record is missing');

    const nested = await runCliProcess(['record', '--out', join(dir, 'x.jsonl'), '--', 'record', '--out', 'y']);
    expect(nested.code).toBe(2);

    // Nothing listens on port 1: the command's own failure and exit code come through; nothing is written.
    const failed = await runCliProcess(['record', '--out', join(dir, 'failed.jsonl'), '--', 'info', '--host', '127.0.0.1', '--port', '1']);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('nothing recorded');
  });
});
