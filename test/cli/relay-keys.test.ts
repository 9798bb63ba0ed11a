import { describe, expect, it } from 'vitest';
import { runCliProcess } from '../helpers/cli.js';

/** 27 bytes of base64: well-formed, the wrong length. */
const SHORT = 'MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw';

describe('cli relay keys (built CLI)', () => {
  it('cli relay - a malformed upstream or downstream key (not base64, wrong length) is refused before anything starts (exit 3), naming which key', async () => {
    // Port 1 on loopback: nothing would ever answer there, so only the key check can end these runs quickly.
    const cases: Array<[string[], string]> = [
      [
        ['relay', '--proxy', '127.0.0.1:1', '--psk', 'not*base64'],
        'the key of upstream 127.0.0.1:1: Encryption key is not standard base64',
      ],
      [
        ['relay', '--proxy', '127.0.0.1:1', '--downstream-psk', SHORT],
        'the downstream key (--downstream-psk): Encryption key decodes to 27 bytes',
      ],
      [
        ['mqtt', '--proxy', '127.0.0.1:1', '--relay', '--psk', SHORT],
        'the key of upstream 127.0.0.1:1: Encryption key decodes to 27 bytes',
      ],
      [['mqtt', '--proxy', '127.0.0.1:1', '--relay', '--downstream-psk', 'x'], 'the downstream key (--downstream-psk)'],
    ];
    const results = await Promise.all(cases.map(([args]) => runCliProcess([...args, '--duration', '20s'], { timeoutMs: 30_000 })));
    for (const [i, result] of results.entries()) {
      expect(result.code, `${cases[i]![0].join(' ')}: ${result.stderr}`).toBe(3);
      expect(result.stderr).toContain(`error ESPAPI_ERR_INVALID_PSK: ${cases[i]![1]}`);
      // Nothing started: no relay note, no listener.
      expect(result.stderr).not.toContain('the relay holds');
      expect(result.stdout).toBe('');
    }
    expect(results.map((r) => r.stderr).join('')).not.toContain(SHORT);
  }, 90_000);
});
