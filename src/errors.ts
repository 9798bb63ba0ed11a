import type { FailureClass } from './failure-table.js';

/** Stable machine-readable error codes; callers branch on these, never on message text. */
export type ErrorCode =
  | 'ESPAPI_ERR_FRAME'
  | 'ESPAPI_ERR_FRAME_TOO_LARGE'
  | 'ESPAPI_ERR_DECODE'
  | 'ESPAPI_ERR_HANDSHAKE'
  | 'ESPAPI_ERR_INVALID_PSK'
  | 'ESPAPI_ERR_INVALID_KEY'
  | 'ESPAPI_ERR_ENCRYPTION_REQUIRED'
  | 'ESPAPI_ERR_DEVICE_PLAINTEXT'
  | 'ESPAPI_ERR_ENCRYPTED_HELLO_DROPPED'
  | 'ESPAPI_ERR_DECRYPT'
  | 'ESPAPI_ERR_NAME_MISMATCH'
  | 'ESPAPI_ERR_MAC_MISMATCH'
  | 'ESPAPI_ERR_INVALID_PASSWORD'
  | 'ESPAPI_ERR_UNSUPPORTED_API'
  | 'ESPAPI_ERR_CONNECTION_CLOSED'
  | 'ESPAPI_ERR_CONNECT'
  | 'ESPAPI_ERR_TIMEOUT'
  | 'ESPAPI_ERR_PING_TIMEOUT'
  | 'ESPAPI_ERR_FEATURE_MISSING'
  | 'ESPAPI_ERR_NOT_SUBSCRIBER'
  | 'ESPAPI_ERR_SUBSCRIPTION_LOST'
  | 'ESPAPI_ERR_BLE_CONNECT'
  | 'ESPAPI_ERR_BLE_DISCONNECTED'
  | 'ESPAPI_ERR_GATT'
  | 'ESPAPI_ERR_CHARACTERISTIC_NOT_FOUND'
  | 'ESPAPI_ERR_PAIRING'
  | 'ESPAPI_ERR_OUT_OF_SLOTS'
  | 'ESPAPI_ERR_CONTROLLER_REFUSED'
  | 'ESPAPI_ERR_DEVICE_UNREACHABLE'
  | 'ESPAPI_ERR_SLOW_CONSUMER'
  | 'ESPAPI_ERR_DEVICE_NOT_FOUND'
  | 'ESPAPI_ERR_NO_PROXY'
  | 'ESPAPI_ERR_ABORTED'
  | 'ESPAPI_ERR_CONNECT_FAILED'
  | 'ESPAPI_ERR_INVALID_ARGUMENT'
  | 'ESPAPI_ERR_MISSING_PEER'
  | 'ESPAPI_ERR_MATTER_DEVICE'
  | 'ESPAPI_ERR_MATTER_ENVIRONMENT'
  | 'ESPAPI_ERR_INSECURE_LISTENER'
  | 'ESPAPI_ERR_SECRET'
  | 'ESPAPI_ERR_MQTT'
  | 'ESPAPI_ERR_MQTT_AUTH'
  | 'ESPAPI_ERR_COMMAND_REFUSED'
  | 'ESPAPI_ERR_RATE_LIMITED'
  | 'ESPAPI_ERR_GATEWAY_UNAVAILABLE'
  | 'ESPAPI_ERR_DEVICE_HELD'
  | 'ESPAPI_ERR_NOT_ESPHOME';

