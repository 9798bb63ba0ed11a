import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { MatterDevice } from '../../src/fixture-server/matter/matter-device.js';
import { loadProfile, MATTER_TEST_DEVICE, resolveProfilePath } from '../../src/fixture-server/profile.js';
import type { SimulatedPeripheral } from '../../src/fixture-server/simulated-peripheral.js';
import { SKIP_WITHOUT_IPV6_LOOPBACK } from '../helpers/ipv6-loopback.js';
import { deviceProcesses, freeUdpPort, MATTER_HANDLES } from '../helpers/matter.js';

let node: SimulatedNode | undefined;

afterEach(async () => {
  await node?.server.close();
  node = undefined;
});

/**
 * A proxy of the matter profile whose Matter peripheral has no device yet (one that started needs IPv6 loopback: its
 * matter.js listens on ::1 too): the peripheral is free for the device a test starts.
 */
async function peripheralWithoutDevice(): Promise<SimulatedPeripheral> {
  const profile = await loadProfile(resolveProfilePath('matter'));
  const index = profile.peripherals.findIndex((p) => p.matter !== undefined);
  const peripherals = profile.peripherals.map(({ matter: _matter, ...peripheral }) => peripheral);
  node = await startSimulatedProxy({ profile: { ...profile, peripherals } });
  return node.bluetooth.peripherals[index]!;
}

describe('matter - the device process', () => {
  it.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)(
    'matter - a device process killed under us: sends to it, link events and close raise nothing (waits for IPv6 loopback ::1)',
    async () => {
      node = await startSimulatedProxy({ profile: 'matter', matter: { mdnsPort: await freeUdpPort() } });
      const device = node.matter[0]!;
      const peripheral = device.peripheral;
      const uncaught: unknown[] = [];
      const onUncaught = (error: unknown): void => void uncaught.push(error);
      process.on('uncaughtException', onUncaught);
      try {
        process.kill(device.pid!, 'SIGKILL');
        // This event loop is held while the process dies, so it has not seen the exit when the sends below hit the
        // broken channel (EPIPE).
        const until = Date.now() + 300;
        while (Date.now() < until) {}
        for (let i = 0; i < 20; i++) {
          peripheral.connect();
          peripheral.write(MATTER_HANDLES.c1, Uint8Array.of(i), true);
          peripheral.reset(0x16);
        }
        await device.close();
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(uncaught).toEqual([]);
      } finally {
        process.off('uncaughtException', onUncaught);
      }
    },
    30_000,
  );

  it('matter - an aborted start stops the device process at once, while it is still starting', async () => {
    const peripheral = await peripheralWithoutDevice();
    const mdnsPort = await freeUdpPort();
    const marker = `"mdnsPort":${mdnsPort}`;
    const abort = new AbortController();
    const started = MatterDevice.start(peripheral, MATTER_TEST_DEVICE, { mdnsPort, signal: abort.signal });
    const failed = started.then(
      () => undefined,
      (error: unknown) => error,
    );
    await expect.poll(() => deviceProcesses(marker).length, { timeout: 10_000 }).toBe(1);
    const abortedAt = performance.now();
    abort.abort(new Error('user abort'));
    expect(await failed).toMatchObject({ message: 'user abort' });
    const ms = performance.now() - abortedAt;
    expect(deviceProcesses(marker)).toEqual([]);
    // It exits as soon as it reads the stop (before: only once started, then killed 5 s later).
    expect(ms).toBeLessThan(4_000);
  }, 30_000);

  it.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)(
    'matter - a second device on the same peripheral is refused before any process starts (waits for IPv6 loopback ::1)',
    async () => {
      node = await startSimulatedProxy({ profile: 'matter', matter: { mdnsPort: await freeUdpPort() } });
      const first = node.matter[0]!;
      const mdnsPort = await freeUdpPort();
      const second = MatterDevice.start(first.peripheral, MATTER_TEST_DEVICE, { mdnsPort });
      await expect(second).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(second).rejects.toThrow('already has a program');
      expect(deviceProcesses(`"mdnsPort":${mdnsPort}`)).toEqual([]);
      expect(first.pid).toEqual(expect.any(Number));
    },
    30_000,
  );

  it('matter - an unknown log level is refused before any process starts', async () => {
    const peripheral = await peripheralWithoutDevice();
    await expect(MatterDevice.start(peripheral, MATTER_TEST_DEVICE, { logLevel: 'bogus' })).rejects.toThrow(
      'logLevel must be one of debug, info, notice, warn, error, fatal, got "bogus"',
    );
  }, 30_000);
});
