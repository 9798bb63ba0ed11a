import { afterEach, describe, expect, it } from 'vitest';
import { BleDisconnectedError, InvalidArgumentError } from '../../../src/errors.js';
import { type PeripheralProfile, parseProfile } from '../../../src/fixture-server/profile.js';
import { type LinkEvent, SimulatedPeripheral, type Subscription } from '../../../src/fixture-server/simulated-peripheral.js';

// A small device: a write-only command, an indicate-only and a notify-only response, a read-only status.
const COMMAND = 12;
const INDICATED = 14;
const INDICATED_CCCD = 15;
const NOTIFIED = 17;
const NOTIFIED_CCCD = 18;
const STATUS = 20;
const ENCRYPTED = 22;
const MTU = 23;

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

function profile(): PeripheralProfile {
  return parseProfile({
    name: 't',
    peripherals: [
      {
        mac: 'C0:FF:EE:00:00:42',
        addressType: 1,
        advertisements: ['020106'],
        connectable: true,
        gatt: {
          mtu: MTU,
          services: [
            {
              uuid: 'b0000000-0000-4000-8000-000000000000',
              handle: 10,
              characteristics: [
                { uuid: 'b0000000-0000-4000-8000-000000000001', handle: COMMAND, properties: ['write'] },
                {
                  uuid: 'b0000000-0000-4000-8000-000000000002',
                  handle: INDICATED,
                  properties: ['indicate'],
                  descriptors: [{ uuid: '2902', handle: INDICATED_CCCD }],
                },
                {
                  uuid: 'b0000000-0000-4000-8000-000000000003',
                  handle: NOTIFIED,
                  properties: ['notify'],
                  descriptors: [{ uuid: '2902', handle: NOTIFIED_CCCD }],
                },
                { uuid: 'b0000000-0000-4000-8000-000000000004', handle: STATUS, properties: ['read'], value: '00' },
                { uuid: 'b0000000-0000-4000-8000-000000000005', handle: ENCRYPTED, properties: ['write'], encrypted: true },
              ],
            },
          ],
        },
      },
    ],
  }).peripherals[0]!;
}

const open: SimulatedPeripheral[] = [];
function connected(): SimulatedPeripheral {
  const peripheral = new SimulatedPeripheral(profile());
  open.push(peripheral);
  peripheral.connect();
  return peripheral;
}
function updates(peripheral: SimulatedPeripheral): Array<{ handle: number; data: number[] }> {
  const seen: Array<{ handle: number; data: number[] }> = [];
  peripheral.onNotify((handle, data) => seen.push({ handle, data: [...data] }));
  return seen;
}
/** What a client does to get indications (proxy registration, then the CCCD). */
function enableIndications(peripheral: SimulatedPeripheral): void {
  expect(peripheral.registerNotify(INDICATED, true)).toEqual({ ok: true });
  expect(peripheral.writeDescriptor(INDICATED_CCCD, bytes(2, 0))).toEqual({ ok: true });
}

afterEach(() => {
  for (const peripheral of open.splice(0)) peripheral.close();
});