/** Root of every error this library throws. */
export class EspApiError extends Error {
  /** Machine-readable code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The peer at the address answers in another protocol (HTTP, SSH, TLS...): a wrong port, not a broken node. */
export class NotEsphomeError extends EspApiError {
  /** The protocol recognised from its first bytes (`HTTP`...), undefined when unknown. */
  readonly protocol: string | undefined;
  constructor(message: string, protocol: string | undefined) {
    super('ESPAPI_ERR_NOT_ESPHOME', message);
    this.protocol = protocol;
  }
}

/** Malformed bytes on the wire (bad indicator, oversized varint, truncated payload...). */
export class FrameError extends EspApiError {
  constructor(message: string, options?: ErrorOptions & { code?: 'ESPAPI_ERR_FRAME' | 'ESPAPI_ERR_DECODE' }) {
    super(options?.code ?? 'ESPAPI_ERR_FRAME', message, options);
  }
}

/** A frame exceeded a named size limit. */
export class FrameTooLargeError extends EspApiError {
  readonly size: number;
  readonly limit: number;
  constructor(size: number, limit: number) {
    super('ESPAPI_ERR_FRAME_TOO_LARGE', `Frame of ${size} bytes exceeds the limit of ${limit} bytes`);
    this.size = size;
    this.limit = limit;
  }
}

/** Transport handshake (Noise) failed. */
export class HandshakeError extends EspApiError {
  constructor(
    message: string,
    options?: ErrorOptions & {
      code?:
        | 'ESPAPI_ERR_HANDSHAKE'
        | 'ESPAPI_ERR_INVALID_KEY'
        | 'ESPAPI_ERR_ENCRYPTION_REQUIRED'
        | 'ESPAPI_ERR_DEVICE_PLAINTEXT'
        | 'ESPAPI_ERR_ENCRYPTED_HELLO_DROPPED'
        | 'ESPAPI_ERR_DECRYPT';
    },
  ) {
    super(options?.code ?? 'ESPAPI_ERR_HANDSHAKE', message, options);
  }
}

/** The pre-shared key is not base64 of exactly 32 bytes. */
export class InvalidPskError extends EspApiError {
  constructor(message = 'Encryption key must be base64 of exactly 32 bytes (44 characters, e.g. `openssl rand -base64 32`)') {
    super('ESPAPI_ERR_INVALID_PSK', message);
  }
}

/** The device rejected our key ("Handshake MAC failure"). */
export class InvalidEncryptionKeyError extends HandshakeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, code: 'ESPAPI_ERR_INVALID_KEY' });
  }
}

/** Plaintext client talking to a device that requires Noise encryption. */
export class EncryptionRequiredError extends HandshakeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, code: 'ESPAPI_ERR_ENCRYPTION_REQUIRED' });
  }
}

/** Noise client talking to a device that speaks plaintext. */
export class DevicePlaintextError extends HandshakeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, { ...options, code: 'ESPAPI_ERR_DEVICE_PLAINTEXT' });
  }
}

/** The device name or MAC differs from what the caller expected. */
export class NameMismatchError extends EspApiError {
  readonly expected: string;
  readonly actual: string;
  constructor(kind: 'name' | 'mac', expected: string, actual: string) {
    super(
      kind === 'name' ? 'ESPAPI_ERR_NAME_MISMATCH' : 'ESPAPI_ERR_MAC_MISMATCH',
      `Expected device ${kind} ${JSON.stringify(expected)} but the device reports ${JSON.stringify(actual)}: check the host address or your configuration`,
    );
    this.expected = expected;
    this.actual = actual;
  }
}

/** The device rejected the API password (pre-2026.1 firmware). */
export class InvalidPasswordError extends EspApiError {
  constructor(message = 'The device rejected the API password') {
    super('ESPAPI_ERR_INVALID_PASSWORD', message);
  }
}

/** The device speaks an API major version we cannot handle. */
export class UnsupportedApiVersionError extends EspApiError {
  constructor(major: number, minor: number) {
    super('ESPAPI_ERR_UNSUPPORTED_API', `Device speaks API ${major}.${minor}; only major versions 1 and 2 are supported`);
  }
}

/** The connection ended (by the peer, by us, or by a fatal error). */
export class ConnectionClosedError extends EspApiError {
  /** True when the device announced the disconnect itself (reboot, shutdown): an expected close. */
  readonly byDevice: boolean;
  constructor(message = 'Connection closed', options?: ErrorOptions & { byDevice?: boolean }) {
    super('ESPAPI_ERR_CONNECTION_CLOSED', message, options);
    this.byDevice = options?.byDevice ?? false;
  }
}

