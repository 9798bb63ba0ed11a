import { type ErrorCode, EspApiError } from './errors.js';

/**
 * What a failure says is wrong, as the pool, the reconnecting sessions (the relay's upstreams too) and the CLI
 * act on it. The first four are permanent: retrying with the same configuration cannot fix them.
 */
export type FailureClass =
  /** Key, password, or encryption on one side only: the configuration must change. */
  | 'credentials'
  /** The node at that address is another one (name or MAC differs from what was configured). */
  | 'identity'
  /** The node cannot do it: an API major we do not speak, not a Bluetooth proxy, a feature it lacks. */
  | 'unsupported'
  /** A bad argument or setting from the caller. */
  | 'usage'
  /** No usable proxy hears the device. */
  | 'notFound'
  /** Every slot is taken: the firmware's immediate "no free slot", the pool's slot wait, a full relay. */
  | 'outOfSlots'
  /** 0x100 soon after the connect while a slot was free: the proxy's controller refused the connect at once. */
  | 'controllerRefused'
  /** 0x100 after the stack's establishment timeout: the device never answered the connect. */
  | 'deviceUnreachable'
  /** The link was torn down while opening or in use (supervision timeout, 0x3e, 0x85, peer or proxy closed it). */
  | 'aborted'
  /** Our own deadline passed. */
  | 'timeout'
  /** The API session to the proxy ended mid-operation. */
  | 'proxyLost'
  /** The proxy serves another client's subscription (or none) for now. */
  | 'proxyUnusable'
  /** Bytes on the wire that make no sense: the session is dropped and reconnected. */
  | 'protocol'
  | 'other';

/** How the CLI ends for a failure (README: 1 failure, 2 usage, 3 key/password/identity, 4 timeout). */
export type ExitClass = 'failure' | 'usage' | 'auth' | 'timeout';

/** One row of the table. */
export interface FailureRule {
  readonly class: FailureClass;
  /** Retrying with the same configuration cannot fix it: stop reconnecting, and say so at once. */
  readonly permanent: boolean;
  /** Wait before the same proxy is tried again for the same device (bleak-retry-connector's backoffs). */
  readonly backoffMs: number;
  /** Counts against the proxy's path score (a decaying penalty); shortages and lost sessions do not. */
  readonly pathFailure: boolean;
  /** How the CLI exits. */
  readonly exit: ExitClass;
}

// Backoffs are bleak-retry-connector's (BLEAK_*_BACKOFF_TIME): the proxy must finish tearing the failed link down first.
/** Out of slots, CONN_CANCEL, not found, proxy unusable: long enough for the proxy to free what it holds. */
export const SAME_PROXY_BACKOFF_MS = 4000;
/** A timeout or a link lost as it opened. */
export const TRANSIENT_BACKOFF_MS = 250;
const MEDIUM_BACKOFF_MS = 500;
const LONG_BACKOFF_MS = 1000;
const DEFAULT_BACKOFF_MS = 100;

const rule = (cls: FailureClass, permanent: boolean, backoffMs: number, pathFailure: boolean, exit: ExitClass = 'failure'): FailureRule =>
  Object.freeze({ class: cls, permanent, backoffMs, pathFailure, exit });

const CREDENTIALS = rule('credentials', true, 0, false, 'auth');
const IDENTITY = rule('identity', true, 0, false, 'auth');
const PROTOCOL = rule('protocol', false, 0, false);
const PROXY_LOST = rule('proxyLost', false, 0, false);
const PROXY_UNUSABLE = rule('proxyUnusable', false, SAME_PROXY_BACKOFF_MS, false);
const OTHER = rule('other', false, DEFAULT_BACKOFF_MS, true);

/**
 * THE table: every error code of the library and what it means for retrying. `Record<ErrorCode, …>` makes a new
 * code fail to compile until it has a row. ESPAPI_ERR_BLE_CONNECT's row is refined by the error's reason
 * (CONNECT_FAILURE_TABLE) and, for 0x100, by the attempt's duration and slots (connectCancelClass).
 */
