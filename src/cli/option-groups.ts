import { ADDRESS_TYPE_NAMES } from '../bluetooth/address.js';
import { DEFAULT_API_PORT, DEFAULT_CONNECT_TIMEOUT_MS } from '../connection/connection.js';
import { DEFAULT_MAX_ATTEMPTS } from '../pool/proxy-pool.js';
import { formatDuration } from '../util/duration.js';
import type { OptionSpec } from './command.js';
import { deprecatedOption, option } from './vocabulary.js';

/** How long to wait for every proxy's API session (and for mDNS answers) without --timeout. */
export const DEFAULT_POOL_READY_MS = 5_000;
/** Listening time before connecting through the pool, so that every proxy that hears the device has reported its RSSI. */
export const DEFAULT_LISTEN_MS = 1_000;

/** --json and --verbose, for every command that talks to proxies. */
export const OUTPUT_OPTIONS = {
  json: option('json', { default: 'off' }),
  verbose: option('verbose', { default: 'off' }),
} as const satisfies OptionSpec;

/** Keys and passwords of one proxy (--host). */
const HOST_SECRETS = {
  psk: option('psk', { default: 'plaintext' }),
  'psk-file': option('psk-file', { default: 'none' }),
  password: option('password', { default: 'none' }),
  'password-file': option('password-file', { default: 'none' }),
} as const satisfies OptionSpec;

/** Options of the commands that talk to exactly one node (info). */
export const NODE_OPTIONS = {
  host: option('host', { description: 'The node (a proxy or any ESPHome node) to talk to (IPv6 as [addr]:port)', default: 'required' }),
  port: option('port', { default: String(DEFAULT_API_PORT) }),
  ...HOST_SECRETS,
  timeout: option('timeout', {
    description: 'Deadline of the connect (TCP, handshake, Hello, device info); a bare number is milliseconds',
    default: formatDuration(DEFAULT_CONNECT_TIMEOUT_MS),
  }),
  ...OUTPUT_OPTIONS,
} as const satisfies OptionSpec;

/** Options every command that can talk to one proxy (--host) understands. */
export const PROXY_OPTIONS = {
  host: option('host', { default: 'none: the pool' }),
  port: option('port', { default: String(DEFAULT_API_PORT) }),
  ...HOST_SECRETS,
  timeout: option('timeout', {
    description: 'Deadline of each step (API connect, BLE connect, each GATT operation); a bare number is milliseconds',
    default: `${formatDuration(DEFAULT_CONNECT_TIMEOUT_MS)} per connect`,
  }),
  ...OUTPUT_OPTIONS,
} as const satisfies OptionSpec;

/** Options of the commands that work on a pool of proxies. */
export const POOL_OPTIONS = {
  proxy: option('proxy', { default: 'mDNS discovery', multiple: true }),
  config: option('config', { default: 'none' }),
  psk: option('psk', { description: 'Noise key of every proxy without a key of its own; also $ESPHOME_BLE_PSK', default: 'plaintext' }),
  'psk-file': option('psk-file', { default: 'none' }),
  'mdns-interface': option('mdns-interface', { default: 'the OS default' }),
  'mdns-port': option('mdns-port', { default: '5353' }),
  timeout: option('timeout', {
    description: 'Deadline for the proxies to connect; a bare number is milliseconds',
    default: formatDuration(DEFAULT_POOL_READY_MS),
  }),
  ...OUTPUT_OPTIONS,
} as const satisfies OptionSpec;

/** Options of the commands that open a BLE link through one proxy. */
export const DEVICE_OPTIONS = {
  ...PROXY_OPTIONS,
  'address-type': option('address-type', {
    default: 'as heard advertising, else public',
    choices: [...ADDRESS_TYPE_NAMES, '0', '1', '2', '3'],
  }),
} as const satisfies OptionSpec;

/** --timeout of the commands that work through one proxy or the pool. */
const SOURCE_TIMEOUT = option('timeout', {
  description: 'Deadline of each step (connect, each BLE operation; with the pool also the wait for the proxies); bare: ms',
  default: `${formatDuration(DEFAULT_CONNECT_TIMEOUT_MS)} per connect (pool: ${formatDuration(DEFAULT_POOL_READY_MS)} for the proxies)`,
});

/** Options of `scan`-like commands: one proxy (--host ...) or the pool (--proxy / --config / mDNS). */
export const SOURCE_OPTIONS = { ...PROXY_OPTIONS, ...POOL_OPTIONS, timeout: SOURCE_TIMEOUT } as const satisfies OptionSpec;

/** Options of the commands that open a GATT link: one proxy or the pool. */
export const LINK_OPTIONS = {
  ...DEVICE_OPTIONS,
  ...POOL_OPTIONS,
  timeout: SOURCE_TIMEOUT,
  attempts: option('attempts', { default: String(DEFAULT_MAX_ATTEMPTS) }),
  'listen-for': option('listen-for', {
    description: "Pool: listen this long first so every proxy's RSSI counts (0: connect once one hears it); bare: ms",
    default: formatDuration(DEFAULT_LISTEN_MS),
  }),
  listen: deprecatedOption('listen-for', { type: 'string', kind: 'duration', unit: 'ms', meaning: 'a bare number was milliseconds' }),
} as const satisfies OptionSpec;
