import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { BleConnectError, GattError } from '../../src/errors.js';
import { ReplayPlugin, type UnrecordedAnswer } from '../../src/fixture-server/replay.js';
import { loadTranscript } from '../../src/fixture-server/transcript.js';
import { ApiServer } from '../../src/server/api-server.js';

// What a recording does not hold is answered as the firmware would, in the state the replay put the session in.
const RECORDINGS = join(import.meta.dirname, '..', '..', 'fixtures', 'recordings');
const DEMO = 0xc0ffee000001;
const UNRECORDED_DEVICE = 0xc0ffee000002;
const text = new TextDecoder();

const servers: ApiServer[] = [];
const apis: ApiConnection[] = [];

afterEach(async () => {
  for (const api of apis.splice(0)) api.destroy();
  for (const server of servers.splice(0)) await server.close();
});

async function replayGatt(
  establishTimeout?: number,
): Promise<{ proxy: BluetoothProxy; answers: UnrecordedAnswer[]; plugin: ReplayPlugin }> {
  const answers: UnrecordedAnswer[] = [];
  const transcript = await loadTranscript(join(RECORDINGS, 'gatt.jsonl'));
  const plugin = new ReplayPlugin(transcript, {
    onUnrecorded: (answer) => answers.push(answer),
    ...(establishTimeout === undefined ? {} : { establishTimeout }),
  });
  const server = new ApiServer({ host: '127.0.0.1', port: 0, name: transcript.header.name, plugins: [plugin] });
  servers.push(server);
  const { port } = await server.listen();
  const api = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: 3000 });
  apis.push(api);
  return { proxy: await BluetoothProxy.attach(api, { timeout: 2000 }), answers, plugin };
}

describe('replay fallback', () => {
  it('replay fallback - a read-only flow on a gatt recording: repeated reads answered again, unrecorded handles refused, the disconnect answered at once', async () => {
    const { proxy, answers, plugin } = await replayGatt();
    const link = await proxy.connect(DEMO, { addressType: 1, timeout: 2000 });
    await link.getServices({ timeout: 2000 });
    expect(text.decode(await link.read(0x03, { timeout: 2000 }))).toBe('esphome-ble-demo');
    // Read again: the recording answered it once, the replay answers the same again.
    expect(text.decode(await link.read(0x03, { timeout: 2000 }))).toBe('esphome-ble-demo');
    // Appearance is in the recorded table but its value is not recorded: the device's answer is unknown, refused.
    await expect(link.read(0x05, { timeout: 2000 })).rejects.toMatchObject({ name: 'GattError', status: 0x85 });
    // 0x99 is not in the recorded table: the ATT answer for a handle that does not exist.
    const invalid = await link.read(0x99, { timeout: 2000 }).catch((error: unknown) => error);
    expect(invalid).toBeInstanceOf(GattError);
    expect(invalid).toMatchObject({ status: 0x01 });
    // The recorded disconnect comes after write, read, notify: it is matched by its kind and device, not its place.
    const started = Date.now();
    await link.disconnect({ timeout: 2000 });
    expect(Date.now() - started).toBeLessThan(1000);
    await proxy.detach({ timeout: 2000 });
    expect(answers.map((a) => a.request)).toEqual(['BluetoothGATTReadRequest', 'BluetoothGATTReadRequest', 'BluetoothGATTReadRequest']);
    expect(answers[0]!.answer).toBe('the recorded answer again');
    expect(plugin.mismatches.map((m) => m.type)).toEqual(answers.map((a) => a.request));
  });

  it('replay fallback - a device the recording never connected does not answer: 0x100 after the establishment timeout, the slot freed', async () => {
    const { proxy, answers } = await replayGatt(200);
    const error = await proxy.connect(UNRECORDED_DEVICE, { addressType: 1, timeout: 3000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BleConnectError);
    expect(error).toMatchObject({ reason: 0x100 });
    expect(answers[0]!.answer).toMatch(/connected=false 0x100 after 200 ms: the recording never connected this device/);
    await proxy.refreshSlots({ timeout: 2000 });
    expect(proxy.slots).toMatchObject({ free: 3, limit: 3 });
    await proxy.detach({ timeout: 2000 });
  });

  it('replay fallback - what the proxy decides alone is answered: unpair, cache clearing, the scanner mode, a disconnect of nothing', async () => {
    const { proxy, answers } = await replayGatt();
    await proxy.unpair(DEMO, { timeout: 2000 });
    await proxy.clearCache(DEMO, { timeout: 2000 });
    const state = await proxy.setScannerMode('passive', { timeout: 2000 });
    expect(state).toMatchObject({ state: 'running', mode: 'passive', configuredMode: 'active' });
    await proxy.releaseSlot(UNRECORDED_DEVICE, { timeout: 2000 });
    expect(answers.map((a) => a.answer)).toEqual([
      'bond removed (the firmware answers at once)',
      'cache cleared (the firmware answers at once)',
      'the scanner state, now passive',
      'connected=false error 0 and the slots (no slot held for it)',
    ]);
    await proxy.detach({ timeout: 2000 });
  });
});
