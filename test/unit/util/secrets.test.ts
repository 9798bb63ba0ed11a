import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SecretSourceError } from '../../../src/errors.js';
import { redactSecrets, resolveSecret } from '../../../src/util/secrets.js';

const dir = mkdtempSync(join(tmpdir(), 'esphome-ble-secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('util/secrets', () => {
  it('secrets - a value wins over a file, a file over the environment', () => {
    const file = join(dir, 'key');
    writeFileSync(file, '  from-file\n');
    const env = { KEY: 'from-env' };
    expect(resolveSecret({ value: 'from-flag', file, env: 'KEY' }, '--psk', env)).toBe('from-flag');
    expect(resolveSecret({ file, env: 'KEY' }, '--psk', env)).toBe('from-file');
    expect(resolveSecret({ env: 'KEY' }, '--psk', env)).toBe('from-env');
    expect(resolveSecret({ env: 'MISSING' }, '--psk', env)).toBeUndefined();
    expect(resolveSecret({}, '--psk', env)).toBeUndefined();
  });

  it('secrets - an unreadable or empty file is a typed error that names the file, never a secret', () => {
    expect(() => resolveSecret({ file: join(dir, 'absent') }, '--psk-file')).toThrow(SecretSourceError);
    expect(() => resolveSecret({ file: join(dir, 'absent') }, '--psk-file')).toThrow(/absent \(ENOENT\)/);
    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n');
    expect(() => resolveSecret({ file: empty }, '--psk-file')).toThrow(/is empty/);
    expect(() => resolveSecret({ value: '  ' }, '--psk')).toThrow(SecretSourceError);
  });

  it('secrets - redactSecrets hides every occurrence of each secret', () => {
    expect(redactSecrets('key=abcd1234 again abcd1234', ['abcd1234', undefined])).toBe('key=*** again ***');
  });
});