export const FAILURE_TABLE: Readonly<Record<ErrorCode, FailureRule>> = Object.freeze({
  ESPAPI_ERR_FRAME: PROTOCOL,
  ESPAPI_ERR_FRAME_TOO_LARGE: PROTOCOL,
  ESPAPI_ERR_DECODE: PROTOCOL,
  ESPAPI_ERR_HANDSHAKE: PROTOCOL,
  ESPAPI_ERR_DECRYPT: PROTOCOL,
  // A drop right after the encrypted hello is what firmware too old to answer "Bad indicator byte" does to a
  // Noise client, but also what a flaky network does: retried (aioesphomeapi does not count it as an auth error).
  ESPAPI_ERR_ENCRYPTED_HELLO_DROPPED: PROTOCOL,
  ESPAPI_ERR_INVALID_PSK: CREDENTIALS,
  ESPAPI_ERR_INVALID_KEY: CREDENTIALS,
  ESPAPI_ERR_ENCRYPTION_REQUIRED: CREDENTIALS,
  ESPAPI_ERR_DEVICE_PLAINTEXT: CREDENTIALS,
  ESPAPI_ERR_INVALID_PASSWORD: CREDENTIALS,
  // A key or password that could not be read (missing file, empty variable): exit 3 like a wrong one.
  ESPAPI_ERR_SECRET: rule('credentials', true, 0, false, 'auth'),
  ESPAPI_ERR_NAME_MISMATCH: IDENTITY,
  ESPAPI_ERR_MAC_MISMATCH: IDENTITY,
  ESPAPI_ERR_UNSUPPORTED_API: rule('unsupported', true, 0, false),
  // Another service answers on the port (HTTP, SSH...): the address is wrong, retrying reaches the same service.
  ESPAPI_ERR_NOT_ESPHOME: rule('unsupported', true, 0, false),
  // Not a Bluetooth proxy (attach), or a proxy without active connections (connect): neither changes by retrying.
  ESPAPI_ERR_FEATURE_MISSING: rule('unsupported', true, SAME_PROXY_BACKOFF_MS, false),
  ESPAPI_ERR_MISSING_PEER: rule('unsupported', true, 0, false),
  // The simulated Matter device did not start (not built, its process died): retrying the same start fails the same way.
  ESPAPI_ERR_MATTER_DEVICE: rule('unsupported', true, 0, false),
  // matter.js was set up in this process before prepareMatterEnvironment(): the program must change.
  ESPAPI_ERR_MATTER_ENVIRONMENT: rule('usage', true, 0, false, 'usage'),
  ESPAPI_ERR_CONNECTION_CLOSED: PROXY_LOST,
  ESPAPI_ERR_CONNECT: PROXY_LOST,
  ESPAPI_ERR_PING_TIMEOUT: PROXY_LOST,
  ESPAPI_ERR_TIMEOUT: rule('timeout', false, TRANSIENT_BACKOFF_MS, true, 'timeout'),
  ESPAPI_ERR_NOT_SUBSCRIBER: PROXY_UNUSABLE,
  ESPAPI_ERR_SUBSCRIPTION_LOST: PROXY_UNUSABLE,
  ESPAPI_ERR_NO_PROXY: PROXY_UNUSABLE,
  ESPAPI_ERR_BLE_CONNECT: OTHER,
  ESPAPI_ERR_BLE_DISCONNECTED: rule('aborted', false, TRANSIENT_BACKOFF_MS, true),
  ESPAPI_ERR_ABORTED: rule('aborted', false, TRANSIENT_BACKOFF_MS, true),
  ESPAPI_ERR_OUT_OF_SLOTS: rule('outOfSlots', false, SAME_PROXY_BACKOFF_MS, false),
  ESPAPI_ERR_CONTROLLER_REFUSED: rule('controllerRefused', false, SAME_PROXY_BACKOFF_MS, true),
  ESPAPI_ERR_DEVICE_UNREACHABLE: rule('deviceUnreachable', false, SAME_PROXY_BACKOFF_MS, true),
  ESPAPI_ERR_DEVICE_NOT_FOUND: rule('notFound', false, SAME_PROXY_BACKOFF_MS, false),
  ESPAPI_ERR_GATT: OTHER,
  ESPAPI_ERR_CHARACTERISTIC_NOT_FOUND: OTHER,
  ESPAPI_ERR_PAIRING: OTHER,
  ESPAPI_ERR_CONNECT_FAILED: OTHER,
  ESPAPI_ERR_SLOW_CONSUMER: OTHER,
  ESPAPI_ERR_INVALID_ARGUMENT: rule('usage', true, 0, false, 'usage'),
  // A plaintext listener beyond loopback without the explicit opt-in: the command line must change (exit 2).
  ESPAPI_ERR_INSECURE_LISTENER: rule('usage', true, 0, false, 'usage'),
  // The MQTT broker went away or refused a request: the gateway reconnects with backoff.
  ESPAPI_ERR_MQTT: rule('proxyLost', false, LONG_BACKOFF_MS, false),
  ESPAPI_ERR_MQTT_AUTH: CREDENTIALS,
  // An MQTT command the allow lists do not permit, or one that does not decode: resending it changes nothing.
  ESPAPI_ERR_COMMAND_REFUSED: rule('usage', true, 0, false, 'usage'),
  ESPAPI_ERR_RATE_LIMITED: rule('other', false, LONG_BACKOFF_MS, false),
  // The gateway is closing or its broker is away: the same command later (or to the gateway once back) may run.
  ESPAPI_ERR_GATEWAY_UNAVAILABLE: rule('other', false, LONG_BACKOFF_MS, false),
  // Another client of the relay holds the device: it may let go, and the path is fine.
  ESPAPI_ERR_DEVICE_HELD: rule('other', false, SAME_PROXY_BACKOFF_MS, false),
});