describe('simulated-peripheral - programmed characteristics', () => {
  it('simulated-peripheral - writes reach the program after the GATT checks; a refusal keeps the old value', () => {
    const peripheral = connected();
    const writes: Array<{ data: number[]; withResponse: boolean }> = [];
    peripheral.program('b0000000-0000-4000-8000-000000000001', {
      onWrite: (data, { withResponse }) => {
        writes.push({ data: [...data], withResponse });
        return data[0] === 0xff ? 0x0e : undefined;
      },
    });
    expect(peripheral.write(COMMAND, bytes(1, 2), true)).toEqual({ ok: true });
    expect(peripheral.write(COMMAND, bytes(0xff), true)).toEqual({ error: 0x0e });
    // Checks the profile applies come first: no write-without-response property, too long.
    expect(peripheral.write(COMMAND, bytes(3), false)).toEqual({ error: 0x03 });
    expect(peripheral.write(COMMAND, new Uint8Array(513), true)).toEqual({ error: 0x0d });
    expect(writes).toEqual([
      { data: [1, 2], withResponse: true },
      { data: [0xff], withResponse: true },
    ]);
    // The encryption check as well, by value handle this time.
    let called = false;
    peripheral.program(ENCRYPTED, { onWrite: () => void (called = true) });
    expect(peripheral.write(ENCRYPTED, bytes(1), true)).toEqual({ error: 0x05 });
    expect(called).toBe(false);
  });

  it('simulated-peripheral - reads are answered by the program, or by the stored value when it returns nothing', () => {
    const peripheral = connected();
    let answer: Uint8Array | { error: number } | undefined = bytes(7, 7);
    peripheral.program('b0000000-0000-4000-8000-000000000004', { onRead: () => answer });
    expect(peripheral.read(STATUS)).toEqual({ data: bytes(7, 7) });
    answer = { error: 0x80 };
    expect(peripheral.read(STATUS)).toEqual({ error: 0x80 });
    answer = undefined;
    expect(peripheral.read(STATUS)).toEqual({ data: bytes(0) });
  });

  it('simulated-peripheral - onSubscribe fires once registration and CCCD are both set; onUnsubscribe when either goes', () => {
    const peripheral = connected();
    const seen: Array<Subscription | 'off'> = [];
    peripheral.program(INDICATED, { onSubscribe: (s) => seen.push(s), onUnsubscribe: () => seen.push('off') });
    expect(peripheral.writeDescriptor(INDICATED_CCCD, bytes(2, 0))).toEqual({ ok: true });
    expect(seen).toEqual([]);
    expect(peripheral.registerNotify(INDICATED, true)).toEqual({ ok: true });
    expect(seen).toEqual([{ notify: false, indicate: true, mtu: MTU }]);
    expect(peripheral.subscription(INDICATED)).toEqual({ notify: false, indicate: true, mtu: MTU });
    // An indicate-only characteristic refuses the notify bit (0xFD), and nothing changes.
    expect(peripheral.writeDescriptor(INDICATED_CCCD, bytes(1, 0))).toEqual({ error: 0xfd });
    expect(peripheral.writeDescriptor(INDICATED_CCCD, bytes(0, 0))).toEqual({ ok: true });
    expect(seen.at(-1)).toBe('off');
    enableIndications(peripheral);
    peripheral.registerNotify(INDICATED, false);
    expect(seen.filter((s) => s === 'off')).toHaveLength(2);
    enableIndications(peripheral);
    peripheral.loseLink(0x08);
    expect(seen.filter((s) => s === 'off')).toHaveLength(3);
    expect(peripheral.subscription(INDICATED)).toBeUndefined();
  });

  it('simulated-peripheral - notify() sends only when the client enabled notifications, within MTU - 3', () => {
    const peripheral = connected();
    const seen = updates(peripheral);
    expect(peripheral.notify(NOTIFIED, bytes(1))).toBe(false);
    peripheral.registerNotify(NOTIFIED, true);
    peripheral.writeDescriptor(NOTIFIED_CCCD, bytes(1, 0));
    expect(peripheral.notify('b0000000-0000-4000-8000-000000000003', bytes(2))).toBe(true);
    expect(seen).toEqual([{ handle: NOTIFIED, data: [2] }]);
    expect(() => peripheral.notify(NOTIFIED, new Uint8Array(MTU - 2))).toThrow(InvalidArgumentError);
    // Indications are not notifications: an indicate-only characteristic never notifies.
    enableIndications(peripheral);
    expect(peripheral.notify(INDICATED, bytes(3))).toBe(false);
  });

  it('simulated-peripheral - indicate() resolves after the update went out, one at a time, and needs the CCCD bit', async () => {
    const peripheral = connected();
    const seen = updates(peripheral);
    await expect(peripheral.indicate(INDICATED, bytes(1))).rejects.toThrow(InvalidArgumentError);
    enableIndications(peripheral);
    const order: string[] = [];
    const first = peripheral.indicate(INDICATED, bytes(1)).then(() => order.push(`confirmed 1 after ${seen.length} sent`));
    const second = peripheral.indicate(INDICATED, bytes(2)).then(() => order.push(`confirmed 2 after ${seen.length} sent`));
    await Promise.all([first, second]);
    expect(order).toEqual(['confirmed 1 after 1 sent', 'confirmed 2 after 2 sent']);
    expect(seen).toEqual([
      { handle: INDICATED, data: [1] },
      { handle: INDICATED, data: [2] },
    ]);
    await expect(peripheral.indicate(INDICATED, new Uint8Array(MTU))).rejects.toThrow(InvalidArgumentError);
  });

  it('simulated-peripheral - an indication whose link drops before the confirmation rejects with the reason', async () => {
    const peripheral = connected();
    enableIndications(peripheral);
    const pending = peripheral.indicate(INDICATED, bytes(1));
    peripheral.loseLink(0x08);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BleDisconnectedError);
    expect(error).toMatchObject({ reason: 0x08, address: 0xc0ffee000042 });
  });

  it('simulated-peripheral - indicate() honours an abort before and while it waits for the confirmation', async () => {
    const peripheral = connected();
    enableIndications(peripheral);
    const aborted = new AbortController();
    aborted.abort(new Error('stop'));
    await expect(peripheral.indicate(INDICATED, bytes(1), { signal: aborted.signal })).rejects.toThrow('stop');
    const later = new AbortController();
    const pending = peripheral.indicate(INDICATED, bytes(2), { signal: later.signal });
    later.abort(new Error('stop now'));
    await expect(pending).rejects.toThrow('stop now');
    // The queue goes on after an aborted indication.
    await expect(peripheral.indicate(INDICATED, bytes(3))).resolves.toBeUndefined();
  });

  it("simulated-peripheral - updates sent from a write hook go out after the write's reply, in order, like an echo", async () => {
    const peripheral = connected();
    const seen = updates(peripheral);
    enableIndications(peripheral);
    peripheral.registerNotify(NOTIFIED, true);
    peripheral.writeDescriptor(NOTIFIED_CCCD, bytes(1, 0));
    const indicated: Array<Promise<void>> = [];
    peripheral.program(COMMAND, {
      onWrite: (data) => {
        expect(peripheral.notify(NOTIFIED, data)).toBe(true);
        indicated.push(peripheral.indicate(INDICATED, data));
        return undefined;
      },
    });
    // The proxy sends the write's reply as soon as write() returns: nothing may have gone out before that.
    expect(peripheral.write(COMMAND, bytes(1), true)).toEqual({ ok: true });
    expect(seen).toEqual([]);
    // An update outside any hook queues behind the held reaction instead of overtaking it.
    expect(peripheral.notify(NOTIFIED, bytes(2))).toBe(true);
    expect(seen).toEqual([]);
    await Promise.all(indicated);
    expect(seen).toContainEqual({ handle: INDICATED, data: [1] });
    expect(seen.filter((u) => u.handle === NOTIFIED)).toEqual([
      { handle: NOTIFIED, data: [1] },
      { handle: NOTIFIED, data: [2] },
    ]);
    // Held updates whose link goes first: the notification is dropped, the indication fails as the link's.
    peripheral.write(COMMAND, bytes(3), true);
    peripheral.loseLink(0x08);
    await expect(indicated.at(-1)).rejects.toBeInstanceOf(BleDisconnectedError);
    expect(seen.filter((u) => u.data[0] === 3)).toEqual([]);
  });

  it('simulated-peripheral - one program per characteristic, removable; unknown characteristics are refused', async () => {
    const peripheral = connected();
    const remove = peripheral.program(COMMAND, {});
    expect(() => peripheral.program(COMMAND, {})).toThrow(InvalidArgumentError);
    remove();
    expect(() => peripheral.program(COMMAND, {})).not.toThrow();
    expect(() => peripheral.program(99, {})).toThrow(InvalidArgumentError);
    expect(() => peripheral.program('2a00', {})).toThrow(InvalidArgumentError);
    await expect(peripheral.indicate(INDICATED_CCCD, bytes(1))).rejects.toThrow(InvalidArgumentError);
  });

  it('simulated-peripheral - link events name the MTU on connect and the reason on loss', () => {
    const peripheral = new SimulatedPeripheral(profile());
    open.push(peripheral);
    const events: LinkEvent[] = [];
    peripheral.onLink((event) => events.push(event));
    peripheral.connect();
    peripheral.loseLink(0x13);
    peripheral.connect();
    peripheral.reset(0x16);
    peripheral.reset(0x16); // not connected: no second event
    expect(events).toEqual([
      { type: 'connected', mtu: MTU },
      { type: 'disconnected', reason: 0x13 },
      { type: 'connected', mtu: MTU },
      { type: 'disconnected', reason: 0x16 },
    ]);
  });
});

describe('simulated-peripheral - advertising from code', () => {
  it('simulated-peripheral - advertise() replaces the payloads, stopAdvertising() goes quiet', () => {
    const peripheral = new SimulatedPeripheral(profile());
    open.push(peripheral);
    peripheral.stopAdvertising();
    expect(peripheral.isAdvertising).toBe(false);
    expect(peripheral.advertisingEnabled).toBe(false);
    peripheral.advertise([bytes(0x02, 0x01, 0x06, 0x03, 0x16, 0xf6, 0xff)]);
    expect(peripheral.isAdvertising).toBe(true);
    expect([...peripheral.nextAdvertisement(0).data]).toEqual([0x02, 0x01, 0x06, 0x03, 0x16, 0xf6, 0xff]);
    expect(() => peripheral.advertise([bytes(0x05, 0x01)])).toThrow(InvalidArgumentError);
    expect(() => peripheral.advertise([new Uint8Array(63)])).toThrow(InvalidArgumentError);
    expect(() => peripheral.advertise([])).toThrow(InvalidArgumentError);
  });
});
