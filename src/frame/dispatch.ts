import { binaryReadOptions, binaryWriteOptions, type MessageType } from '@protobuf-ts/runtime';
import { FrameError } from '../errors.js';
import { type MessageTypeInfo, messageId, messageInfoById } from './message-types.js';

/**
 * Unknown fields are skipped on read and never written: a message handed on is encoded from the fields the
 * schema knows, so nothing a peer slipped in beside them travels further. The options are resolved once
 * (protobuf-ts merges partial options into a new object on every call otherwise).
 */
const READ = binaryReadOptions({ readUnknownField: false });
const WRITE = binaryWriteOptions({ writeUnknownFields: false });

/** Receives one decoded message of its type and the context the dispatch was called with (a session, a client). */
export type MessageHandler<T, C> = (message: T, context: C) => void;

/**
 * Decodes `payload` as `type` the way every protobuf decoder does (a repeated scalar field's last occurrence
 * wins, fields of other numbers are skipped); throws FrameError `ESPAPI_ERR_DECODE` when it does not decode.
 * `bytes` fields are views into `payload`: copy what must outlive it.
 */
export function decodeMessage<T extends object>(type: MessageType<T>, payload: Uint8Array, source?: string): T {
  try {
    return type.internalBinaryRead(READ.readerFactory(payload), payload.byteLength, READ);
  } catch (error) {
    const from = source === undefined ? '' : ` from ${source}`;
    throw new FrameError(`Cannot decode ${type.typeName} (${payload.byteLength} bytes)${from}`, {
      cause: error,
      code: 'ESPAPI_ERR_DECODE',
    });
  }
}

/** A message decoded through the message table: its row and the generated message. */
export interface DecodedMessage {
  readonly info: MessageTypeInfo;
  readonly message: object;
}

/** Decodes a payload by wire id through the message table; undefined for ids the schema does not know. */
export function decodeById(id: number, payload: Uint8Array): DecodedMessage | undefined {
  const info = messageInfoById(id);
  return info === undefined ? undefined : { info, message: decodeMessage(info.type, payload) };
}

/** Encodes a message of `type` from its fields (unknown fields are never written). */
export function encodeMessage<T extends object>(type: MessageType<T>, message: T): Uint8Array {
  return type.internalBinaryWrite(message, WRITE.writerFactory(), WRITE).finish();
}

/**
 * A handler per message type over the one message table: `dispatch(id, payload, context)` decodes the payload
 * into the generated type registered for `id` and calls its handler with the typed message. Ids without a
 * handler are not decoded at all. For any side that answers messages: the relay, the simulated proxy, a client.
 */
export class MessageDispatcher<C> {
  // Indexed by wire id: one array read per dispatch.
  readonly #entries: Array<{ type: MessageType<object>; handler: MessageHandler<object, C> } | undefined> = [];

  readonly #source: string | undefined;

  /** `source` names the peer in decode errors (e.g. a proxy's label). */
  constructor(source?: string) {
    this.#source = source;
  }

  /** Registers the handler of one message type (replacing an earlier one); the type must have a wire id. */
  on<T extends object>(type: MessageType<T>, handler: MessageHandler<T, C>): this {
    this.#entries[messageId(type)] = { type, handler: handler as MessageHandler<object, C> };
    return this;
  }

  /** The wire ids that have a handler, ascending (for a source that hands payloads by id, to listen to each). */
  ids(): number[] {
    const ids: number[] = [];
    this.#entries.forEach((entry, id) => {
      if (entry !== undefined) ids.push(id);
    });
    return ids;
  }

  /** True when a handler is registered for wire id `id`. */
  handles(id: number): boolean {
    return this.#entries[id] !== undefined;
  }

  /**
   * Decodes `payload` and runs the handler registered for `id`; false when there is none (nothing decoded).
   * A payload that does not decode throws FrameError `ESPAPI_ERR_DECODE` and reaches no handler.
   */
  dispatch(id: number, payload: Uint8Array, context: C): boolean {
    const entry = this.#entries[id];
    if (entry === undefined) return false;
    entry.handler(decodeMessage(entry.type, payload, this.#source), context);
    return true;
  }

  /**
   * Runs the handler registered for a message already decoded through the table (one decode serving several
   * readers, e.g. a recorder that also keeps the whole message); false when there is none.
   */
  dispatchDecoded(decoded: DecodedMessage, context: C): boolean {
    const entry = this.#entries[decoded.info.id];
    if (entry?.type !== decoded.info.type) return false;
    entry.handler(decoded.message, context);
    return true;
  }
}