/** TCP connect failed (refused, unreachable, DNS). */
export class SocketConnectError extends EspApiError {
  constructor(message: string, options?: ErrorOptions) {
    super('ESPAPI_ERR_CONNECT', message, options);
  }
}

/** An operation did not finish within its deadline. */
export class TimeoutError extends EspApiError {
  readonly operation: string;
  readonly timeoutMs: number;
  constructor(operation: string, timeoutMs: number, options?: ErrorOptions & { code?: 'ESPAPI_ERR_TIMEOUT' | 'ESPAPI_ERR_PING_TIMEOUT' }) {
    super(options?.code ?? 'ESPAPI_ERR_TIMEOUT', `${operation} timed out after ${timeoutMs} ms`, options);
    this.operation = operation;
    this.timeoutMs = timeoutMs;
  }
}

/** The proxy lacks a Bluetooth feature flag the operation needs. */
export class FeatureMissingError extends EspApiError {
  readonly feature: string;
  constructor(proxy: string, feature: string) {
    super('ESPAPI_ERR_FEATURE_MISSING', `Proxy ${proxy} does not support ${feature} (missing Bluetooth proxy feature flag)`);
    this.feature = feature;
  }
}

/** Why a session is not the proxy's Bluetooth subscriber. */
export type NotSubscriberReason = 'otherClient' | 'unsubscribed';

/**
 * This session is not the proxy's Bluetooth subscriber: another API client holds the single
 * subscription, or this session unsubscribed. The firmware sends every Bluetooth answer to the
 * subscriber only, so requests from here would get no reply.
 */
export class NotSubscriberError extends EspApiError {
  readonly reason: NotSubscriberReason;
  constructor(proxy: string, reason: NotSubscriberReason = 'otherClient') {
    super(
      'ESPAPI_ERR_NOT_SUBSCRIBER',
      reason === 'unsubscribed'
        ? `This session unsubscribed from the Bluetooth data of proxy ${proxy}: the proxy answers Bluetooth requests only to its subscriber, so resubscribe first`
        : `Proxy ${proxy} sends no Bluetooth data to this session: another client (e.g. Home Assistant) holds its single Bluetooth subscription`,
    );
    this.reason = reason;
  }
}

/** How a lost subscription was noticed: an unanswered subscriber probe, silence, or a subscribe the proxy did not confirm. */
export type SubscriptionLossSign = 'probe' | 'silence' | 'subscribe';

const LOSS_SIGNS: Record<SubscriptionLossSign, string> = {
  probe: 'a subscriber probe went unanswered while the proxy still answers requests',
  silence: 'it fell silent while still answering pings',
  subscribe: 'it did not confirm our subscribe',
};

/** The proxy does not (or no longer) treat this session as its Bluetooth subscriber; another client holds or took the subscription. */
export class SubscriptionLostError extends EspApiError {
  readonly detectedBy: SubscriptionLossSign;
  constructor(proxy: string, detectedBy: SubscriptionLossSign) {
    super(
      'ESPAPI_ERR_SUBSCRIPTION_LOST',
      `Proxy ${proxy} sends no Bluetooth data to this session (${LOSS_SIGNS[detectedBy]}): another client (e.g. Home Assistant) holds or took its single Bluetooth subscription`,
    );
    this.detectedBy = detectedBy;
  }
}

/**
 * A request of this process for a device another client of a shared proxy session holds (or is releasing): a relay
 * refuses its in-process pool a DISCONNECT, unpair, clear-cache or GATT request for a link one of its clients owns.
 */
export class DeviceHeldError extends EspApiError {
  readonly address: number;
  /** The proxy (its id at the relay). */
  readonly proxy: string;
  constructor(message: string, address: number, proxy: string) {
    super('ESPAPI_ERR_DEVICE_HELD', message);
    this.address = address;
    this.proxy = proxy;
  }
}

