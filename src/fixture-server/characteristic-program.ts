import type { GattCharacteristicProfile } from './profile.js';

/** Link events of a simulated peripheral (the proxy opened or lost the link). */
export type LinkEvent = { readonly type: 'connected'; readonly mtu: number } | { readonly type: 'disconnected'; readonly reason: number };

/** Which kinds of value updates a client enabled (proxy registration plus CCCD bits). */
export interface Subscription {
  readonly notify: boolean;
  readonly indicate: boolean;
  /** ATT MTU of the link: an update carries at most `mtu - 3` bytes. */
  readonly mtu: number;
}

/**
 * Code behind one characteristic of a simulated peripheral. Every hook is optional and runs after the GATT
 * checks the profile already applies (properties, length, encryption, configured errors), so a program only
 * decides what the device does with what it was allowed to receive.
 */
export interface CharacteristicProgram {
  /** A write arrived; return an ATT status (e.g. 0x0e unlikely error) to refuse it, else the value is stored. */
  onWrite?(data: Uint8Array, write: { readonly withResponse: boolean }): number | undefined;
  /** A read arrived: return the value to answer (default: the stored value) or `{ error }`. */
  onRead?(): Uint8Array | { readonly error: number } | undefined;
  /** The client enabled updates: the proxy registered the handle and the CCCD has a bit set. */
  onSubscribe?(subscription: Subscription): void;
  /** Updates stopped: CCCD cleared, registration dropped or the link went away. */
  onUnsubscribe?(): void;
}

/** ATT header of a Handle Value Notification/Indication: an update carries at most MTU - 3 bytes. */
export const ATT_UPDATE_HEADER = 3;
/**
 * How long an indication waits for its confirmation. The proxy's BLE stack confirms on receipt (ESP-IDF's GATT
 * client does so itself), so this only fires when nothing forwards it; ATT's own transaction timeout is 30 s.
 */
export const INDICATION_TIMEOUT_MS = 30_000;

/**
 * Waits for an indication's confirmation, which the central's stack sends on receipt: it resolves on the next
 * turn of the event loop (after the indication went out, never before) while the link is up, and rejects with
 * `lost(reason)` when the link goes first or with the signal's reason when it aborts.
 */
export function awaitConfirmation(
  onLink: (listener: (event: LinkEvent) => void) => () => void,
  connected: () => boolean,
  signal: AbortSignal,
  lost: (reason: number) => Error,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const finish = (error?: unknown): void => {
      offLink();
      signal.removeEventListener('abort', onAbort);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onAbort = (): void => finish(signal.reason);
    const offLink = onLink((event) => {
      if (event.type === 'disconnected') finish(lost(event.reason));
    });
    signal.addEventListener('abort', onAbort, { once: true });
    setImmediate(() => {
      if (connected()) finish();
    });
  });
}

/** What a simulated peripheral keeps per characteristic (internal to the simulator). */
export interface CharacteristicState {
  readonly profile: GattCharacteristicProfile;
  value: Uint8Array;
  registered: boolean;
  cccd: number;
  notifyIndex: number;
  timer: ReturnType<typeof setInterval> | undefined;
  program: CharacteristicProgram | undefined;
  /** Whether onSubscribe was called and onUnsubscribe not since. */
  subscribed: boolean;
  /** Indications go one at a time (ATT allows one outstanding per link); the next waits for this one. */
  indication: Promise<void>;
}

/** A copy that owns its memory: `slice()` of a Buffer (what the server's decoder hands over) is only a view. */
export function copyOf(data: Uint8Array): Uint8Array {
  return Uint8Array.from(data);
}
