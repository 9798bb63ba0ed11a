import { DEFAULT_API_PORT } from '../connection/connection.js';
import {
  type AttemptRecord,
  ConnectFailedError,
  ConnectionAbortedError,
  DeviceNotFoundError,
  type EspApiError,
  NoProxyAvailableError,
  OutOfSlotsError,
  type ProxyCause,
} from '../errors.js';
import { backsOffProxy, type FailureClass, failureRule, SAME_PROXY_BACKOFF_MS, TRANSIENT_BACKOFF_MS } from '../failure-table.js';

/** Why one connect attempt failed, as the connector's retry logic sees it: the failure table's class. */
export type AttemptFailure = FailureClass;

/** Wait before trying the SAME proxy again after it was out of slots, answered 0x100 or did not find the device. */
export const SAME_PROXY_SLOT_BACKOFF_MS = SAME_PROXY_BACKOFF_MS;
export { backsOffProxy, TRANSIENT_BACKOFF_MS };

/** How the connector treats a failure: its class, the backoff before the same proxy is tried again, and whether it counts against the radio path. */
export interface FailurePolicy {
  readonly failure: AttemptFailure;
  readonly backoffMs: number;
  /** Counts as a path failure (decaying penalty in proxy scoring); slot shortages do not. */
  readonly pathFailure: boolean;
  /** Retrying through this proxy cannot fix it (the proxy refuses our key, is another device, cannot connect). */
  readonly permanent: boolean;
}

/** Classifies an attempt error with the one failure table (src/failure-table.ts): by code and fields, never by message text. */
export function classifyAttemptError(error: unknown): FailurePolicy {
  const rule = failureRule(error);
  return { failure: rule.class, backoffMs: rule.backoffMs, pathFailure: rule.pathFailure, permanent: rule.permanent };
}

/** What we tell users for each final error (bleak-retry-connector's advice, and since its PR #327 the two meanings of 0x100). */
export const ADVICE = {
  notFound:
    'No proxy has heard the device recently. Make sure it is powered and advertising, not connected to a phone or another hub, and that a Bluetooth proxy is within range.',
  outOfSlots:
    'Every proxy that hears the device is out of connection slots. Add ESPHome Bluetooth proxies near the device, raise `connection_slots` in the proxy YAML (ESP32: up to 9, at the cost of memory), or disconnect other devices. Behind a relay, its other clients may hold the slots you may use or the device itself: wait for them to let go.',
  controllerRefused:
    "The connect was refused at once (ESP_GATT_CONN_CONN_CANCEL) although a free slot was reported: this points at the proxy, not the device. Its Bluetooth controller refused it (ESPHome 2026.7.3 left BLE 5.0 extended connect on, which some controllers reject: esphome#18047 fixes it, update the proxy; firmware before 2025.8 could free a slot before its controller had). Check the proxy's log, or let another proxy connect.",
  deviceUnreachable:
    "The proxy's Bluetooth stack gave up waiting for the device to answer the connect (ESP_GATT_CONN_CONN_CANCEL after ESPHome's connection timeout, 20 s by default): the device is out of that proxy's range, asleep, busy with another central, or announced under another address type (esphome#18640). Move a proxy closer or wake the device.",
  aborted:
    'The link was aborted by the device or the Bluetooth controller. This usually means interference, a weak signal, or the device is busy with another central; move a proxy closer and try again.',
  connection:
    'The connection failed. Check the signal strength (RSSI better than -80 dBm), that the device accepts connections, and the proxy logs for details.',
  unusable:
    'Retrying cannot fix this: correct the key, password or address of each proxy named (or remove it from the pool), then connect again.',
  unreachable: `Check that each proxy named is powered and on the network at that address and port (${DEFAULT_API_PORT} by default); the pool keeps reconnecting, so a later connect may succeed.`,
  notSubscriber:
    'Another client (e.g. Home Assistant) holds the Bluetooth subscription of each proxy named, and a proxy answers Bluetooth requests to its subscriber only: share the proxy through the relay instead, or stop that client using it.',
  unknownName: 'Check the names in `require`: a proxy is named by its pool id, node name, host, host:port or MAC.',
} as const;

