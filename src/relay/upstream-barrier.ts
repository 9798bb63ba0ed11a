import type { ApiConnection } from '../connection/connection.js';
import { messageId } from '../frame/message-types.js';
import { PingRequest, PingResponse } from '../gen/api_pb.js';

const PING_REQUEST_ID = messageId(PingRequest);
const PING_RESPONSE_ID = messageId(PingResponse);
const EMPTY = new Uint8Array(0);

/**
 * Tells the relay when the proxy has handled what the relay sent it. The proxy answers a request at once when it
 * handles it (a connect: the slot report that reserves the slot, or connected=false, or nothing when it ignores it)
 * and answers pings in order, so once the answer to a ping sent after a request has arrived, every immediate answer
 * to that request has arrived too. The keep-alive's pings count in the order (ApiConnection.pingsSent).
 */
export class UpstreamBarrier {
  readonly #api: ApiConnection;
  /** Callbacks in the order of their pings, each with the ping count it waits for. */
  readonly #waiting: Array<{ pong: number; done: () => void }> = [];
  readonly #off: () => void;

  constructor(api: ApiConnection) {
    this.#api = api;
    this.#off = api.onRaw(PING_RESPONSE_ID, () => this.#flush());
  }

  /** Calls `done` once the proxy has handled everything sent before now; false (never called) when the session is gone. */
  after(done: () => void): boolean {
    const api = this.#api;
    if (api.isClosed) return false;
    try {
      api.sendRaw(PING_REQUEST_ID, EMPTY);
    } catch {
      return false;
    }
    this.#waiting.push({ pong: api.pingsSent, done });
    return true;
  }

  /** Stops listening; callbacks still waiting are dropped (their session is gone, and the ledger with it). */
  close(): void {
    this.#off();
    this.#waiting.length = 0;
  }

  #flush(): void {
    const received = this.#api.pongsReceived;
    while (this.#waiting.length > 0 && (this.#waiting[0]?.pong ?? Number.POSITIVE_INFINITY) <= received) {
      this.#waiting.shift()?.done();
    }
  }
}
