import { CONNECT_TIMEOUT_FAILURE, CONNECTION_LOST_FAILURE, classifyConnectError, NOT_FOUND_FAILURE } from '../bluetooth/codes.js';
import { BleConnectError, BleDisconnectedError, ConnectionClosedError, EspApiError, TimeoutError } from '../errors.js';

/** Why one connect attempt failed, as the connector's retry logic sees it. */
export type AttemptFailure = 'notFound' | 'outOfSlots' | 'aborted' | 'timeout' | 'transient' | 'proxyLost' | 'proxyUnusable' | 'other';

// The backoffs come from the one code table in src/bluetooth/codes.ts (bleak-retry-connector's values).
/** Wait before trying the SAME proxy again after it was out of slots or did not find the device. */
export const SAME_PROXY_SLOT_BACKOFF_MS = NOT_FOUND_FAILURE.backoffMs;
/** Wait after a timeout or a transient failure. */
export const TRANSIENT_BACKOFF_MS = CONNECT_TIMEOUT_FAILURE.backoffMs;

/** How the connector treats a failure: its class, the backoff before the same proxy is tried again, and whether it counts against the radio path. */
export interface FailurePolicy {
  readonly failure: AttemptFailure;
  readonly backoffMs: number;
  /** Counts as a path failure (decaying penalty in proxy scoring); slot shortages do not. */
  readonly pathFailure: boolean;
}

/** Classifies an attempt error by code and fields, never by message text. */
export function classifyAttemptError(error: unknown): FailurePolicy {
  if (error instanceof BleConnectError) {
    // The proxy-client already classified the reason with the code table (reason 0 right after a connect = no slot).
    const failure = error.failureClass as AttemptFailure;
    const backoffMs = failure === 'outOfSlots' ? SAME_PROXY_SLOT_BACKOFF_MS : classifyConnectError(error.reason).backoffMs;
    return { failure, backoffMs, pathFailure: failure !== 'outOfSlots' && failure !== 'notFound' };
  }
  if (error instanceof TimeoutError) return { failure: 'timeout', backoffMs: TRANSIENT_BACKOFF_MS, pathFailure: true };
  if (error instanceof BleDisconnectedError) return { failure: 'aborted', backoffMs: CONNECTION_LOST_FAILURE.backoffMs, pathFailure: true };
  if (error instanceof ConnectionClosedError) return { failure: 'proxyLost', backoffMs: 0, pathFailure: false };
  if (
    error instanceof EspApiError &&
    (error.code === 'ESPAPI_ERR_NOT_SUBSCRIBER' ||
      error.code === 'ESPAPI_ERR_SUBSCRIPTION_LOST' ||
      error.code === 'ESPAPI_ERR_FEATURE_MISSING')
  ) {
    return { failure: 'proxyUnusable', backoffMs: SAME_PROXY_SLOT_BACKOFF_MS, pathFailure: false };
  }
  return { failure: 'other', backoffMs: TRANSIENT_BACKOFF_MS, pathFailure: true };
}

/** What we tell users for each final error (mirrors bleak-retry-connector's advice). */
export const ADVICE = {
  notFound:
    'No proxy has heard the device recently. Make sure it is powered and advertising, not connected to a phone or another hub, and that a Bluetooth proxy is within range.',
  outOfSlots:
    'Every proxy that hears the device is out of connection slots. Add ESPHome Bluetooth proxies near the device, raise `connection_slots` in the proxy YAML (ESP32: up to 9, at the cost of memory), or disconnect other devices.',
  aborted:
    'The link was aborted by the device or the Bluetooth controller. This usually means interference, a weak signal, or the device is busy with another central; move a proxy closer and try again.',
  connection:
    'The connection failed. Check the signal strength (RSSI better than -80 dBm), that the device accepts connections, and the proxy logs for details.',
} as const;
