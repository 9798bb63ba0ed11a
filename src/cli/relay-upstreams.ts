import { DEFAULT_API_PORT } from '../connection/connection.js';
import { InvalidPskError, TimeoutError } from '../errors.js';
import { parsePsk } from '../noise/psk.js';
import { parseProxySpec } from '../pool/proxy-pool.js';
import type { DeviceRoute } from '../pool/routing.js';
import type { RelayUpstreamConfig } from '../relay/relay-proxy.js';
import type { RelayListening, RelayServer } from '../relay/relay-server.js';
import { type CommandArgs, str, UsageError } from './command.js';
import { keyFor, loadPoolConfig } from './pool-options.js';
import { type SecretFlag, secretList, strings } from './secret-options.js';
import { sanitize } from './single-proxy.js';

/** Upstream keys, one for all proxies or one per proxy. */
export const UPSTREAM_PSK: SecretFlag = { flag: 'psk', env: 'ESPHOME_BLE_PSK' };
/** The relay's own key for its listeners. */
export const DOWNSTREAM_PSK: SecretFlag = { flag: 'downstream-psk', env: 'ESPHOME_BLE_DOWNSTREAM_PSK' };
/** Environment variable of the upstream legacy API password(s). */
export const UPSTREAM_PASSWORD_ENV = 'ESPHOME_BLE_PASSWORD';

/**
 * Checks every key a relay would use before anything starts: a malformed upstream or downstream key (not base64,
 * not 32 bytes) is an InvalidPskError naming which key (exit 3, as the failure table says), never a retry loop.
 */
export function checkRelayKeys(proxies: readonly RelayUpstreamConfig[], downstreamPsk: string | undefined): void {
  const check = (key: string, which: string): void => {
    try {
      parsePsk(key);
    } catch (error) {
      if (error instanceof InvalidPskError) throw new InvalidPskError(`${which}: ${error.message}`);
      throw error;
    }
  };
  for (const p of proxies)
    if (p.psk !== undefined) check(p.psk, `the key of upstream ${sanitize(`${p.host}:${p.port ?? DEFAULT_API_PORT}`)}`);
  if (downstreamPsk !== undefined) check(downstreamPsk, 'the downstream key (--downstream-psk)');
}

/** The proxies a relay holds, and the routes a pool on top of it uses. */
export interface RelayUpstreams {
  readonly proxies: RelayUpstreamConfig[];
  readonly routes: Readonly<Record<string, DeviceRoute>> | undefined;
}

/**
 * The relay's upstreams from `--proxy` (with `--psk`/`--psk-file` and the password flag: one for all or one per
 * --proxy, in order) and, where the command has it, `--config FILE` (its proxies with their own key, name and
 * password, its `keys` by node name, its routes). `passwordFlag` is `password` in `relay`; in `mqtt`, whose
 * --password was the broker's, `proxy-password`.
 */
export async function relayUpstreamsOf(args: CommandArgs, passwordFlag = 'password'): Promise<RelayUpstreams> {
  const specs = strings(args, 'proxy');
  const path = str(args, 'config');
  const config = path === undefined ? undefined : await loadPoolConfig(path);
  const listed = config?.proxies ?? [];
  if (specs.length === 0 && listed.length === 0) {
    throw new UsageError(`at least one --proxy host[:port]${path === undefined ? '' : ` (or a proxy in --config ${path})`} is required`);
  }
  const psks = secretList(args, UPSTREAM_PSK);
  const passwords = secretList(args, { flag: passwordFlag, env: UPSTREAM_PASSWORD_ENV });
  const pskOf = perProxy('psk', psks, specs.length);
  const passwordOf = perProxy(passwordFlag, passwords, specs.length);
  const fromFlags = specs.map((spec, i) => {
    const { host, port } = parseProxySpec(spec);
    if (host === '' || (port !== undefined && !(port >= 1 && port <= 65_535))) {
      throw new UsageError(`--proxy must be host[:port], got ${JSON.stringify(spec)}`);
    }
    return withSecrets({ host, ...(port === undefined ? {} : { port }) }, pskOf(i), passwordOf(i));
  });
  // A config proxy keeps its own key and password; else its `keys` entry, else the one --psk / password for all.
  const keys = config?.keys ?? {};
  const fromConfig = listed.map((p) =>
    withSecrets(
      p,
      p.psk ?? keyFor(keys, p.name, undefined) ?? (psks.length === 1 ? psks[0] : undefined),
      p.password ?? (passwords.length === 1 ? passwords[0] : undefined),
    ),
  );
  return { proxies: [...fromFlags, ...fromConfig], routes: config?.routes };
}

function withSecrets(base: RelayUpstreamConfig, psk: string | undefined, password: string | undefined): RelayUpstreamConfig {
  return { ...base, ...(psk ? { psk } : {}), ...(password ? { password } : {}) };
}

/** The value of a repeatable option for the i-th proxy: none, one for every proxy, or one per proxy. */
function perProxy(name: string, values: readonly string[], proxies: number): (i: number) => string | undefined {
  if (values.length > 1 && values.length !== proxies) {
    throw new UsageError(`give one --${name} for every proxy, or one per --proxy (${proxies}); got ${values.length}`);
  }
  return (i) => (values.length === 1 ? values[0] : values[i]);
}

/** `host:port` of every upstream, for the real-home note. */
export function upstreamLabels(proxies: readonly RelayUpstreamConfig[]): string[] {
  return proxies.map((p) => sanitize(`${p.host}:${p.port ?? DEFAULT_API_PORT}`));
}

/**
 * relay.start() where a timeout names what each upstream that is not up last failed with ("Starting the relay
 * timed out after 3000 ms; 127.0.0.1:1: Cannot connect ...: ECONNREFUSED"): the exit stays 4, the cause is not lost.
 */
export async function startRelay(
  relay: RelayServer,
  options: { timeout?: number | undefined; signal?: AbortSignal | undefined },
): Promise<RelayListening[]> {
  try {
    return await relay.start({
      ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  } catch (error) {
    if (!(error instanceof TimeoutError) || error.code !== 'ESPAPI_ERR_TIMEOUT') throw error;
    const down = relay
      .snapshot()
      .proxies.filter((p) => p.upstream.state !== 'connected')
      .map((p) => `${p.upstream.host}:${p.upstream.port}: ${sanitize(p.upstream.lastError ?? 'no answer yet')}`);
    if (down.length === 0) throw error;
    throw new TimeoutError(`${error.operation} (${down.join('; ')})`, error.timeoutMs, { cause: error });
  }
}