/** The connector's one final error for the last failure of a run of attempts. */
export function finalError(
  label: string,
  failure: AttemptFailure,
  cause: unknown,
  timeline: readonly AttemptRecord[],
  unusable: readonly ProxyCause[],
): EspApiError {
  const attempts = timeline.length;
  const note = unusable.length === 0 ? '' : ` Not usable: ${describeCauses(unusable)}.`;
  const details = { attempts, timeline, cause, unusable };
  switch (failure) {
    case 'notFound':
      return new DeviceNotFoundError(`${label} was not found by any proxy after ${attempts} attempts`, {
        ...details,
        advice: ADVICE.notFound + note,
      });
    case 'outOfSlots':
      return new OutOfSlotsError(`No proxy had a free connection slot for ${label} after ${attempts} attempts`, {
        ...details,
        advice: ADVICE.outOfSlots + note,
      });
    case 'controllerRefused':
      return new OutOfSlotsError(`The proxy refused to connect to ${label} after ${attempts} attempts`, {
        ...details,
        failureClass: 'controllerRefused',
        advice: ADVICE.controllerRefused + note,
      });
    case 'deviceUnreachable':
      return new OutOfSlotsError(`${label} never answered the proxy's connect after ${attempts} attempts`, {
        ...details,
        failureClass: 'deviceUnreachable',
        advice: ADVICE.deviceUnreachable + note,
      });
    case 'aborted':
      return new ConnectionAbortedError(`Connecting to ${label} was aborted after ${attempts} attempts`, {
        ...details,
        advice: ADVICE.aborted + note,
      });
    default:
      return new ConnectFailedError(`Failed to connect to ${label} after ${attempts} attempts`, {
        ...details,
        failureClass: failure,
        advice: ADVICE.connection + note,
      });
  }
}

/** Every proxy that could carry the call is unusable for a reason retrying cannot fix: say so at once, per proxy. */
export function unusableError(what: string, causes: readonly ProxyCause[]): NoProxyAvailableError {
  return new NoProxyAvailableError(`${what}: no proxy can be used (${describeCauses(causes)}). ${ADVICE.unusable}`, {
    proxies: causes,
    cause: causes[0]?.error,
  });
}

/**
 * No proxy a connect may use can take it now, though waiting may fix it: offline and reconnecting (the last error of
 * its session, ECONNREFUSED say), another client's subscription, or a `require` whose names match no proxy yet.
 */
export function unavailableError(
  what: string,
  causes: readonly ProxyCause[],
  unknownRequire: readonly string[],
  timeline: readonly AttemptRecord[] = [],
): NoProxyAvailableError {
  const parts: string[] = [];
  if (unknownRequire.length > 0) {
    parts.push(`require names ${unknownRequire.map((n) => JSON.stringify(n)).join(', ')}, which matches no proxy of the pool`);
  }
  if (causes.length > 0) parts.push(describeCauses(causes));
  const classes = new Set(causes.map((c) => (c.permanent ? 'permanent' : c.failureClass)));
  const advice = [
    ...(unknownRequire.length > 0 ? [ADVICE.unknownName] : []),
    ...(classes.has('proxyUnusable') ? [ADVICE.notSubscriber] : []),
    ...([...classes].some((c) => c !== 'proxyUnusable' && c !== 'permanent') ? [ADVICE.unreachable] : []),
    ...(classes.has('permanent') ? [ADVICE.unusable] : []),
  ];
  return new NoProxyAvailableError(`${what}: no proxy can take the connect now (${parts.join('; ') || 'no proxy'}). ${advice.join(' ')}`, {
    proxies: causes,
    cause: causes[0]?.error,
    timeline,
  });
}

/** `proxy-1: ESPAPI_ERR_INVALID_KEY (the device rejected our key…)` per proxy. */
export function describeCauses(causes: readonly ProxyCause[]): string {
  return causes.map((c) => `${c.proxy}: ${c.code ?? 'error'} (${c.message})`).join('; ');
}
