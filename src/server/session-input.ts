import type { Socket } from 'node:net';
import { concatBytes } from '../util/bytes.js';
import type { SessionBacklog } from './session-backlog.js';

/**
 * Frames one client gets decoded per turn of the event loop; the rest of its read waits for the next turn, after
 * the other clients' I/O. A well-behaved client sends a handful at a time (Home Assistant's set-up burst is about
 * ten); a flood of cheap requests with large answers would otherwise keep the loop for a whole 64 KiB read
 * (21,845 DeviceInfoRequests) while everyone else waits. Measured with six flooders on the relay (npm run
 * hostile): the well-behaved client's slowest DeviceInfo + GATT read round took 0.9-1.5 s at 256 frames per
 * turn and 0.27-0.41 s at 64.
 */
export const MAX_FRAMES_PER_TURN = 64;

/** What the input side of a session calls back into. */
export interface SessionInputHooks {
  /** Decodes what it can of `chunk` (the codec's push); returns the bytes used. */
  decode(chunk: Uint8Array): number;
  /** Decoding threw: the session drops the client. */
  fail(error: unknown): void;
  /** True once the session ended (decoding may end it). */
  closed(): boolean;
}

/**
 * A client's input, read in turns: at most MAX_FRAMES_PER_TURN frames per turn, none while its backlog is full or
 * while it is held (`hold()`: what its requests go to is behind). What is left of a read waits here (the socket
 * paused meanwhile), so at most one read is ever held.
 */
export class SessionInput {
  readonly #socket: Socket;
  readonly #backlog: SessionBacklog;
  readonly #hooks: SessionInputHooks;
  #held: Uint8Array | undefined;
  #holding = false;
  #turnFrames = 0;
  #nextTurn: NodeJS.Immediate | undefined;

  constructor(socket: Socket, backlog: SessionBacklog, hooks: SessionInputHooks) {
    this.#socket = socket;
    this.#backlog = backlog;
    this.#hooks = hooks;
  }

  /** Bytes of a read not decoded yet. */
  get heldBytes(): number {
    return this.#held?.length ?? 0;
  }

  /** True while `hold()` keeps the client's input unread. */
  get holding(): boolean {
    return this.#holding;
  }

  /** Asked by the decoder after each frame: true ends the turn there (a closed session decodes nothing more). */
  readonly yieldWhen = (): boolean =>
    ++this.#turnFrames >= MAX_FRAMES_PER_TURN || this.#holding || this.#backlog.full || this.#hooks.closed();

  /** Stops reading the client (from the end of the frame being handled) until `release()`. */
  hold(): void {
    if (this.#hooks.closed()) return;
    this.#holding = true;
    this.#socket.pause();
  }

  /** Reads the client again after `hold()` (unless its backlog keeps it paused). */
  release(): void {
    if (!this.#holding) return;
    this.#holding = false;
    // A backlog that keeps the client paused calls resume() itself once it is down.
    if (!this.#backlog.paused) this.resume();
  }

  /** A chunk the socket read. */
  push(chunk: Uint8Array): void {
    // A paused socket may still hand over what it had read: keep it behind what is held.
    if (this.#held !== undefined) this.#held = concatBytes([this.#held, chunk]);
    else if (this.#holding) this.#held = chunk;
    else this.#decode(chunk);
  }

  /** Decodes what was held, then reads the client again (the backlog is down, or the next turn came). */
  resume(): void {
    if (this.#hooks.closed() || this.#holding) return;
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined) this.#decode(held);
    if (!this.#hooks.closed() && !this.#holding && !this.#backlog.paused && this.#nextTurn === undefined) this.#socket.resume();
  }

  /** The session ended. */
  stop(): void {
    clearImmediate(this.#nextTurn);
    this.#nextTurn = undefined;
    this.#held = undefined;
  }

  #decode(chunk: Uint8Array): void {
    const socket = this.#socket;
    this.#turnFrames = 0;
    // Everything answered to one chunk leaves in one write, as the firmware batches its replies per loop.
    socket.cork();
    try {
      const used = this.#hooks.decode(chunk);
      if (used < chunk.length && !this.#hooks.closed()) this.#held = chunk.subarray(used);
    } catch (error) {
      this.#hooks.fail(error);
      return;
    } finally {
      socket.uncork();
    }
    if (this.#hooks.closed()) return;
    // While the client's replies pile up it is not read until they are down again (the backlog calls resume()).
    if (this.#backlog.full) this.#backlog.pause();
    else if (this.#holding) socket.pause();
    else if (this.#held !== undefined) {
      socket.pause();
      this.#nextTurn = setImmediate(() => {
        this.#nextTurn = undefined;
        this.resume();
      });
    }
  }
}
