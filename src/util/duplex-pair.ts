import { Duplex } from 'node:stream';

/** One end of an in-memory connection: what is written to it is read from its peer, with backpressure. */
class PairEnd extends Duplex {
  peer: PairEnd | undefined;
  /** The write callback held back while the peer's readable side is full (called when the peer reads again). */
  #blocked: (() => void) | undefined;

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    if (peer === undefined || peer.destroyed) {
      callback(new Error('The other end of the stream is closed'));
      return;
    }
    if (peer.push(chunk)) callback();
    else peer.#blocked = () => callback();
  }

  override _read(): void {
    const blocked = this.#blocked;
    this.#blocked = undefined;
    blocked?.();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer?.push(null);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    this.peer = undefined;
    if (peer !== undefined && !peer.destroyed) {
      // As a socket: the other side sees the end of the stream, then the close.
      peer.push(null);
      peer.destroy();
    }
    callback(error);
  }
}

/** Two connected in-memory duplex streams (Node 20 has no `stream.duplexPair`, added in 22.6). */
export function duplexPair(): [Duplex, Duplex] {
  const a = new PairEnd();
  const b = new PairEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
