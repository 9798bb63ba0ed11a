import type { Socket } from 'node:net';
import { InvalidArgumentError } from '../errors.js';

/**
 * Bounds on what waits to be written to one client, in bytes (the socket's queue plus writes a fault delays).
 * Each level has its policy: droppable traffic goes first, then the client is no longer read, then it is closed.
 */
export interface BacklogLimits {
  /** Above this, droppable traffic (advertisements) is skipped and counted; nothing else ever is. */
  dropAt: number;
  /** Reading the client's requests resumes at or below this. */
  resumeAt: number;
  /** Above this, the client's requests are no longer read (its replies pile up: it does not read them). */
  pauseAt: number;
  /** Above this, the session is closed ('backlog'): unsolicited traffic the client does not read cannot be held forever. */
  closeAt: number;
}

/**
 * Defaults. 256 KiB of advertisements is about 190 full batches, seconds of a busy proxy, beyond which reports
 * are stale anyway (the relay's limit since its first release). Requests are read again at 384 KiB, above the
 * level advertisements keep a slow reader at, so its requests are never starved by its own advertisements.
 * Reading stops at 512 KiB: one request's reply on top of that is a few KiB at most. Only unsolicited traffic
 * (notifications, slot reports, pings) can then grow the backlog, and at 1 MiB the session is closed, as the
 * firmware closes a client whose send backlog is full. Per session that bounds what is queued for the client at
 * 1 MiB plus one write.
 */
export const DEFAULT_BACKLOG_LIMITS: Readonly<BacklogLimits> = {
  dropAt: 256 * 1024,
  resumeAt: 384 * 1024,
  pauseAt: 512 * 1024,
  closeAt: 1024 * 1024,
};

/**
 * How often a paused session checks whether its backlog went down to `resumeAt`. Node only reports a completely
 * drained socket ('drain'), which a client that reads slowly while advertisements keep coming never reaches.
 */
const RESUME_POLL_MS = 20;

/** Fills in and checks backlog limits (each level at or above the one before). */
export function backlogLimits(limits: Partial<BacklogLimits> = {}): BacklogLimits {
  const merged = { ...DEFAULT_BACKLOG_LIMITS, ...limits };
  const { dropAt, resumeAt, pauseAt, closeAt } = merged;
  if (!(dropAt >= 0 && resumeAt >= dropAt && pauseAt >= resumeAt && closeAt >= pauseAt)) {
    throw new InvalidArgumentError(
      `Backlog limits must satisfy 0 <= dropAt <= resumeAt <= pauseAt <= closeAt, got ${JSON.stringify(merged)}`,
    );
  }
  return merged;
}

/** What waits to be written to one client, and the backpressure that follows from it. */
export class SessionBacklog {
  readonly limits: BacklogLimits;
  /** Bytes a fault (`replyDelayMs`) holds before handing them to the socket. */
  delayed = 0;
  /** Droppable items (advertisement reports) skipped because the client was behind. */
  dropped = 0;
  readonly #socket: Socket;
  readonly #onResume: () => void;
  #timer: NodeJS.Timeout | undefined;
  readonly #check = (): void => {
    if (this.#timer === undefined || this.bytes > this.limits.resumeAt) return;
    this.#stopWatching();
    this.#onResume();
  };

  constructor(socket: Socket, limits: BacklogLimits, onResume: () => void) {
    this.#socket = socket;
    this.limits = limits;
    this.#onResume = onResume;
  }

  /** Bytes waiting to be written to the client. */
  get bytes(): number {
    return this.#socket.writableLength + this.delayed;
  }

  /** True while the client's requests are not read. */
  get paused(): boolean {
    return this.#timer !== undefined;
  }

  /** True when no more requests should be read now. */
  get full(): boolean {
    return this.bytes > this.limits.pauseAt;
  }

  /** True when the session must be closed. */
  get overflowing(): boolean {
    return this.bytes > this.limits.closeAt;
  }

  /** True when droppable traffic must be skipped now; counts `items` as dropped then. */
  shed(items: number): boolean {
    if (this.bytes <= this.limits.dropAt) return false;
    this.dropped += items;
    return true;
  }

  /** Stops reading the client until the backlog is down to `resumeAt`; then `onResume` runs (it resumes the socket). */
  pause(): void {
    if (this.#timer !== undefined) return;
    this.#socket.pause();
    this.#timer = setInterval(this.#check, RESUME_POLL_MS);
    this.#socket.on('drain', this.#check);
  }

  /** Stops watching (the session closed). */
  stop(): void {
    this.#stopWatching();
  }

  #stopWatching(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#socket.off('drain', this.#check);
  }
}