/** A GATT operation failed with a status from the proxy. */
export class GattError extends EspApiError {
  readonly address: number;
  readonly handle: number;
  readonly status: number;
  readonly statusName: string;
  constructor(message: string, address: number, handle: number, status: number, statusName: string) {
    super('ESPAPI_ERR_GATT', message);
    this.address = address;
    this.handle = handle;
    this.status = status;
    this.statusName = statusName;
  }
}

/** A BLE connection attempt on one proxy failed with a reason code. */
export class BleConnectError extends EspApiError {
  readonly address: number;
  readonly reason: number;
  readonly reasonName: string;
  /** What the failure means, from the one failure table (for 0x100: outOfSlots, controllerRefused or deviceUnreachable). */
  readonly failureClass: FailureClass;
  /** From the connect request to the proxy's answer (ms), when the answer came. */
  readonly elapsedMs: number | undefined;
  constructor(
    message: string,
    address: number,
    reason: number,
    reasonName: string,
    failureClass: FailureClass = 'other',
    options?: ErrorOptions & { elapsedMs?: number | undefined },
  ) {
    super('ESPAPI_ERR_BLE_CONNECT', message, options);
    this.address = address;
    this.reason = reason;
    this.reasonName = reasonName;
    this.failureClass = failureClass;
    this.elapsedMs = options?.elapsedMs;
  }
}

/** The BLE link dropped while an operation was in flight. */
export class BleDisconnectedError extends EspApiError {
  readonly address: number;
  readonly reason: number;
  constructor(message: string, address: number, reason: number) {
    super('ESPAPI_ERR_BLE_DISCONNECTED', message);
    this.address = address;
    this.reason = reason;
  }
}

/** The characteristic or descriptor asked for is not in the service table. */
export class CharacteristicNotFoundError extends EspApiError {
  readonly key: string;
  constructor(device: string, key: string) {
    super('ESPAPI_ERR_CHARACTERISTIC_NOT_FOUND', `Characteristic ${key} not found on ${device}`);
    this.key = key;
  }
}

/** Pairing or unpairing failed. */
export class PairingError extends EspApiError {
  readonly address: number;
  readonly status: number;
  constructor(message: string, address: number, status: number) {
    super('ESPAPI_ERR_PAIRING', message);
    this.address = address;
    this.status = status;
  }
}

/** A bounded stream dropped items because its consumer was too slow (only with the 'error' policy). */
export class SlowConsumerError extends EspApiError {
  readonly dropped: number;
  constructor(dropped: number) {
    super('ESPAPI_ERR_SLOW_CONSUMER', `Consumer too slow: ${dropped} items dropped`);
    this.dropped = dropped;
  }
}

/** An argument was invalid (bad MAC, bad UUID, out-of-range parameter). */
export class InvalidArgumentError extends EspApiError {
  constructor(message: string) {
    super('ESPAPI_ERR_INVALID_ARGUMENT', message);
  }
}

/** An MQTT command that could not be decoded; `mac` is set when the request named a valid device (the answer goes there). */
export class CommandDecodeError extends InvalidArgumentError {
  readonly mac: string | undefined;
  constructor(message: string, mac?: string) {
    super(message);
    this.mac = mac;
  }
}

/** A routing decision that shaped a connect attempt (pinned or bonded proxy first, filters, a ghost link released). */
export interface RouteDecision {
  /**
   * `require` / `exclude`: proxies left out; `prefer`: a pinned proxy went first; `bond`: the proxy holding the
   * device's bond went first; `fallback`: the pinned or bonded proxy could not be used, another took its place;
   * `ghost`: a DISCONNECT went to a proxy still holding a link we had ended.
   */
  readonly kind: 'require' | 'exclude' | 'prefer' | 'bond' | 'fallback' | 'ghost';
  readonly proxy: string | undefined;
  /** One sentence for people. */
  readonly detail: string;
}

/** One attempt in an establishConnection timeline. */
export interface AttemptRecord {
  readonly attempt: number;
  readonly proxy: string | undefined;
  readonly rssi: number | undefined;
  readonly score: number | undefined;
  readonly code: ErrorCode | undefined;
  readonly reason: number | undefined;
  readonly ms: number;
  /** What the failure meant (the failure table's class); undefined for the attempt that connected. */
  readonly failure: FailureClass | undefined;
  /** The routing decisions behind this attempt's choice of proxy (empty when the score alone decided). */
  readonly route: readonly RouteDecision[];
}

