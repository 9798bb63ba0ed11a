import { MessageType } from '@protobuf-ts/runtime';
import * as schema from '../gen/api_pb.js';

/** Who may send a message, from the schema's `option (source)`. */
export type MessageDirection = 'client' | 'device' | 'both';

/** One row of the id table: wire id, protobuf-ts type and direction. */
export interface MessageTypeInfo {
  readonly id: number;
  readonly name: string;
  // biome-ignore lint/suspicious/noExplicitAny: the table holds every message type of the schema
  readonly type: MessageType<any>;
  readonly direction: MessageDirection;
  /** Firmware feature gate (`option (ifdef)`), when the schema names one. */
  readonly ifdef: string | undefined;
}

const DIRECTIONS: Record<string, MessageDirection> = {
  SOURCE_CLIENT: 'client',
  SOURCE_SERVER: 'device',
  SOURCE_BOTH: 'both',
};

function buildTable(): { byId: Array<MessageTypeInfo | undefined>; byName: Map<string, MessageTypeInfo> } {
  const byId: Array<MessageTypeInfo | undefined> = [];
  const byName = new Map<string, MessageTypeInfo>();
  for (const value of Object.values(schema)) {
    if (!(value instanceof MessageType)) continue;
    const options = value.options as { id?: number; source?: string; ifdef?: string };
    if (typeof options.id !== 'number' || options.id === 0) continue;
    const info: MessageTypeInfo = {
      id: options.id,
      name: value.typeName,
      type: value,
      direction: DIRECTIONS[options.source ?? 'SOURCE_BOTH'] ?? 'both',
      ifdef: options.ifdef,
    };
    if (byId[info.id] !== undefined) throw new Error(`Schema defines message id ${info.id} twice`);
    byId[info.id] = info;
    byName.set(info.name, info);
  }
  return { byId, byName };
}

const TABLE = buildTable();

/** Looks up a message by wire id; undefined for ids the schema does not know (skip those). */
export function messageInfoById(id: number): MessageTypeInfo | undefined {
  return TABLE.byId[id];
}

/** Looks up a message by its schema name (e.g. `HelloRequest`). */
export function messageInfoByName(name: string): MessageTypeInfo | undefined {
  return TABLE.byName.get(name);
}

/** Every message of the schema, ordered by id. */
export function allMessageInfos(): MessageTypeInfo[] {
  return TABLE.byId.filter((info): info is MessageTypeInfo => info !== undefined);
}

/** Wire id of a protobuf-ts message type; throws for types without an id (sub-messages). */
// biome-ignore lint/suspicious/noExplicitAny: accepts any generated message type
export function messageId(type: MessageType<any>): number {
  const info = TABLE.byName.get(type.typeName);
  if (info === undefined) throw new Error(`${type.typeName} has no message id`);
  return info.id;
}