/** ESP_GATT_CONN_CONN_CANCEL: Bluedroid cancelled the attempt (spec §6.14). */
const CONN_CANCEL = 0x100;

/** The rows of the failure classes a BLE connect can end in (what BleConnectError.failureClass names). */
const BY_CLASS: Readonly<Partial<Record<FailureClass, FailureRule>>> = {
  outOfSlots: FAILURE_TABLE.ESPAPI_ERR_OUT_OF_SLOTS,
  controllerRefused: FAILURE_TABLE.ESPAPI_ERR_CONTROLLER_REFUSED,
  deviceUnreachable: FAILURE_TABLE.ESPAPI_ERR_DEVICE_UNREACHABLE,
};

/** The row keyed by the `error` of `connected=false` after a connect; reasons not listed are DEFAULT_CONNECT_FAILURE. */
export const CONNECT_FAILURE_TABLE: ReadonlyMap<number, FailureRule> = new Map([
  // error 0 right after a connect request is the firmware's "no free slot" reply (spec §6.7).
  [0x00, FAILURE_TABLE.ESPAPI_ERR_OUT_OF_SLOTS],
  [0x08, rule('aborted', false, MEDIUM_BACKOFF_MS, true)],
  [0x13, rule('aborted', false, TRANSIENT_BACKOFF_MS, true)],
  [0x16, rule('aborted', false, TRANSIENT_BACKOFF_MS, true)],
  [0x3e, rule('aborted', false, MEDIUM_BACKOFF_MS, true)],
  [0x85, rule('aborted', false, LONG_BACKOFF_MS, true)],
  // Refined by connectCancelClass from the attempt; this row is what a 0x100 without that context reads as.
  [CONN_CANCEL, FAILURE_TABLE.ESPAPI_ERR_OUT_OF_SLOTS],
]);

/** Any reason the table does not list (0x01, 0x22, 0x101, unknown codes): a plain connect error. */
export const DEFAULT_CONNECT_FAILURE: FailureRule = OTHER;

/**
 * Below this, a 0x100 is the controller refusing the connect at once: Bluedroid also sets 0x100 itself when it gives
 * up after the establishment timeout, which ESPHome sets to 10 s at least (20 s by default: esphome#18640 logs
 * the cancel 20.0 s after the connect). 8 s is bleak-retry-connector's boundary (PR #327); between 8 and 10 s
 * nothing is expected, and it reads as the device not answering.
 */
export const CONTROLLER_REFUSAL_MAX_MS = 8_000;

