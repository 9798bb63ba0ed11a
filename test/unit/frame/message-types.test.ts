import { describe, expect, it } from 'vitest';
import { allMessageInfos, messageId, messageInfoById, messageInfoByName } from '../../../src/frame/message-types.js';
import { BluetoothLERawAdvertisementsResponse, HelloRequest } from '../../../src/gen/api_pb.js';
import { readFixtureJson } from '../../helpers/fixtures.js';

/** fixtures/data/message-ids.json: the upstream schema's ids, names, directions and gates, one entry per message. */
interface MessageIdRow {
  id: number;
  name: string;
  direction: 'client → device' | 'device → client' | 'both ways';
  ifdef: string | null;
}

describe('frame/message-types', () => {
  it('message-types - the schema options give all 150 ids, dense, each with a direction', () => {
    const all = allMessageInfos();
    expect(all).toHaveLength(150);
    expect(all.map((m) => m.id)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
    expect(messageInfoByName('HelloRequest')).toMatchObject({ id: 1, direction: 'client' });
    expect(messageInfoById(93)).toMatchObject({
      name: 'BluetoothLERawAdvertisementsResponse',
      direction: 'device',
      ifdef: 'USE_BLUETOOTH_PROXY',
    });
    expect(messageInfoById(7)?.direction).toBe('both');
    expect(messageInfoById(151)).toBeUndefined();
    expect(messageId(HelloRequest)).toBe(1);
    expect(messageId(BluetoothLERawAdvertisementsResponse)).toBe(93);
  });

  it('message-types - agrees with fixtures/data/message-ids.json entry by entry (id, name, direction, firmware gate)', () => {
    const rows = readFixtureJson<{ messages: MessageIdRow[] }>('data/message-ids.json').messages;
    expect(rows.map((row) => row.id)).toEqual(allMessageInfos().map((info) => info.id));
    const directions = { 'client → device': 'client', 'device → client': 'device', 'both ways': 'both' } as const;
    for (const row of rows) {
      expect(messageInfoById(row.id), `id ${row.id}`).toMatchObject({
        name: row.name,
        direction: directions[row.direction],
        ifdef: row.ifdef ?? undefined,
      });
    }
  });
});
