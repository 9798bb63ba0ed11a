import { describe, expect, it } from 'vitest';
import { FrameError } from '../../../src/errors.js';
import { decodeById, decodeMessage, encodeMessage, MessageDispatcher } from '../../../src/frame/dispatch.js';
import {
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothGATTReadRequest,
  BluetoothGATTWriteRequest,
  PingRequest,
} from '../../../src/gen/api_pb.js';
import { lengthDelimited, varint, varintField } from '../../helpers/protobuf-wire.js';

const OWN = 0xc0ffee000001;
const VICTIM = 0xc0ffee000100;

describe('frame/dispatch', () => {
  it('dispatch - decodes by wire id into the generated type and hands the typed message and the context to its handler', () => {
    const seen: Array<[string, number, string]> = [];
    const dispatcher = new MessageDispatcher<string>()
      .on(BluetoothGATTReadRequest, (m, who) => seen.push(['read', m.address, who]))
      .on(BluetoothGATTWriteRequest, (m, who) => seen.push([`write ${m.data.length}`, m.address, who]));
    expect(dispatcher.handles(73)).toBe(true);
    expect(dispatcher.handles(75)).toBe(true);
    expect(dispatcher.handles(68)).toBe(false);
    expect(dispatcher.dispatch(73, BluetoothGATTReadRequest.toBinary({ address: OWN, handle: 12 }), 'a')).toBe(true);
    const write = BluetoothGATTWriteRequest.create({ address: OWN, handle: 3, response: true, data: Uint8Array.of(1, 2) });
    expect(dispatcher.dispatch(75, BluetoothGATTWriteRequest.toBinary(write), 'b')).toBe(true);
    expect(seen).toEqual([
      ['read', OWN, 'a'],
      ['write 2', OWN, 'b'],
    ]);
  });

  it('dispatch - an id without a handler is not decoded at all: false, even for bytes that would not decode', () => {
    const dispatcher = new MessageDispatcher<void>().on(PingRequest, () => {});
    expect(dispatcher.dispatch(68, Uint8Array.of(0x08, 0xff), undefined)).toBe(false);
    expect(dispatcher.dispatch(9999, new Uint8Array(0), undefined)).toBe(false);
  });

  it('dispatch - a repeated scalar field decodes as its last occurrence, as the proxy decodes it', () => {
    // A write whose address field comes twice: [own, victim]. A reader of the first field would see `own`.
    const payload = Uint8Array.from([...varintField(1, OWN), ...varintField(2, 3), ...lengthDelimited(4, [1]), ...varintField(1, VICTIM)]);
    const message = decodeMessage(BluetoothGATTWriteRequest, payload);
    expect(message.address).toBe(VICTIM);
    // Encoded again, the address is written once: what was checked is exactly what the next decoder sees.
    const again = encodeMessage(BluetoothGATTWriteRequest, message);
    expect(BluetoothGATTWriteRequest.fromBinary(again)).toEqual(message);
    expect([...again]).toEqual([...varintField(1, VICTIM), ...varintField(2, 3), ...lengthDelimited(4, [1])]);
  });

  it('dispatch - unknown fields are dropped: the encoding carries only what the schema knows', () => {
    const known = BluetoothDeviceRequest.toBinary(
      BluetoothDeviceRequest.create({ address: OWN, requestType: BluetoothDeviceRequestType.DISCONNECT }),
    );
    const payload = Uint8Array.from([...known, ...varintField(9, 77), ...lengthDelimited(15, [0xde, 0xad])]);
    const message = decodeMessage(BluetoothDeviceRequest, payload);
    expect([...encodeMessage(BluetoothDeviceRequest, message)]).toEqual([...known]);
  });

  it('dispatch - bytes that do not decode are FrameError DECODE and reach no handler', () => {
    let calls = 0;
    const dispatcher = new MessageDispatcher<void>().on(BluetoothGATTReadRequest, () => calls++);
    const bad = [
      Uint8Array.of(0x08), // truncated varint
      Uint8Array.of(0x0a, 0x05, 0x01), // length beyond the payload
      Uint8Array.of(0x08, ...varint(2 ** 53 + 2)), // an address no double holds exactly
      Uint8Array.of(0x00, 0x01), // field number 0
    ];
    for (const payload of bad) {
      const error = (() => {
        try {
          dispatcher.dispatch(73, payload, undefined);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(FrameError);
      expect(error).toMatchObject({ code: 'ESPAPI_ERR_DECODE' });
      expect((error as Error).message).toContain('BluetoothGATTReadRequest');
    }
    expect(calls).toBe(0);
  });

  it('dispatch - decodeById goes through the message table; unknown ids give undefined', () => {
    const decoded = decodeById(73, BluetoothGATTReadRequest.toBinary({ address: OWN, handle: 5 }));
    expect(decoded?.info.name).toBe('BluetoothGATTReadRequest');
    expect(decoded?.message).toEqual(BluetoothGATTReadRequest.create({ address: OWN, handle: 5 }));
    expect(decodeById(151, new Uint8Array(0))).toBeUndefined();
  });

  it('dispatch - dispatchDecoded hands a message decodeById decoded to its handler; false without one', () => {
    const seen: Array<[number, string]> = [];
    const dispatcher = new MessageDispatcher<string>().on(BluetoothGATTReadRequest, (m, who) => seen.push([m.handle, who]));
    const read = decodeById(73, BluetoothGATTReadRequest.toBinary({ address: OWN, handle: 7 }));
    const write = decodeById(75, BluetoothGATTWriteRequest.toBinary(BluetoothGATTWriteRequest.create({ address: OWN, handle: 8 })));
    expect(dispatcher.dispatchDecoded(read!, 'a')).toBe(true);
    expect(dispatcher.dispatchDecoded(write!, 'b')).toBe(false);
    expect(seen).toEqual([[7, 'a']]);
  });
  it('dispatch - a decode error names the peer the dispatcher was given', () => {
    const dispatcher = new MessageDispatcher<void>('proxy-a (127.0.0.1:6053)').on(BluetoothGATTReadRequest, () => {});
    // A length-delimited field whose length runs past the payload: no decoder can read it.
    expect(() => dispatcher.dispatch(73, new Uint8Array([0x0a, 0x05, 0x01]), undefined)).toThrow(
      /Cannot decode .*BluetoothGATTReadRequest \(3 bytes\) from proxy-a \(127\.0\.0\.1:6053\)/,
    );
  });
});
