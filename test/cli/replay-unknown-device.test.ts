import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { FIXTURES_DIR } from '../helpers/fixtures.js';

/** A device the gatt recording never connected to. */
const STRANGER = 'AA:BB:CC:00:00:99';

describe('cli replay of a device not in the recording (built CLI)', () => {
  let replay: CliServer;

  beforeAll(async () => {
    replay = await startCliServer(['--port', '0', '--replay', join(FIXTURES_DIR, 'recordings/gatt.jsonl')], 1, {}, 60_000);
  }, 90_000);

  afterAll(async () => {
    await replay.stop();
  }, 90_000);

  it('cli replay - a connect the recording has no answer for is named on stderr while it waits, as for a device that is off', async () => {
    const host = `127.0.0.1:${(replay.lines[0] as { port: number }).port}`;
    const result = await runCliProcess(['read', STRANGER, '3', '--host', host, '--address-type', 'public', '--timeout', '6s'], {
      timeoutMs: 60_000,
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(
      new RegExp(
        `note ${STRANGER}: no answer from .* for 2s; the proxy keeps trying until its own connect timeout .*not in a replayed recording; giving up in \\S+ \\(--timeout\\)`,
      ),
    );
  }, 90_000);
});
