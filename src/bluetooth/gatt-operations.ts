import { type CallOptions, pendingReply, withDeadline } from '../util/abort.js';
import { BLE_OPERATION_TIMEOUT_MS } from './timeouts.js';

/** A handle as `0x002a`, for messages. */
export function formatHandle(handle: number): string {
  return `0x${handle.toString(16).padStart(4, '0')}`;
}

/** Which answer acknowledges an operation: the read answer, the write answer, or the notify registration's. */
export type GattReply = 'read' | 'write' | 'notify';

interface PendingOp {
  readonly expect: GattReply;
  resolve(data: Uint8Array): void;
  reject(error: Error): void;
}

/**
 * The acknowledged GATT operations of one link. The proxy answers by handle, so each handle has at most one
 * operation in flight and later ones queue behind it; different handles run concurrently.
 */
export class GattOperations {
  readonly #pending = new Map<number, PendingOp>();
  readonly #locks = new Map<number, Promise<unknown>>();
  /** ` on <mac> via <proxy>`, for deadline messages. */
  readonly #where: () => string;
  /** Throws when the link is closed. */
  readonly #assertOpen: () => void;

  constructor(where: () => string, assertOpen: () => void) {
    this.#where = where;
    this.#assertOpen = assertOpen;
  }

  /** Runs `send` once the handle is free and resolves with the answer's data (BLE_OPERATION_TIMEOUT_MS unless `options.timeout`). */
  run(handle: number, expect: GattReply, what: string, options: CallOptions, send: () => void): Promise<Uint8Array> {
    const previous = this.#locks.get(handle) ?? Promise.resolve();
    const run = previous.then(
      () => this.#run(handle, expect, what, options, send),
      () => this.#run(handle, expect, what, options, send),
    );
    const tail = run.catch(() => {});
    this.#locks.set(handle, tail);
    void tail.then(() => {
      if (this.#locks.get(handle) === tail) this.#locks.delete(handle);
    });
    return run;
  }

  /** An answer of kind `expect` for `handle`; a stray one (e.g. to a write without response) is ignored. */
  settle(handle: number, expect: GattReply, data: Uint8Array): void {
    const pending = this.#pending.get(handle);
    if (pending === undefined || pending.expect !== expect) return;
    this.#pending.delete(handle);
    pending.resolve(data);
  }

  /** Fails the operation in flight on `handle`; false when there is none. */
  fail(handle: number, error: Error): boolean {
    const pending = this.#pending.get(handle);
    if (pending === undefined) return false;
    this.#pending.delete(handle);
    pending.reject(error);
    return true;
  }

  /** Fails every operation in flight (the link ended). */
  failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }

  #run(handle: number, expect: GattReply, what: string, options: CallOptions, send: () => void): Promise<Uint8Array> {
    return withDeadline(`${what}${this.#where()}`, options, BLE_OPERATION_TIMEOUT_MS, (signal) => {
      this.#assertOpen();
      let op: PendingOp | undefined;
      return pendingReply<Uint8Array>(
        signal,
        (settle) => {
          op = { expect, resolve: settle.resolve, reject: settle.reject };
          this.#pending.set(handle, op);
          send();
        },
        () => {
          if (this.#pending.get(handle) === op) this.#pending.delete(handle);
        },
      );
    });
  }
}
