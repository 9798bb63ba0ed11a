import { BlockList, isIP } from 'node:net';
import { InvalidArgumentError } from '../errors.js';

/**
 * A downstream client as a policy sees it. The remote address is the one identity the relay can rely on: the
 * TCP handshake proves it, while every client of a listener shares its Noise key and `client_info` is whatever
 * the client chose to write in its HelloRequest.
 */
export interface RelayClientIdentity {
  /** Remote IP address (IPv4-mapped IPv6 written as plain IPv4). */
  readonly address: string;
  readonly port: number;
  /** Id of the upstream proxy whose listener the client reached. */
  readonly proxy: string;
}

/** Which clients a rule lets through: addresses and CIDR blocks (`192.168.1.10`, `10.0.0.0/8`, `::1`), or a predicate. */
export type RelayClientRule = readonly string[] | ((client: RelayClientIdentity) => boolean);

/**
 * Who may send the requests that change what the other clients see. An absent rule lets everyone through, as the
 * firmware does; an empty list lets nobody.
 */
export interface RelayClientPolicy {
  /** Switching the proxy's one scanner between active and passive (message 127): every subscriber sees the result. */
  scannerMode?: RelayClientRule;
  /** Removing a bond (BluetoothDeviceRequest UNPAIR), of any device: the bond is the proxy's and outlives a link. */
  unpair?: RelayClientRule;
  /** Clearing the proxy's GATT cache of a device (BluetoothDeviceRequest CLEAR_CACHE), of any device, for the same reason. */
  clearCache?: RelayClientRule;
}

/** What one client may do, decided once when it connects. */
export interface RelayPermissions {
  readonly scannerMode: boolean;
  readonly unpair: boolean;
  readonly clearCache: boolean;
}

/** The rules of a RelayClientPolicy, by name. */
export type RelayPolicyRuleName = keyof RelayClientPolicy;

/** Told when a predicate rule threw for a client (the client is then denied what the rule guards). */
export type RelayPolicyErrorHandler = (rule: RelayPolicyRuleName, client: RelayClientIdentity, error: unknown) => void;

/**
 * Compiles a policy once (address lists into block lists); throws InvalidArgumentError for an entry that is no
 * address or block. A predicate that throws denies the client what its rule guards, and `onError` is told.
 */
export function compileClientPolicy(
  policy: RelayClientPolicy = {},
  onError: RelayPolicyErrorHandler = () => {},
): (client: RelayClientIdentity) => RelayPermissions {
  const scannerMode = compileRule(policy.scannerMode, 'scannerMode', onError);
  const unpair = compileRule(policy.unpair, 'unpair', onError);
  const clearCache = compileRule(policy.clearCache, 'clearCache', onError);
  return (client) => ({ scannerMode: scannerMode(client), unpair: unpair(client), clearCache: clearCache(client) });
}

/** `::ffff:192.168.1.7` → `192.168.1.7`; other addresses unchanged. */
export function plainAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped === null ? address : (mapped[1] as string);
}

/** Another slot quota for the client addresses a rule lists (`slots` for each of them; `Infinity`: no quota). */
export interface RelaySlotRule {
  /** Addresses and CIDR blocks (`192.168.1.10`, `10.0.0.0/8`, `::1`). */
  readonly clients: readonly string[];
  readonly slots: number;
}

/**
 * The slot quota of one client: `configured` when set, otherwise all but one of the proxy's slots (at least
 * one), so that next to one busy client (a Node backend) another (Home Assistant) always finds a slot.
 */
export function slotQuota(configured: number | undefined, limit: number): number {
  return configured ?? Math.max(1, limit - 1);
}

/**
 * Compiles `slotsPerClient` and the `slotsFor` rules once: the configured quota of a client address (the first
 * rule that lists it, else `slotsPerClient`; undefined = the default). Throws InvalidArgumentError for a quota
 * that is no whole number of slots ≥ 1, or an entry that is no address or block.
 */
export function compileSlotQuotas(
  slotsPerClient: number | undefined,
  rules: readonly RelaySlotRule[] = [],
): (client: RelayClientIdentity) => number | undefined {
  checkSlots(slotsPerClient, 'slotsPerClient');
  const compiled = rules.map((rule, i) => {
    checkSlots(rule.slots, `slotsFor[${i}].slots`);
    return { matches: compileRule(rule.clients, `slotsFor[${i}].clients`), slots: rule.slots };
  });
  return (client) => compiled.find((rule) => rule.matches(client))?.slots ?? slotsPerClient;
}

/** Throws InvalidArgumentError unless `value` is a whole number of slots ≥ 1 (Infinity: no quota). */
function checkSlots(value: number | undefined, name: string): void {
  if (value === undefined || value === Number.POSITIVE_INFINITY || (Number.isInteger(value) && value >= 1)) return;
  throw new InvalidArgumentError(`${name} must be a whole number of slots, at least 1, got ${value}`);
}

function compileRule<N extends string>(
  rule: RelayClientRule | undefined,
  name: N,
  onError?: (rule: N, client: RelayClientIdentity, error: unknown) => void,
): (client: RelayClientIdentity) => boolean {
  if (rule === undefined) return () => true;
  if (typeof rule === 'function') {
    // The operator's code runs in the listener's connection handler: a throw there must not end the process.
    return (client) => {
      try {
        return rule(client) === true;
      } catch (error) {
        onError?.(name, client, error);
        return false;
      }
    };
  }
  const list = new BlockList();
  for (const entry of rule) addEntry(list, entry, name);
  return (client) => {
    const family = isIP(client.address);
    return family !== 0 && list.check(client.address, family === 4 ? 'ipv4' : 'ipv6');
  };
}

function addEntry(list: BlockList, entry: string, name: string): void {
  const [address = '', bits, ...rest] = entry.trim().split('/');
  const family = isIP(address);
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (family === 0 || rest.length > 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > max || bits === '') {
    throw new InvalidArgumentError(
      `${name}: ${JSON.stringify(entry)} is not an IP address or block (e.g. 192.168.1.10, 192.168.1.0/24, ::1)`,
    );
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (prefix === max) list.addAddress(address, type);
  else list.addSubnet(address, prefix, type);
}