/** A proxy's slot report as the failure classification needs it. */
export interface SlotReport {
  readonly free: number;
  readonly limit: number;
  readonly allocated: readonly number[];
}

/**
 * What a 0x100 (ESP_GATT_CONN_CONN_CANCEL) answer to a connect means: the slots were really all taken (the proxy
 * held no slot for the attempt and reported none free: a full relay answers so at once), the controller refused
 * the connect at once (under CONTROLLER_REFUSAL_MAX_MS), or the device never answered (the stack's timeout).
 */
export function connectCancelClass(
  elapsedMs: number | undefined,
  slots: SlotReport | undefined,
  address: number,
): 'outOfSlots' | 'controllerRefused' | 'deviceUnreachable' {
  // Firmware before 2025 sends no `allocated` list: there only a report with every slot free says anything.
  const listed = slots !== undefined && (slots.allocated.length > 0 || slots.free === slots.limit);
  if (listed && slots.free === 0 && !slots.allocated.includes(address)) return 'outOfSlots';
  if (elapsedMs === undefined) return 'outOfSlots';
  return elapsedMs < CONTROLLER_REFUSAL_MAX_MS ? 'controllerRefused' : 'deviceUnreachable';
}

/** The failure class of a `connected=false` answer to a connect, with what the attempt knew. */
export function connectFailureClass(
  reason: number,
  context: { elapsedMs?: number | undefined; slots?: SlotReport | undefined; address: number },
): FailureClass {
  if (reason === CONN_CANCEL) return connectCancelClass(context.elapsedMs, context.slots, context.address);
  return (CONNECT_FAILURE_TABLE.get(reason) ?? DEFAULT_CONNECT_FAILURE).class;
}

/** The row of a `connected=false` reason (without a 0x100's context). */
export function classifyConnectError(reason: number): FailureRule {
  return CONNECT_FAILURE_TABLE.get(reason) ?? DEFAULT_CONNECT_FAILURE;
}

/** The table's row for any error: ours by code (a BLE connect by its reason and class), anything else OTHER. */
export function failureRule(error: unknown): FailureRule {
  if (!(error instanceof EspApiError)) return OTHER;
  if (error.code === 'ESPAPI_ERR_BLE_CONNECT') {
    const detail = error as EspApiError & { reason?: unknown; failureClass?: FailureClass };
    const byClass = detail.failureClass === undefined ? undefined : BY_CLASS[detail.failureClass];
    if (byClass !== undefined) return byClass;
    return typeof detail.reason === 'number' ? classifyConnectError(detail.reason) : OTHER;
  }
  return FAILURE_TABLE[error.code];
}

/** True when retrying with the same configuration cannot fix `error` (wrong key, password, identity, unsupported...). */
export function isPermanentFailure(error: unknown): boolean {
  return failureRule(error).permanent;
}

/**
 * How the CLI exits for `error`. An error standing for several proxies (NoProxyAvailableError with `proxies`)
 * exits as they do when they all agree: every proxy refused our key → 3.
 */
export function exitClassOf(error: unknown): ExitClass {
  const causes = (error as { proxies?: ReadonlyArray<{ error: unknown }> } | undefined)?.proxies;
  if (error instanceof EspApiError && error.code === 'ESPAPI_ERR_NO_PROXY' && causes !== undefined && causes.length > 0) {
    const exits = new Set(causes.map((c) => exitClassOf(c.error)));
    if (exits.size === 1) return [...exits][0]!;
  }
  return failureRule(error).exit;
}

/**
 * Failure classes after which a pool does not use the proxy again for the device until the row's backoff ends
 * (another proxy is tried at once); after the others it sleeps the backoff before the next attempt.
 */
const PROXY_BACKOFF_CLASSES: ReadonlySet<FailureClass> = new Set([
  'outOfSlots',
  'controllerRefused',
  'deviceUnreachable',
  'proxyUnusable',
  'unsupported',
  'notFound',
]);

/** True when a failure of class `cls` puts the proxy on a per-device backoff instead of a sleep before the next attempt. */
export function backsOffProxy(cls: FailureClass): boolean {
  return PROXY_BACKOFF_CLASSES.has(cls);
}
