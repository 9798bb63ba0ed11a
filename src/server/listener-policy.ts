import { isIP } from 'node:net';
import { InsecureListenerError } from '../errors.js';

/** What decides whether a listener may open on an address. */
export interface ListenerExposure {
  /** The address the listener binds (`127.0.0.1`, `::1`, `0.0.0.0`, a LAN address, a host name). */
  host: string;
  /** True when every client must authenticate (a Noise key, broker credentials). */
  authenticated: boolean;
  /** The operator asked for an unauthenticated listener beyond loopback on purpose. */
  allowUnauthenticated?: boolean | undefined;
  /** What is listening, for the message (`relay`, `serve`, `MQTT broker`). */
  what: string;
  /** The flag or option that opts in, for the message (`--allow-plaintext`). */
  optIn: string;
  /** Why a key that is set does not count as authentication (the all-zero key), added to the message. */
  detail?: string | undefined;
}

/** True for addresses only this host can reach: 127.0.0.0/8, ::1, ::ffff:127.x and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) return bare === '::1' || bare.toLowerCase().startsWith('::ffff:127.');
  return false;
}

/**
 * The one rule for every listener the project opens (relay, serve, gateways): beyond loopback, clients must
 * authenticate unless the operator asked for an open listener explicitly. Throws InsecureListenerError saying why.
 */
export function assertListenerAllowed(exposure: ListenerExposure): void {
  if (exposure.authenticated || isLoopbackHost(exposure.host) || exposure.allowUnauthenticated === true) return;
  throw new InsecureListenerError(
    `Refusing to open the ${exposure.what} on ${exposure.host} without authentication: anyone who can reach that address ` +
      `could use it (and the Bluetooth devices behind it). Give it a key, listen on 127.0.0.1, or pass ${exposure.optIn} ` +
      `to serve in plaintext on purpose.${exposure.detail === undefined ? '' : ` ${exposure.detail}`}`,
    exposure.host,
  );
}
