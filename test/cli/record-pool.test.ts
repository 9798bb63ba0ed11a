import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTranscript } from '../../src/fixture-server/transcript.js';
import { type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';

let dir: string;
let fleet: CliServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'esphome-ble-record-pool-'));
  fleet = await startCliServer(['--fleet', '2', '--port', '0'], 2);
});

afterAll(async () => {
  await fleet?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('cli record (pool commands)', () => {
  it('cli record - a pool command records one transcript per proxy session', async () => {
    const proxies = fleet.lines.flatMap((line) => ['--proxy', `127.0.0.1:${(line as { port: number }).port}`]);
    const out = join(dir, 'slots.jsonl');
    const result = await runCliProcess(['record', '--out', out, '--', 'slots', ...proxies, '--json'], { timeoutMs: 15_000 });
    expect(result.code, result.stderr).toBe(0);
    const files = (await readdir(dir)).filter((f) => f.startsWith('slots.') && f.endsWith('.jsonl')).sort();
    expect(files).toHaveLength(2);
    const names = new Set<string>();
    for (const file of files) {
      const transcript = await loadTranscript(join(dir, file));
      const types = transcript.entries.map((e) => e.type);
      // slots takes nothing: the slot query and its answer, never the advertisement subscribe.
      expect(types).not.toContain('SubscribeBluetoothLEAdvertisementsRequest');
      expect(types).toContain('SubscribeBluetoothConnectionsFreeRequest');
      expect(types).toContain('BluetoothConnectionsFreeResponse');
      names.add(transcript.header.name);
    }
    expect([...names].sort()).toEqual(['proxy-1', 'proxy-2']);
  });
});
