import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { assertMatterPeers } from '../../src/fixture-server/matter/matter-peers.js';
import { runCliProcess, startCliServer } from '../helpers/cli.js';
import { freeUdpPort } from '../helpers/matter.js';

/** Command lines of this machine's processes that run the simulated Matter device with `marker` in their config. */
function deviceProcesses(marker: string): string[] {
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes('matter-device-child') && line.includes(marker));
}

describe('cli - serve --profile matter', () => {
  it('cli - serve --profile matter prints the device with its pairing codes, and stopping it ends the device process', async () => {
    const mdnsPort = await freeUdpPort();
    // A loaded host takes a while to start matter.js in the device's process.
    const server = await startCliServer(['--profile', 'matter', '--matter-mdns-port', String(mdnsPort)], 1, 25_000);
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
  }, 30_000);

  it('cli - serve rejects a bad --matter-mdns-port as a usage error', async () => {
    const result = await runCliProcess(['serve', '--profile', 'matter', '--matter-mdns-port', '70000']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--matter-mdns-port');
  });

  it('cli - without matter.js the error names the packages to install', async () => {
    const error = await assertMatterPeers('serve --profile matter', ['@matter/not-installed-here']).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ESPAPI_ERR_MISSING_PEER' });
    expect((error as Error).message).toContain('npm install @matter/not-installed-here@0.15.6');
    await expect(assertMatterPeers('serve --profile matter')).resolves.toBeUndefined();
  });
});
