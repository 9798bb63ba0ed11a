import { describe, expect, it } from 'vitest';
import { runCliProcess } from '../helpers/cli.js';

describe('cli serve arguments (built CLI)', () => {
  it('cli feedback - serve refuses a fleet past port 65535, other slots than the board has, and a subscription policy on firmware that serves every client (exit 2, nothing started)', async () => {
    const cases: Array<[string[], string]> = [
      [['--fleet', '2', '--port', '65535'], '--fleet 2 from port 65535 needs ports up to 65536, past 65535'],
      [['--fleet', '3', '--host', '127.0.0.1:65534'], '--fleet 3 from port 65534 needs ports up to 65536'],
      [['--board', 'rp2040', '--slots', '3'], '--slots 3 cannot go with --board rp2040: that board has 1 connection slot(s)'],
      [
        ['--subscription', 'newest-wins', '--firmware', '2022.12'],
        '--subscription cannot go with --firmware 2022.12: before 2023.6 every client is served',
      ],
      [['--subscription', 'first-wins', '--firmware', '2023.5'], '--subscription cannot go with --firmware 2023.5'],
    ];
    const results = await Promise.all(cases.map(([args]) => runCliProcess(['serve', ...args], { timeoutMs: 30_000 })));
    for (const [i, result] of results.entries()) {
      expect(result.code, `${cases[i]![0].join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain(cases[i]![1]);
    }
  }, 90_000);

  it('cli feedback - serve still takes what agrees: the last fleet port 65535, the board slot count, a policy from 2023.6 on', async () => {
    const cases = [
      ['--fleet', '2', '--port', '65534'],
      ['--board', 'rp2040', '--slots', '1', '--port', '0'],
      ['--subscription', 'newest-wins', '--firmware', '2023.6', '--port', '0'],
    ];
    // A started serve runs until killed: the listening line on stdout is the proof, then the timeout ends it.
    const results = await Promise.all(cases.map((args) => runCliProcess(['serve', ...args], { timeoutMs: 8_000 })));
    for (const [i, result] of results.entries()) {
      expect(result.stdout, `${cases[i]!.join(' ')}: ${result.stderr}`).toContain('"event":"listening"');
    }
  }, 90_000);
});
