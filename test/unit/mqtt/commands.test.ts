import { describe, expect, it } from 'vitest';
import { type CommandDecodeError, InvalidArgumentError } from '../../../src/errors.js';
import { AllowList, TokenBucket } from '../../../src/mqtt/command-policy.js';
import { decodeValue, encodeValue, parseCommand } from '../../../src/mqtt/commands.js';
import { PacketSizeGuard } from '../../../src/mqtt/packet-size-guard.js';
import { gatewayTopics } from '../../../src/mqtt/topics.js';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('mqtt commands', () => {
  it("commands - OpenMQTTGateway's write and read shapes decode once into typed commands", () => {
    const write = parseCommand(
      json({
        ble_write_address: 'aa:bb:cc:dd:ee:ff',
        ble_write_service: 'cba20d00-224d-11e6-9fb8-0002a5d5c51b',
        ble_write_char: 'cba20002-224d-11e6-9fb8-0002a5d5c51b',
        ble_write_value: '570100',
        value_type: 'hex',
        ttl: 4,
        immediate: true,
        mac_type: 1,
      }),
    );
    expect(write).toMatchObject({ kind: 'write', mac: 'AA:BB:CC:DD:EE:FF', valueType: 'HEX', attempts: 4, valueText: '570100' });
    expect(write.kind === 'write' && [...write.value]).toEqual([0x57, 0x01, 0x00]);
    const read = parseCommand(json({ ble_read_address: 'AA:BB:CC:DD:EE:FF', ble_read_service: '180f', ble_read_char: '0x2A19' }));
    expect(read).toMatchObject({
      kind: 'read',
      valueType: 'STRING',
      characteristicUuid: '00002a19-0000-1000-8000-00805f9b34fb',
      attempts: undefined,
      // As OpenMQTTGateway answers (NimBLEUUID::toString keeps the width asked for).
      service: '0x180f',
      characteristic: '0x2a19',
    });
    expect(
      parseCommand(
        json({
          ble_read_address: 'aa:bb:cc:dd:ee:ff',
          ble_read_service: 'CBA20D00-224D-11E6-9FB8-0002A5D5C51B',
          ble_read_char: '0000180F0000' + '10008000' + '00805f9b34fb',
        }),
      ),
    ).toMatchObject({
      mac: 'AA:BB:CC:DD:EE:FF',
      service: 'cba20d00-224d-11e6-9fb8-0002a5d5c51b',
      characteristic: '0000180f-0000-1000-8000-00805f9b34fb',
    });
    expect(
      parseCommand(
        json({ ble_notify_address: 'AA:BB:CC:DD:EE:FF', ble_notify_service: '180f', ble_notify_char: '2a19', ble_notify: false }),
      ),
    ).toMatchObject({ kind: 'notify', stop: true });
  });

  it('commands - bad commands fail with the device named when the address decoded', () => {
    const bad = (value: unknown) => {
      try {
        parseCommand(typeof value === 'string' ? Buffer.from(value) : json(value));
      } catch (error) {
        return error as CommandDecodeError;
      }
      throw new Error('no error');
    };
    expect(bad('{').mac).toBeUndefined();
    expect(bad([1]).message).toContain('JSON object');
    expect(bad({ id: 'AA:BB:CC:DD:EE:FF' }).message).toContain('names no device');
    expect(bad({ ble_read_address: 'nope', ble_read_service: '180f', ble_read_char: '2a19' }).mac).toBeUndefined();
    const noChar = bad({ ble_read_address: 'AA:BB:CC:DD:EE:FF', ble_read_service: '180f' });
    expect(noChar).toBeInstanceOf(InvalidArgumentError);
    expect(noChar.mac).toBe('AA:BB:CC:DD:EE:FF');
    expect(
      bad({
        ble_write_address: 'AA:BB:CC:DD:EE:FF',
        ble_write_service: '180f',
        ble_write_char: '2a19',
        ble_write_value: 'abc',
        value_type: 'HEX',
      }).message,
    ).toContain('even number');
    expect(bad({ ble_read_address: 'AA:BB:CC:DD:EE:FF', ble_read_service: '180f', ble_read_char: '2a19', ttl: 99 }).message).toContain(
      'ttl',
    );
    expect(
      bad({ ble_read_address: 'AA:BB:CC:DD:EE:FF', ble_read_service: '180f', ble_read_char: '2a19', value_type: 'BLOB' }).message,
    ).toContain('value_type');
    expect(bad('x'.repeat(5000)).message).toContain('limit');
  });

  it('commands - values are encoded and shown as OpenMQTTGateway does on the ESP32', () => {
    expect([...encodeValue('hi', 'STRING')]).toEqual([0x68, 0x69]);
    expect([...encodeValue('0x10', 'INT')]).toEqual([0x10, 0, 0, 0]);
    expect([...encodeValue(-2, 'INT')]).toEqual([0xfe, 0xff, 0xff, 0xff]);
    expect(encodeValue(1.5, 'FLOAT').length).toBe(8);
    expect(() => encodeValue('2^40', 'INT')).toThrow(InvalidArgumentError);
    expect(decodeValue(Uint8Array.of(0x68, 0x69), 'STRING')).toBe('hi');
    expect(decodeValue(Uint8Array.of(0xde, 0xad), 'HEX')).toBe('dead');
    expect(decodeValue(Uint8Array.of(0xfe, 0xff, 0xff, 0xff), 'INT')).toBe(-2);
    expect(decodeValue(Uint8Array.of(0xff), 'INT')).toBe(-1);
    expect(decodeValue(encodeValue(2.25, 'FLOAT'), 'FLOAT')).toBe(2.25);
  });

  it('command policy - nothing allowed by default, writes only by MAC, a token bucket for the rate', () => {
    expect(new AllowList().empty).toBe(true);
    const allow = new AllowList(['*'], ['AA:BB:CC:DD:EE:FF']);
    expect(allow.canRead(1)).toBe(true);
    expect(allow.canWrite(0xaabbccddeeff)).toBe(true);
    expect(allow.canWrite(1)).toBe(false);
    expect(new AllowList([], ['AA:BB:CC:DD:EE:FF']).canRead(0xaabbccddeeff)).toBe(true);
    expect(() => new AllowList([], ['*'])).toThrow('MAC addresses only');
    expect(() => new AllowList(['kitchen'])).toThrow(InvalidArgumentError);
    const bucket = new TokenBucket(2, 3, 0);
    expect([bucket.take(0), bucket.take(0), bucket.take(0), bucket.take(0)]).toEqual([true, true, true, false]);
    expect(bucket.take(499)).toBe(false);
    expect(bucket.take(500)).toBe(true);
  });

  it('topics - the layout of one gateway; names that would be wildcards are refused or made safe', () => {
    const t = gatewayTopics('home', 'OpenMQTTGateway');
    expect(t.device('C0:FF:EE:00:00:01')).toBe('home/OpenMQTTGateway/BTtoMQTT/C0FFEE000001');
    expect([t.commands, t.lwt, t.undecoded, t.room('kitchen')]).toEqual([
      'home/OpenMQTTGateway/commands/MQTTtoBT',
      'home/OpenMQTTGateway/LWT',
      'home/OpenMQTTGateway/BTtoMQTT/undecoded',
      'home/presence/kitchen',
    ]);
    expect(t.proxy('a/b+c', 'slots')).toBe('home/OpenMQTTGateway/proxies/a_b_c/slots');
    expect(() => gatewayTopics('home', 'a/b')).toThrow(InvalidArgumentError);
    expect(() => gatewayTopics('home/#', 'gw')).toThrow(InvalidArgumentError);
    expect(gatewayTopics('', 'gw').lwt).toBe('gw/LWT');
  });

  it('packet size guard - reads fixed headers byte by byte and refuses a declared length over the limit', () => {
    const guard = new PacketSizeGuard(100);
    const packet = Buffer.concat([Buffer.from([0x30, 0x05]), Buffer.alloc(5), Buffer.from([0xc0, 0x00])]);
    for (const byte of packet) guard.push(Uint8Array.of(byte));
    guard.push(packet);
    expect(() => new PacketSizeGuard(100).push(Uint8Array.of(0x30, 0xe5, 0x00))).toThrow('exceeds the limit');
    expect(() => new PacketSizeGuard(1 << 30).push(Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0xff, 0x01))).toThrow();
  });
});
