import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { FIXTURES_DIR } from '../helpers/fixtures.js';

const DEMO = 'C0:FF:EE:00:00:01';

function hostOf(server: CliServer): string {
  return `127.0.0.1:${(server.lines[0] as { port: number }).port}`;
}

function jsonLines(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('cli new commands and replay (built CLI)', () => {
  let node: CliServer;
  let replay: CliServer;

  beforeAll(async () => {
    [node, replay] = await Promise.all([
      startCliServer(['--port', '0', '--name', 'new-commands']),
      startCliServer(['--port', '0', '--replay', join(FIXTURES_DIR, 'recordings/gatt.jsonl')]),
    ]);
  }, 90_000);

  afterAll(async () => {
    await Promise.all([node.stop(), replay.stop()]);
  }, 90_000);

  it('cli commands - scanner-mode shows the mode, refuses a switch without consent (exit 2, nothing changed), switches with --yes', async () => {
    const host = hostOf(node);
    const shown = await runCliProcess(['scanner-mode', '--host', host, '--subscribe', '--json']);
    const refused = await runCliProcess(['scanner-mode', 'passive', '--host', host]);
    const switched = await runCliProcess(['scanner-mode', 'passive', '--host', host, '--yes', '--json']);
    const back = await runCliProcess(['scanner-mode', 'active', '--host', host, '--yes', '--json']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({
      action: 'scannerMode',
      mode: null,
      proxies: [{ ok: true, detail: expect.stringContaining('active') }],
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("Home Assistant's scanner on these proxies changes too");
    expect(refused.stderr).toContain('pass --yes (nothing was changed)');
    expect(switched.code, switched.stderr).toBe(0);
    expect(JSON.parse(switched.stdout)).toMatchObject({
      mode: 'passive',
      proxies: [{ ok: true, detail: expect.stringContaining('running, passive') }],
    });
    expect(back.code).toBe(0);
  }, 90_000);

  it('cli commands - pair, unpair and clear-cache on one proxy and through the pool, with --json', async () => {
    const host = hostOf(node);
    const pair = await runCliProcess(['pair', DEMO, '--host', host, '--json']);
    const unpair = await runCliProcess(['unpair', DEMO.toLowerCase(), '--proxy', host, '--yes', '--json']);
    const clear = await runCliProcess(['clear-cache', DEMO, '--host', host, '--yes', '--json']);
    const unasked = await runCliProcess(['unpair', DEMO, '--host', host]);
    expect(pair.code, pair.stderr).toBe(0);
    expect(JSON.parse(pair.stdout)).toMatchObject({ mac: DEMO, paired: true });
    expect(unpair.code, unpair.stderr).toBe(0);
    expect(JSON.parse(unpair.stdout)).toMatchObject({ action: 'unpair', mac: DEMO, proxies: [{ ok: true, detail: 'bond removed' }] });
    expect(clear.code, clear.stderr).toBe(0);
    expect(JSON.parse(clear.stdout)).toMatchObject({ action: 'clearCache', mac: DEMO, proxies: [{ ok: true, detail: 'cache cleared' }] });
    expect(unasked.code).toBe(2);
  }, 90_000);

  it('cli commands - events logs each proxy up and down with its cause, as JSON lines', async () => {
    const result = await runCliProcess(['events', '--proxy', hostOf(node), '--proxy', '127.0.0.1:1', '--json', '--duration', '2500ms']);
    expect(result.code, result.stderr).toBe(0);
    const events = jsonLines(result.stdout);
    expect(events).toContainEqual(expect.objectContaining({ event: 'proxyUp', proxy: hostOf(node), name: 'new-commands' }));
    expect(events).toContainEqual(expect.objectContaining({ event: 'proxyDown', proxy: '127.0.0.1:1' }));
    expect(events.find((e) => e.event === 'proxyDown')).toMatchObject({
      code: 'ESPAPI_ERR_CONNECT',
      message: expect.stringContaining('ECONNREFUSED'),
      permanent: false,
    });
    for (const event of events) expect(Number.isNaN(Date.parse(String(event.time)))).toBe(false);
  }, 90_000);

  it('cli replay - a gatt recording answers read and gatt; an unrecorded handle gets the firmware GATT error at once, never a hang', async () => {
    const host = hostOf(replay);
    const started = performance.now();
    const read = await runCliProcess(['read', DEMO, '3', '--host', host, '--json']);
    const unrecorded = await runCliProcess(['read', DEMO, '99', '--host', host, '--json']);
    const gatt = await runCliProcess(['gatt', DEMO, '--host', host, '--json']);
    // Three connects and disconnects: far below one silent 20 s disconnect wait.
    expect(performance.now() - started).toBeLessThan(15_000);
    expect(read.code, read.stderr).toBe(0);
    expect(JSON.parse(read.stdout)).toMatchObject({ handle: 3, text: 'esphome-ble-demo' });
    expect(unrecorded.code).toBe(1);
    expect(JSON.parse(unrecorded.stdout)).toMatchObject({
      handle: 99,
      error: { code: 'ESPAPI_ERR_GATT', statusName: 'ESP_GATT_INVALID_HANDLE' },
    });
    expect(gatt.code, gatt.stderr).toBe(0);
    expect(gatt.stdout).toContain('esphome-ble-demo');
  }, 90_000);
});
