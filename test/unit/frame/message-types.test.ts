import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { allMessageInfos, messageId, messageInfoById, messageInfoByName } from '../../../src/frame/message-types.js';
import { BluetoothLERawAdvertisementsResponse, HelloRequest } from '../../../src/gen/api_pb.js';

const SPEC = new URL('../../../../shared/spec/message-ids.md', import.meta.url);

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

  it.runIf(existsSync(SPEC))('message-types - agrees with shared/spec/message-ids.md row by row', () => {
    const rows = readFileSync(SPEC, 'utf8')
      .split('\n')
      .map((line) => /^\|\s*(\d+)\s*\|\s*(\w+)\s*\|\s*([^|]+?)\s*\|/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null);
    expect(rows.length).toBe(150);
    const directions: Record<string, string> = { 'client → device': 'client', 'device → client': 'device', 'both ways': 'both' };
    for (const [, id, name, direction] of rows) {
      expect(messageInfoById(Number(id)), `id ${id}`).toMatchObject({ name, direction: directions[direction!] });
    }
  });
});
