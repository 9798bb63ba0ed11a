import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { assertMatterPeers } from '../../src/fixture-server/matter/matter-peers.js';
import { CLI, cliEnv, runCliProcess, startCliServer } from '../helpers/cli.js';
import { SKIP_WITHOUT_IPV6_LOOPBACK } from '../helpers/ipv6-loopback.js';
import { deviceProcesses, freeUdpPort } from '../helpers/matter.js';
import { commandLines } from '../helpers/processes.js';

/** `serve --profile matter` on its own mDNS port, with what it printed so far; `marker` finds its device process. */
async function spawnMatterServe(extra: string[] = []) {
  const mdnsPort = await freeUdpPort();
  const child = spawn(process.execPath, [CLI, 'serve', '--profile', 'matter', '--matter-mdns-port', String(mdnsPort), ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cliEnv(),
  });
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (output.stdout += d));
  child.stderr.on('data', (d: Buffer) => (output.stderr += d));
  const closed = once(child, 'close') as Promise<[number | null, string | null]>;
  return { child, output, closed, marker: `"mdnsPort":${mdnsPort}` };
}

describe('cli - serve --profile matter', () => {
  it.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)(
    'cli - serve --profile matter prints the device with its pairing codes, and stopping it ends the device process (waits for IPv6 loopback ::1)',
    async () => {
      const mdnsPort = await freeUdpPort();
      // A loaded host takes a while to start matter.js in the device's process.
      const server = await startCliServer(['--profile', 'matter', '--matter-mdns-port', String(mdnsPort)], 1, {}, 25_000);
      try {
        const line = server.lines[0] as { devices: Array<{ mac: string; matter?: Record<string, unknown> }> };
        const device = line.devices.find((d) => d.matter !== undefined)!;
        expect(device.mac).toBe('C4:4D:A7:00:0F:00');
        expect(device.matter).toMatchObject({
          discriminator: 3840,
          passcode: 20202021,
          vendorId: 0xfff1,
          productId: 0x8000,
          manualPairingCode: '34970112332',
          qrPairingCode: 'MT:Y.K9042C00KA0648G00',
          mdnsPort,
        });
        expect(device.matter!.operationalPort).toEqual(expect.any(Number));
        expect(deviceProcesses(`"mdnsPort":${mdnsPort}`)).toHaveLength(1);
      } finally {
        await server.stop();
      }
      expect(server.child.exitCode).toBe(0);
      expect(deviceProcesses(`"mdnsPort":${mdnsPort}`)).toEqual([]);
    },
    30_000,
  );

  it('cli - serve rejects a bad --matter-mdns-port as a usage error', async () => {
    const result = await runCliProcess(['serve', '--profile', 'matter', '--matter-mdns-port', '70000']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--matter-mdns-port');
  });

  // Without ::1 the device fails to start on its own within seconds, so its exit would prove nothing here.
  it.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)(
    'cli - serve killed while its Matter device starts takes the device process with it (waits for IPv6 loopback ::1)',
    async () => {
      // A long start-up timeout: a loaded 2-core machine can take long to spawn the device and load matter.js, and the
      // device must not finish starting before the kill (the test is about a device orphaned while it starts).
      const serve = await spawnMatterServe(['--matter-start-timeout', '5m']);
      await expect.poll(() => deviceProcesses(serve.marker).length, { timeout: 30_000, interval: 200 }).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Still starting (matter.js takes a second or more to load there), then the parent is gone without a word.
      expect(serve.output.stdout).toBe('');
      serve.child.kill('SIGKILL');
      await serve.closed;
      // The device notices its channel closed and exits (before: it ran on, orphaned, for good). It hears the close
      // only between the synchronous steps of loading matter.js, which a loaded machine stretches to many seconds: the
      // bound is generous, and still finite where the old behaviour never ended.
      await expect.poll(() => deviceProcesses(serve.marker), { timeout: 40_000, interval: 250 }).toEqual([]);
    },
    90_000,
  );

  it('cli - Ctrl-C while the Matter device starts: exit 130 at once, no listening line, no device process', async () => {
    const serve = await spawnMatterServe();
    await expect.poll(() => deviceProcesses(serve.marker).length, { timeout: 10_000 }).toBe(1);
    const interruptedAt = performance.now();
    serve.child.kill('SIGINT');
    const [code] = await serve.closed;
    const ms = performance.now() - interruptedAt;
    expect(code).toBe(130);
    expect(serve.output.stdout).toBe('');
    expect(serve.output.stderr).toContain('interrupted');
    expect(deviceProcesses(serve.marker)).toEqual([]);
    // The start hears the signal (before: the device finished starting, serve printed listening, then stopped).
    expect(ms).toBeLessThan(4_000);
  }, 30_000);

  it('cli - --matter-start-timeout bounds the device start: exit 4, no device process left', async () => {
    const serve = await spawnMatterServe(['--matter-start-timeout', '200ms']);
    const [code] = await serve.closed;
    expect(code).toBe(4);
    expect(serve.output.stdout).toBe('');
    expect(serve.output.stderr).toContain('Starting the simulated Matter device timed out after 200 ms');
    expect(deviceProcesses(serve.marker)).toEqual([]);
  }, 30_000);

  it('cli - serve rejects a bad --matter-log or --matter-start-timeout as a usage error', async () => {
    const log = await runCliProcess(['serve', '--profile', 'matter', '--matter-log', 'bogus']);
    expect(log.code).toBe(2);
    expect(log.stderr).toContain('--matter-log must be one of debug, info, notice, warn, error, fatal');
    expect(log.stderr).not.toContain('    at ');
    const timeout = await runCliProcess(['serve', '--profile', 'matter', '--matter-start-timeout', 'soon']);
    expect(timeout.code).toBe(2);
    expect(timeout.stderr).toContain('--matter-start-timeout must be a positive duration');
    // The environment variable is checked by the library: the same exit code, no stack trace.
    const env = await runCliProcess(['serve', '--profile', 'matter'], { env: { ESPHOME_BLE_MATTER_LOG: 'loud' } });
    expect(env.code).toBe(2);
    expect(env.stderr).toContain('ESPHOME_BLE_MATTER_LOG must be one of');
    expect(env.stderr).not.toContain('    at ');
  });

  it('cli - a test helper serve that does not start in time is killed, not left behind', async () => {
    const marker = `helper-timeout-${process.pid}`;
    await expect(startCliServer(['--name', marker], 1, {}, 1)).rejects.toThrow('serve did not start within 1 ms');
    const left = commandLines().filter((line) => line.includes(marker));
    expect(left).toEqual([]);
  });

  it('cli - without matter.js the error names the packages to install', async () => {
    const error = await assertMatterPeers('serve --profile matter', ['@matter/not-installed-here']).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ESPAPI_ERR_MISSING_PEER' });
    expect((error as Error).message).toContain('npm install @matter/not-installed-here@0.15.6');
    await expect(assertMatterPeers('serve --profile matter')).resolves.toBeUndefined();
  });
});
