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

/**
 * Updates a peripheral sends in reaction to a write, held until the write's reply is out: on the air the reply
 * goes in the connection event of the write and a reaction at the earliest in the next one. Held updates go
 * together and in order (later updates queue behind them) when the release timer fires, or at once when the
 * link goes (they then find no subscription; held indications fail as the link's).
 */
export class HeldUpdates {
  readonly #delayMs: () => number;
  readonly #pending: Array<() => void> = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #hooks = 0;

  /** `delayMs`: how long after the write its reaction goes out (read at each hold). */
  constructor(delayMs: () => number) {
    this.#delayMs = delayMs;
  }

  /** Whether an update sent now must wait: a write hook is running, or earlier reactions are still held. */
  get holding(): boolean {
    return this.#hooks > 0 || this.#pending.length > 0;
  }

  /** Runs a write hook; what it sends is held. */
  during<T>(hook: () => T): T {
    this.#hooks++;
    try {
      return hook();
    } finally {
      this.#hooks--;
    }
  }

  /** Queues `send` for the release. */
  hold(send: () => void): void {
    this.#pending.push(send);
    this.#timer ??= setTimeout(() => this.release(), this.#delayMs());
  }

  /** Sends everything held now, in order. */
  release(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const send of this.#pending.splice(0)) send();
  }
}

/** A copy that owns its memory: `slice()` of a Buffer (what the server's decoder hands over) is only a view. */
export function copyOf(data: Uint8Array): Uint8Array {
  return Uint8Array.from(data);
}
