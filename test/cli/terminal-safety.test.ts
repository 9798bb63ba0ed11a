import { afterEach, describe, expect, it } from 'vitest';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { MdnsAdvertiser, simulatedProxyTxt } from '../../src/fixture-server/mdns-advertiser.js';
import { runCliProcess } from '../helpers/cli.js';

// A device (or anyone answering mDNS) controls these strings: a title-setting OSC and a clear-screen CSI must reach
// the terminal as harmless replacement characters, not as escape sequences.
const HOSTILE = '2026.8.0\u001b]0;pwned\u0007\u001b[2J';

const nodes: SimulatedNode[] = [];
afterEach(async () => {
  for (const node of nodes.splice(0)) await node.server.close();
});

function expectDefused(stdout: string): void {
  expect(stdout).not.toContain('\u001b');
  expect(stdout).not.toContain('\u0007');
  expect(stdout).toContain('2026.8.0\uFFFD]0;pwned\uFFFD\uFFFD[2J');
}

describe('cli terminal safety', () => {
  it('cli - a device-supplied firmware version is sanitized in slots, discover and info tables', async () => {
    const node = await startSimulatedProxy({ name: 'evil', esphomeVersion: HOSTILE });
    nodes.push(node);
    const port = String(node.server.address.port);
    const [slots, discover, info] = await Promise.all([
      runCliProcess(['slots', '--proxy', `127.0.0.1:${port}`]),
      runCliProcess(['discover', '--proxy', `127.0.0.1:${port}`]),
      runCliProcess(['info', '--host', '127.0.0.1', '--port', port]),
    ]);
    for (const result of [slots, discover, info]) {
      expect(result.code, result.stderr).toBe(0);
      expectDefused(result.stdout);
    }
    // --json keeps the value as it came (JSON escapes the control characters itself).
    const json = await runCliProcess(['slots', '--proxy', `127.0.0.1:${port}`, '--json']);
    expect(json.stdout).not.toContain('\u001b');
    expect((JSON.parse(json.stdout) as Array<{ firmware: string }>)[0]!.firmware).toBe(HOSTILE);
  });

  it('cli - an mDNS TXT version is sanitized in the discover table', async () => {
    const node = await startSimulatedProxy({ name: 'txt-evil' });
    nodes.push(node);
    const mdnsPort = 20_000 + Math.floor(Math.random() * 40_000);
    const advertiser = new MdnsAdvertiser({ interface: '127.0.0.1', bind: '0.0.0.0', port: mdnsPort });
    try {
      advertiser.publish({
        name: 'txt-evil',
        port: node.server.address.port,
        host: '127.0.0.1',
        txt: simulatedProxyTxt({ mac: node.server.mac, version: HOSTILE }),
      });
      const result = await runCliProcess([
        'discover',
        '--mdns-interface',
        '127.0.0.1',
        '--mdns-port',
        String(mdnsPort),
        '--timeout',
        '1200',
        '--no-connect',
      ]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain('txt-evil');
      expectDefused(result.stdout);
    } finally {
      await advertiser.close();
    }
  });
});
