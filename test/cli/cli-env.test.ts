import { afterEach, describe, expect, it } from 'vitest';
import { CLI_ENV_VARIABLES, runCliProcess, startCliServer } from '../helpers/cli.js';
import { TEST_PSK } from '../helpers/fixture.js';

const saved = new Map<string, string | undefined>();

afterEach(() => {
  for (const [name, value] of saved) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  saved.clear();
});

/** Sets a variable in this process, as a developer's shell or CI might have it. */
function setOuter(name: string, value: string): void {
  if (!saved.has(name)) saved.set(name, process.env[name]);
  process.env[name] = value;
}

describe('cli/env', () => {
  it('cli helpers - a key, password or recording path in the outer environment does not reach the CLI unless the test gives it', async () => {
    expect(CLI_ENV_VARIABLES).toContain('ESPHOME_BLE_PSK');
    setOuter('ESPHOME_BLE_PSK', TEST_PSK);
    setOuter('ESPHOME_BLE_DOWNSTREAM_PSK', TEST_PSK);
    setOuter('ESPHOME_BLE_PASSWORD', 'outer');
    setOuter('ESPHOME_BLE_RECORD', '/nonexistent/outer-recording');
    const plain = await startCliServer(['--port', '0']);
    try {
      expect(plain.lines[0]).toMatchObject({ event: 'listening', encryption: 'plaintext' });
    } finally {
      await plain.stop();
    }
    const keyed = await startCliServer(['--port', '0'], 1, { ESPHOME_BLE_PSK: TEST_PSK });
    try {
      expect(keyed.lines[0]).toMatchObject({ encryption: 'noise' });
    } finally {
      await keyed.stop();
    }
    // A one-shot command against the plaintext node would fail if the outer key (or recording path) reached it.
    const node = await startCliServer(['--port', '0']);
    try {
      const port = (node.lines[0] as { port: number }).port;
      const info = await runCliProcess(['info', '--host', '127.0.0.1', '--port', String(port), '--json']);
      expect(info.stderr).toBe('');
      expect(info.code).toBe(0);
    } finally {
      await node.stop();
    }
  });
});