/** Why one proxy could not be used for a call. */
export interface ProxyCause {
  readonly proxy: string;
  /** The error's code (undefined for an error from outside the library). */
  readonly code: ErrorCode | undefined;
  readonly failureClass: FailureClass;
  /** Retrying with the same configuration cannot fix it. */
  readonly permanent: boolean;
  readonly message: string;
  readonly error: unknown;
}

/** Fields shared by the connector's final errors. */
export interface ConnectorErrorDetails {
  readonly attempts: number;
  readonly advice: string;
  readonly timeline: readonly AttemptRecord[];
  readonly cause?: unknown;
  /** The class of the failure that decided the error. */
  readonly failureClass?: FailureClass;
  /** Proxies that could not be used for a reason retrying cannot fix (wrong key, another device at the address...). */
  readonly unusable?: readonly ProxyCause[];
}

abstract class ConnectorError extends EspApiError {
  readonly attempts: number;
  readonly advice: string;
  readonly timeline: readonly AttemptRecord[];
  /** The class of the failure that decided the error (the failure table's). */
  readonly failureClass: FailureClass;
  /** Proxies that could not be used for a reason retrying cannot fix; empty when every proxy was usable. */
  readonly unusable: readonly ProxyCause[];
  constructor(code: ErrorCode, message: string, details: ConnectorErrorDetails, failureClass: FailureClass) {
    super(code, `${message}: ${details.advice}`, details.cause === undefined ? undefined : { cause: details.cause });
    this.attempts = details.attempts;
    this.advice = details.advice;
    this.timeline = details.timeline;
    this.failureClass = details.failureClass ?? failureClass;
    this.unusable = details.unusable ?? [];
  }
}

/** The device is not heard by any usable proxy (bleak-retry-connector's BleakNotFoundError). */
export class DeviceNotFoundError extends ConnectorError {
  constructor(message: string, details: ConnectorErrorDetails) {
    super('ESPAPI_ERR_DEVICE_NOT_FOUND', message, details, 'notFound');
  }
}

/** What an OutOfSlotsError stands for: slots really all taken, or one of the two things a 0x100 means instead. */
export type OutOfSlotsKind = 'outOfSlots' | 'controllerRefused' | 'deviceUnreachable';

const OUT_OF_SLOTS_CODES: Record<OutOfSlotsKind, ErrorCode> = {
  outOfSlots: 'ESPAPI_ERR_OUT_OF_SLOTS',
  controllerRefused: 'ESPAPI_ERR_CONTROLLER_REFUSED',
  deviceUnreachable: 'ESPAPI_ERR_DEVICE_UNREACHABLE',
};

/**
 * Every proxy that hears the device is out of connection slots (BleakOutOfConnectionSlotsError), or the last
 * proxy answered ESP_GATT_CONN_CONN_CANCEL (0x100), which callers have always caught as this class. Its `code`
 * says which: ESPAPI_ERR_OUT_OF_SLOTS (slots really all taken), ESPAPI_ERR_CONTROLLER_REFUSED (the proxy's
 * controller refused the connect at once with a slot free) or ESPAPI_ERR_DEVICE_UNREACHABLE (the device never
 * answered the connect before the proxy's stack gave up).
 */
export class OutOfSlotsError extends ConnectorError {
  constructor(message: string, details: ConnectorErrorDetails & { failureClass?: OutOfSlotsKind }) {
    const kind = details.failureClass ?? 'outOfSlots';
    super(OUT_OF_SLOTS_CODES[kind], message, details, kind);
  }
}

/** The link was aborted by the peer or the controller (BleakAbortedError). */
export class ConnectionAbortedError extends ConnectorError {
  constructor(message: string, details: ConnectorErrorDetails) {
    super('ESPAPI_ERR_ABORTED', message, details, 'aborted');
  }
}

