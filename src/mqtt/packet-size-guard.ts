import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { FrameTooLargeError } from '../errors.js';

/**
 * Reads the fixed headers of an MQTT byte stream (type byte, then the remaining length as a varint of up to four
 * bytes) and rejects a packet that declares more than `limit` bytes before any of its body is buffered: the broker's
 * parser would otherwise collect up to 256 MB for one packet of an unauthenticated client.
 */
export class PacketSizeGuard {
  readonly limit: number;
  /** Body bytes of the current packet still to skip. */
  #skip = 0;
  /** Header bytes read of the current packet (0: expecting a type byte). */
  #headerBytes = 0;
  #length = 0;
  #multiplier = 1;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Checks one chunk; throws FrameTooLargeError (or a FrameTooLargeError for a malformed length) on a bad header. */
  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, chunk.length - i);
        this.#skip -= take;
        i += take;
        continue;
      }
      const byte = chunk[i++]!;
      if (this.#headerBytes === 0) {
        this.#headerBytes = 1;
        this.#length = 0;
        this.#multiplier = 1;
        continue;
      }
      this.#length += (byte & 0x7f) * this.#multiplier;
      this.#multiplier *= 128;
      this.#headerBytes++;
      if (this.#length > this.limit) throw new FrameTooLargeError(this.#length, this.limit);
      if ((byte & 0x80) !== 0) {
        // MQTT allows four length bytes; a fifth continuation is a malformed packet.
        if (this.#headerBytes > 4) throw new FrameTooLargeError(Number.POSITIVE_INFINITY, this.limit);
        continue;
      }
      this.#skip = this.#length;
      this.#headerBytes = 0;
    }
  }
}

/** A Duplex over `socket` whose readable side passes only what `guard` accepts; a violation destroys the socket. */
export function guardedConnection(socket: Socket, guard: PacketSizeGuard): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      if (socket.destroyed) {
        callback();
        return;
      }
      socket.write(chunk, (error) => callback(error ?? null));
    },
    final(callback) {
      socket.end(() => callback());
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  socket.on('data', (chunk: Buffer) => {
    try {
      guard.push(chunk);
    } catch (error) {
      duplex.destroy(error as Error);
      return;
    }
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('error', (error) => duplex.destroy(error));
  socket.on('close', () => duplex.destroy());
  return duplex;
}
