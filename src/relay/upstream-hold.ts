import type { ApiConnection } from '../connection/connection.js';
import type { ApiSession } from '../server/api-server.js';

/**
 * Above this many bytes waiting to be sent to the upstream proxy (`ApiConnection.sendBacklog`: written, not taken by
 * the kernel), a client that sends the relay a frame is no longer read until the upstream is down to
 * UPSTREAM_RESUME_BYTES. Without it a client's requests with no reply (GATT writes without response to an ESP32
 * that reads slower than the LAN delivers) were read and queued upstream without bound (6 MB of requests to a
 * stalled upstream took the relay from 63 to 253 MB). With it the upstream queue holds this plus one frame per
 * client; 256 KiB is 500 writes of 512 bytes, far more than a proxy takes in one go.
 */
export const UPSTREAM_HOLD_BYTES = 256 * 1024;
/** Held clients are read again once the upstream queue is down to this (checked every UPSTREAM_POLL_MS: Node only reports an empty queue). */
const UPSTREAM_RESUME_BYTES = 64 * 1024;
const UPSTREAM_POLL_MS = 20;

/**
 * Backpressure from the upstream to the clients: a client whose frame went upstream while the upstream has more
 * than UPSTREAM_HOLD_BYTES waiting is not read (TCP slows it down) until the upstream is down to
 * UPSTREAM_RESUME_BYTES or gone.
 */
export class UpstreamHold {
  /** Clients not read while the upstream is behind, each with the canceller of its close listener. */
  readonly #held = new Map<ApiSession, () => void>();
  #timer: NodeJS.Timeout | undefined;

  /** Holds `session` when `api` is behind; true when held (the session stops reading until `release`). */
  hold(session: ApiSession, api: ApiConnection | undefined): boolean {
    if (api === undefined || api.isClosed || api.sendBacklog <= UPSTREAM_HOLD_BYTES) return false;
    if (!this.#held.has(session))
      this.#held.set(
        session,
        session.onClose(() => this.#held.delete(session)),
      );
    this.#timer ??= setInterval(() => {
      if (api.isClosed || api.sendBacklog <= UPSTREAM_RESUME_BYTES) this.release();
    }, UPSTREAM_POLL_MS);
    return true;
  }

  /** Reads every held client again and stops watching the upstream. */
  release(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    const held = [...this.#held];
    this.#held.clear();
    for (const [session, off] of held) {
      off();
      session.releaseInput();
    }
  }
}
