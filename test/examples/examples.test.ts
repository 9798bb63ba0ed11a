import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { DEMO_MAC, profileWithDevices, startTestFleet } from '../helpers/fleet.js';
import { basic } from './basic.js';
import { diagnostics } from './diagnostics.js';
import { disconnectCallback } from './disconnect-callback.js';
import { errorHandling } from './error-handling.js';
import { missingCharacteristic } from './missing-characteristic.js';
import { nobleExample } from './noble.js';
import { relay } from './relay.js';

let fleet: SimulatedFleet | undefined;

afterEach(async () => {
  vi.restoreAllMocks();
  await fleet?.close();
  fleet = undefined;
});

async function startFleet(perNode: Parameters<typeof startTestFleet>[2] = []): Promise<SimulatedFleet> {
  fleet = await startTestFleet(2, await profileWithDevices(0), perNode);
  vi.spyOn(console, 'log').mockImplementation(() => {});
  return fleet;
}

describe('README examples', () => {
  it('examples - every README snippet is the region of an example file, verbatim', async () => {
    const readme = await readFile('README.md', 'utf8');
    for (const file of [
      'basic',
      'disconnect-callback',
      'error-handling',
      'missing-characteristic',
      'diagnostics',
      'relay',
      'noble',
      'matter',
      'matter-simulated',
    ]) {
      const source = await readFile(`test/examples/${file}.ts`, 'utf8');
      const region = /\/\/ #region readme\n([\s\S]*?)\n\s*\/\/ #endregion readme/.exec(source)?.[1];
      expect(region, file).toBeDefined();
      const indent = Math.min(
        ...region!
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => l.length - l.trimStart().length),
      );
      const dedented = region!
        .split('\n')
        .map((l) => l.slice(indent))
        .join('\n');
      expect(readme, `README must contain the ${file} example`).toContain(dedented);
    }
  });

  it('examples - diagnostics lists every proxy online and subscribed', async () => {
    const f = await startFleet();
    const report = await diagnostics(f.addresses);
    expect(report.map((d) => [d.state, d.subscription.state])).toEqual([
      ['online', 'subscribed'],
      ['online', 'subscribed'],
    ]);
  });

  it('examples - basic connects and reads the device name', async () => {
    const f = await startFleet();
    expect(await basic(f.addresses, DEMO_MAC)).toBe('esphome-ble-demo');
  });

  it('examples - the disconnect callback reports the reason', async () => {
    const f = await startFleet([{ slotsBusy: 3 }]);
    const reason = await disconnectCallback(f.addresses, DEMO_MAC, () => f.nodes[1]!.bluetooth.dropLink(0xc0ffee000001));
    expect(reason).toBe(0x08);
  });

  it('examples - error handling maps out-of-slots to OutOfSlotsError with advice', async () => {
    const f = await startFleet([{ slotsBusy: 3 }, { slotsBusy: 3 }]);
    expect(await errorHandling(f.addresses, DEMO_MAC)).toMatch(/^out of slots after 2 attempts: .*connection_slots/);
    expect(await errorHandling(f.addresses, '11:22:33:44:55:66')).toMatch(/^not found: /);
  });

  it('examples - the relay serves a proxy and shares its session with an in-process pool', async () => {
    const f = await startFleet();
    const node = f.nodes[0]!;
    const proxies = [{ host: '127.0.0.1', port: node.server.address.port }];
    expect(await relay(proxies, { host: '127.0.0.1', port: 0 }, DEMO_MAC)).toBe('esphome-ble-demo');
    expect(console.log).toHaveBeenCalledWith(
      expect.stringMatching(new RegExp(`^${node.server.name} \\(${node.server.mac}\\) is served on 127\\.0\\.0\\.1:\\d+$`)),
    );
  });

  it('examples - a noble-based function finds, connects and reads through the proxies', async () => {
    const f = await startFleet();
    expect(await nobleExample(f.addresses, 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00')).toBe('esphome-ble-demo');
  });

  it('examples - the missing-characteristic pattern connects', async () => {
    const f = await startFleet();
    expect(await missingCharacteristic(f.addresses, DEMO_MAC)).toBe(false);
  });
});
