/**
 * BLE connect deadline: 25 s. ESPHome's stack gives up on a device that does not answer after its own connection
 * timeout, 20 s by default (esphome#18640 logs the cancel 20.0 s after the connect) and says so (0x100): a deadline
 * of exactly 20 s raced that verdict and turned "the device never answered" into our own timeout. Still below
 * aioesphomeapi's 30 s, because the pool would rather fail over.
 */
export const BLE_CONNECT_TIMEOUT_MS = 25_000;
/** GATT read / write / services / pairing / clear cache (aioesphomeapi DEFAULT_BLE_TIMEOUT). */
export const BLE_OPERATION_TIMEOUT_MS = 30_000;
/** Notify subscribe, including the CCCD write (aioesphomeapi: 10 s). */
export const BLE_NOTIFY_TIMEOUT_MS = 10_000;
/** Waiting for connected=false after DISCONNECT (aioesphomeapi DEFAULT_BLE_DISCONNECT_TIMEOUT). */
export const BLE_DISCONNECT_TIMEOUT_MS = 20_000;
/** After a failed or aborted connect, how long we wait for the proxy to confirm the slot is free before throwing. */
export const BLE_CONNECT_CLEANUP_TIMEOUT_MS = 5_000;
/** Modern proxies answer a subscribe with a scanner state at once; silence this long means another client is the subscriber. */
export const SUBSCRIBER_CHECK_TIMEOUT_MS = 2_000;
/** Scanner mode switches restart the scanner: STOPPING → ... → RUNNING. */
export const SCANNER_MODE_TIMEOUT_MS = 10_000;
/** Default ATT MTU when the proxy did not report one. */
export const DEFAULT_MTU = 23;
/**
 * The watchdog probes the subscription after this long without Bluetooth data. A proxy in an ordinary home
 * hears advertisements every second or so, so 30 s of silence on a healthy subscription is rare, and a probe
 * costs two small messages.
 */
export const SUBSCRIPTION_SILENCE_TIMEOUT_MS = 30_000;
/** One probe waits this long for the slot answer (the proxy answers within a loop iteration; 5 s allows a congested Wi-Fi). */
export const SUBSCRIPTION_PROBE_TIMEOUT_MS = 5_000;
/** Resubscribe backoff after a lost subscription: bleak-esphome's 10 s, 30 s, then every 60 s. */
export const RESUBSCRIBE_DELAYS_MS: readonly number[] = [10_000, 30_000, 60_000];
