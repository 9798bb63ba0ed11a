/** The firmware pings an authenticated client silent for 60 s and drops it 150 s after its last message (spec §5.6). */
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 60_000;
/** A client is dropped after this many intervals of silence (the firmware's 150 s for its 60 s). */
export const KEEPALIVE_DEAD_FACTOR = 2.5;
/** How often liveness is checked, per interval: a silent client is pinged at most a quarter interval late. */
export const KEEPALIVE_CHECKS_PER_INTERVAL = 4;

/** What the keep-alive check reads and marks on a session. */
export interface KeepaliveState {
  /**
   * Only authenticated sessions are pinged, as the firmware tracks only those (spec §5.6): before, the connect
   * deadline applies (and a Noise session cannot be sent anything before its handshake).
   */
  readonly authenticated: boolean;
  /** When the client last sent a message (ms on the monotonic clock, `performance.now()`). */
  readonly lastHeard: number;
  /** True once pinged since `lastHeard`. */
  pinged: boolean;
  /**
   * True while the server itself does not read the client (`ApiSession.holdInput()`: what its requests go to is
   * behind): neither pinged, since its answer would wait unread, nor dropped for a silence that is the server's.
   */
  readonly inputHeld?: boolean;
}

/** What the keep-alive check does to a session. */
export interface KeepaliveActions<T> {
  /** Send a PingRequest. */
  ping(target: T): void;
  /** Drop the session: silent for `idleMs`. */
  expire(target: T, idleMs: number): void;
}

/** Pings sessions silent for `interval` and drops those silent for 2.5 times it, as the firmware does. */
export function checkKeepalive<T extends KeepaliveState>(
  targets: Iterable<T>,
  interval: number,
  actions: KeepaliveActions<T>,
  now: number = performance.now(),
): void {
  for (const target of [...targets]) {
    if (!target.authenticated || target.inputHeld === true) continue;
    const idle = now - target.lastHeard;
    if (idle >= interval * KEEPALIVE_DEAD_FACTOR) actions.expire(target, idle);
    else if (idle >= interval && !target.pinged) {
      target.pinged = true;
      actions.ping(target);
    }
  }
}
