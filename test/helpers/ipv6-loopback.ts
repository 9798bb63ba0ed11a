import { createServer } from 'node:net';
import { CI_REQUIRED } from './ci-required.js';

/** The error code of listening on `host` (EADDRNOTAVAIL where it is not configured), or undefined when it works. */
export async function listenError(host: string): Promise<string | undefined> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, resolve);
    });
    return undefined;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? String(error);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/**
 * Why this host cannot listen on ::1, or undefined when it can. Docker's default networks have no IPv6, not even
 * on loopback; probed once, when a test file loads, by listening there.
 */
export const IPV6_LOOPBACK_ERROR = await listenError('::1');

/** True when this host can listen on ::1. */
export const HAS_IPV6_LOOPBACK = IPV6_LOOPBACK_ERROR === undefined;

/** Whether a test that needs ::1 skips: only when it is missing on a developer's machine; under CI it runs, and fails. */
export function skipWithoutIpv6Loopback(error: string | undefined, required: boolean): boolean {
  return error !== undefined && !required;
}

/** Skip a test that needs ::1 here; its title says "(waits for IPv6 loopback ::1)". */
export const SKIP_WITHOUT_IPV6_LOOPBACK = skipWithoutIpv6Loopback(IPV6_LOOPBACK_ERROR, CI_REQUIRED);