/** Connecting failed for any other reason (BleakConnectionError). */
export class ConnectFailedError extends ConnectorError {
  constructor(message: string, details: ConnectorErrorDetails) {
    super('ESPAPI_ERR_CONNECT_FAILED', message, details, 'other');
  }
}

/**
 * No proxy in the pool is online and capable of the operation. When the proxies could not be used for reasons of
 * their own (wrong key, another device at the address...), `proxies` names each with its cause, and `cause` is the
 * first of them.
 */
export class NoProxyAvailableError extends EspApiError {
  /** Each proxy that could not be used, with why (empty when there is no proxy at all). */
  readonly proxies: readonly ProxyCause[];
  /** The attempts of the connect that ended so (empty when it failed before its first). */
  readonly timeline: readonly AttemptRecord[];
  constructor(message: string, options?: ErrorOptions & { proxies?: readonly ProxyCause[]; timeline?: readonly AttemptRecord[] }) {
    super('ESPAPI_ERR_NO_PROXY', message, options);
    this.proxies = options?.proxies ?? [];
    this.timeline = options?.timeline ?? [];
  }
}

/** A listener would serve beyond loopback without a key and plaintext was not asked for explicitly. */
export class InsecureListenerError extends EspApiError {
  readonly host: string;
  constructor(message: string, host: string) {
    super('ESPAPI_ERR_INSECURE_LISTENER', message);
    this.host = host;
  }
}

/** A secret (key, password) could not be read from where it was said to be; the message never holds the secret. */
export class SecretSourceError extends EspApiError {
  constructor(message: string, options?: ErrorOptions) {
    super('ESPAPI_ERR_SECRET', message, options);
  }
}

/** The MQTT broker could not be reached, refused us, or went away while a call needed it. */
export class MqttBrokerError extends EspApiError {
  /** The broker's CONNACK reason code when it refused the connection. */
  readonly reasonCode: number | undefined;
  constructor(message: string, options?: ErrorOptions & { reasonCode?: number; code?: 'ESPAPI_ERR_MQTT' | 'ESPAPI_ERR_MQTT_AUTH' }) {
    super(options?.code ?? 'ESPAPI_ERR_MQTT', message, options);
    this.reasonCode = options?.reasonCode;
  }
}

/** Why the MQTT gateway refused a command. */
export type CommandRefusal = 'notAllowed' | 'rateLimited' | 'busy' | 'brokerAway' | 'closing';

/**
 * The MQTT gateway refused a GATT command: not allowed for that device (`ESPAPI_ERR_COMMAND_REFUSED`, permanent),
 * over the rate limit or too many in flight (`ESPAPI_ERR_RATE_LIMITED`), or not taking commands now because it is
 * closing or its broker is away (`ESPAPI_ERR_GATEWAY_UNAVAILABLE`); the last two are worth sending again later.
 */
export class CommandRefusedError extends EspApiError {
  readonly reason: CommandRefusal;
  constructor(message: string, reason: CommandRefusal) {
    super(refusalCode(reason), message);
    this.reason = reason;
  }
}

function refusalCode(reason: CommandRefusal): ErrorCode {
  switch (reason) {
    case 'rateLimited':
    case 'busy':
      return 'ESPAPI_ERR_RATE_LIMITED';
    case 'closing':
    case 'brokerAway':
      return 'ESPAPI_ERR_GATEWAY_UNAVAILABLE';
    case 'notAllowed':
      return 'ESPAPI_ERR_COMMAND_REFUSED';
  }
}

/** The simulated Matter device could not start (its process failed, exited or is not built). */
export class MatterDeviceError extends EspApiError {
  constructor(message: string, options?: ErrorOptions) {
    super('ESPAPI_ERR_MATTER_DEVICE', message, options);
  }
}

/** matter.js was set up in this process before (or differently from) prepareMatterEnvironment(). */
export class MatterEnvironmentError extends EspApiError {
  constructor(message: string) {
    super('ESPAPI_ERR_MATTER_ENVIRONMENT', message);
  }
}
