import { describe, expect, it } from 'vitest';
import { InsecureListenerError } from '../../../src/errors.js';
import { assertListenerAllowed, isLoopbackHost } from '../../../src/server/listener-policy.js';

describe('server/listener-policy', () => {
  it('listener-policy - loopback addresses are recognised, everything else is not', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopbackHost(host)).toBe(true);
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'fe80::1', 'proxy.local', '128.0.0.1']) expect(isLoopbackHost(host)).toBe(false);
  });

  it('listener-policy - beyond loopback an unauthenticated listener needs the explicit opt-in', () => {
    const base = { what: 'relay', optIn: '--allow-plaintext' };
    expect(() => assertListenerAllowed({ ...base, host: '127.0.0.1', authenticated: false })).not.toThrow();
    expect(() => assertListenerAllowed({ ...base, host: '0.0.0.0', authenticated: true })).not.toThrow();
    expect(() => assertListenerAllowed({ ...base, host: '0.0.0.0', authenticated: false, allowUnauthenticated: true })).not.toThrow();
    expect(() => assertListenerAllowed({ ...base, host: '0.0.0.0', authenticated: false })).toThrow(InsecureListenerError);
    expect(() => assertListenerAllowed({ ...base, host: '192.168.1.10', authenticated: false })).toThrow(/--allow-plaintext/);
  });
});
