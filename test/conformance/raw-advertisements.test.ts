import { describe, expect, it } from 'vitest';
import { decodeRawAdvertisements } from '../../src/bluetooth/raw-advertisements.js';
import { FrameError } from '../../src/errors.js';
import { seededRandom } from '../../src/fixture-server/simulated-peripheral.js';
import { type BluetoothLERawAdvertisement, BluetoothLERawAdvertisementsResponse } from '../../src/gen/api_pb.js';
import { lengthDelimited, tag, varint } from '../helpers/protobuf-wire.js';

// Canary: the hand-written decoder of message 93 must read exactly what the generated protobuf-ts codec reads,
// for the codec's own encoding and for the other encodings a protobuf writer may produce (the firmware's
// forced default fields, other field orders, unknown fields, repeated fields where the last one wins).

interface Report {
  address: number;
  rssi: number;
  addressType: number;
  data: string;
}

const MAX_ADDRESS = 0xffff_ffff_ffff;

function ours(bytes: Uint8Array): Report[] {
  const reports: Report[] = [];
  const n = decodeRawAdvertisements(bytes, (address, rssi, addressType, batch, start, end) =>
    reports.push({ address, rssi, addressType, data: Buffer.from(batch.subarray(start, end)).toString('hex') }),
  );
  if (n !== reports.length) throw new Error(`decoder returned ${n} for ${reports.length} reports`);
  return reports;
}

const same = (a: Report[], b: Report[]): boolean =>
  a.length === b.length &&
  a.every((r, i) => r.address === b[i]!.address && r.rssi === b[i]!.rssi && r.addressType === b[i]!.addressType && r.data === b[i]!.data);

/** Hex of the inputs on which the decoders disagree (expect() per case would dominate the run time). */
function disagreements(inputs: Iterable<Uint8Array>): string[] {
  const bad: string[] = [];
  for (const bytes of inputs) if (!same(ours(bytes), reference(bytes))) bad.push(Buffer.from(bytes).toString('hex'));
  return bad;
}

function reference(bytes: Uint8Array): Report[] {
  return BluetoothLERawAdvertisementsResponse.fromBinary(bytes).advertisements.map((a) => ({
    address: a.address,
    rssi: a.rssi,
    addressType: a.addressType,
    data: Buffer.from(a.data).toString('hex'),
  }));
}

function randomReport(random: () => number): BluetoothLERawAdvertisement {
  const int = (n: number): number => Math.floor(random() * n);
  const pick = int(10);
  // Edge addresses and RSSIs now and then; otherwise uniform 48-bit addresses and radio-like RSSIs.
  const address = pick === 0 ? 0 : pick === 1 ? MAX_ADDRESS : pick === 2 ? 2 ** 32 + int(256) : int(2 ** 24) * 2 ** 24 + int(2 ** 24);
  const rssi = pick === 3 ? -(2 ** 31) : pick === 4 ? 2 ** 31 - 1 : pick === 5 ? 0 : -int(128);
  const addressType = pick === 6 ? 2 ** 32 - 1 : int(4);
  const data = Uint8Array.from({ length: pick === 7 ? 0 : int(63) }, () => int(256));
  return { address, rssi, addressType, data };
}

function randomBatch(random: () => number): BluetoothLERawAdvertisementsResponse {
  return BluetoothLERawAdvertisementsResponse.create({
    advertisements: Array.from({ length: 1 + Math.floor(random() * 16) }, () => randomReport(random)),
  });
}

const zigzag = (n: number): number => (n >= 0 ? n * 2 : -n * 2 - 1);

type Field = number[];
function fields(r: BluetoothLERawAdvertisement, force: boolean): Field[] {
  const list: Field[] = [];
  if (force || r.address !== 0) list.push([...tag(1, 0), ...varint(r.address)]);
  if (force || r.rssi !== 0) list.push([...tag(2, 0), ...varint(zigzag(r.rssi))]);
  if (r.addressType !== 0) list.push([...tag(3, 0), ...varint(r.addressType)]);
  if (force || r.data.length > 0) list.push(lengthDelimited(4, [...r.data]));
  return list;
}
const UNKNOWN_FIELDS: Field[] = [
  [...tag(5, 0), ...varint(2n ** 63n + 5n)],
  [...tag(6, 1), 1, 2, 3, 4, 5, 6, 7, 8],
  [...tag(7, 5), 9, 9, 9, 9],
  lengthDelimited(8, [0x0a, 0x02, 0x08, 0x01]),
  [...tag(1000, 0), 1],
  [...tag(2047, 2), 0],
];

function encode(batch: BluetoothLERawAdvertisementsResponse, variant: (entry: Field[], i: number) => Field[]): Uint8Array {
  const out: number[] = [];
  batch.advertisements.forEach((r, i) => {
    out.push(...lengthDelimited(1, variant(fields(r, false), i).flat()));
  });
  return Uint8Array.from(out);
}

describe('raw advertisements conformance', () => {
  it('raw-advertisements - agrees with protobuf-ts on random batches', () => {
    const random = seededRandom(0x93);
    const inputs = Array.from({ length: 300 }, () => BluetoothLERawAdvertisementsResponse.toBinary(randomBatch(random)));
    expect(disagreements(inputs)).toEqual([]);
    // Spot check with the full comparison output.
    expect(ours(inputs[0]!)).toEqual(reference(inputs[0]!));
  });

  it('raw-advertisements - decodes the edge values exactly', () => {
    const bytes = BluetoothLERawAdvertisementsResponse.toBinary(
      BluetoothLERawAdvertisementsResponse.create({
        advertisements: [
          { address: MAX_ADDRESS, rssi: -127, addressType: 1, data: Uint8Array.of(2, 1, 6) },
          { address: 0xc0ffee000001, rssi: -1, addressType: 3, data: new Uint8Array(62).fill(0xff) },
          { address: 0, rssi: 0, addressType: 0, data: new Uint8Array(0) },
          { address: 0x0000_0000_0001, rssi: -(2 ** 31), addressType: 2, data: Uint8Array.of(0) },
        ],
      }),
    );
    expect(ours(bytes)).toEqual([
      { address: MAX_ADDRESS, rssi: -127, addressType: 1, data: '020106' },
      { address: 0xc0ffee000001, rssi: -1, addressType: 3, data: 'ff'.repeat(62) },
      { address: 0, rssi: 0, addressType: 0, data: '' },
      { address: 1, rssi: -(2 ** 31), addressType: 2, data: '00' },
    ]);
    expect(ours(new Uint8Array(0))).toEqual([]);
  });

  it('raw-advertisements - agrees on other valid encodings (forced defaults, reordered, unknown and repeated fields)', () => {
    const random = seededRandom(7);
    const variants: Array<[string, (batch: BluetoothLERawAdvertisementsResponse) => Uint8Array]> = [
      // The firmware always writes fields 1, 2 and 4, zero or not.
      ['forced', (b) => encode(b, (_f, i) => fields(b.advertisements[i]!, true))],
      ['reversed', (b) => encode(b, (f) => [...f].reverse())],
      ['unknown fields', (b) => encode(b, (f, i) => [UNKNOWN_FIELDS[i % UNKNOWN_FIELDS.length]!, ...f, UNKNOWN_FIELDS[(i + 3) % 6]!])],
      // A repeated scalar or bytes field: the last occurrence wins.
      [
        'repeated fields',
        (b) =>
          encode(b, (f) => [[...tag(1, 0), ...varint(123456)], [...tag(2, 0), ...varint(zigzag(-5))], lengthDelimited(4, [1, 2, 3]), ...f]),
      ],
      // Unknown fields between the entries of the batch itself.
      [
        'unknown top-level fields',
        (b) => {
          const plain = [...BluetoothLERawAdvertisementsResponse.toBinary(b)];
          return Uint8Array.from([...UNKNOWN_FIELDS[0]!, ...plain, ...UNKNOWN_FIELDS[3]!, ...UNKNOWN_FIELDS[5]!]);
        },
      ],
      // Found by `npm run fuzz`: a known tag written in more bytes than needed (`8a 00` for 0x0a) is still that field;
      // entries and entry fields with such tags were skipped as unknown fields.
      [
        'over-long tags',
        (b) => {
          const long = (f: Field): Field => [(f[0]! & 0x7f) | 0x80, 0x00, ...f.slice(1)];
          const out: number[] = [];
          for (const r of b.advertisements) out.push(...long(lengthDelimited(1, fields(r, true).flatMap(long))));
          return Uint8Array.from(out);
        },
      ],
      // Two encoded messages back to back are one message with both lists (protobuf merge semantics).
      [
        'concatenated',
        (b) => Uint8Array.from([...BluetoothLERawAdvertisementsResponse.toBinary(b), ...BluetoothLERawAdvertisementsResponse.toBinary(b)]),
      ],
    ];
    for (const [name, make] of variants) {
      const inputs = Array.from({ length: 40 }, () => make(randomBatch(random)));
      expect(disagreements(inputs), name).toEqual([]);
    }
  });

  it('raw-advertisements - rejects every truncation that cuts an entry with a FrameError', () => {
    const random = seededRandom(42);
    const accepted: Uint8Array[] = [];
    const notRejected: string[] = [];
    for (let i = 0; i < 20; i++) {
      const batch = randomBatch(random);
      const bytes = encode(batch, (f, j) => (j % 2 === 0 ? [...f, UNKNOWN_FIELDS[j % UNKNOWN_FIELDS.length]!] : f));
      // Entry boundaries: a prefix ending on one is a valid shorter batch.
      const boundaries = new Set<number>([0]);
      let pos = 0;
      while (pos < bytes.length) {
        let len = 0;
        let mul = 1;
        pos++; // tag 0x0a
        for (;;) {
          const b = bytes[pos++]!;
          len += (b & 0x7f) * mul;
          mul *= 128;
          if ((b & 0x80) === 0) break;
        }
        pos += len;
        boundaries.add(pos);
      }
      for (let cut = 1; cut < bytes.length; cut++) {
        const prefix = bytes.subarray(0, cut);
        if (boundaries.has(cut)) {
          accepted.push(prefix);
          continue;
        }
        try {
          decodeRawAdvertisements(prefix, () => {});
          notRejected.push(`${Buffer.from(prefix).toString('hex')} (cut at ${cut} of ${bytes.length})`);
        } catch (error) {
          if (!(error instanceof FrameError) || error.code !== 'ESPAPI_ERR_DECODE') throw error;
        }
      }
    }
    expect(notRejected).toEqual([]);
    expect(disagreements(accepted)).toEqual([]);
    expect(accepted.length).toBeGreaterThan(20);
  });

  it('raw-advertisements - rejects fields that overrun their entry and absurd lengths', () => {
    const entry = (body: number[]): Uint8Array => Uint8Array.from(lengthDelimited(1, body));
    const bad: Array<[string, Uint8Array]> = [
      ['fixed64 cut by the entry end', entry([...tag(6, 1), 1, 2, 3])],
      ['fixed32 cut by the entry end', entry([...tag(7, 5), 1])],
      ['unknown varint cut by the entry end', entry([...tag(5, 0), 0x80])],
      ['address varint cut by the entry end', entry([...tag(1, 0), 0xff, 0xff])],
      ['data longer than the entry', entry([...tag(4, 2), 5, 1, 2])],
      ['unknown bytes longer than the entry', entry([...tag(8, 2), 9, 1])],
      ['entry length far beyond the buffer', Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x08, 0x01])],
      ['data length far beyond the buffer', entry([...tag(4, 2), 0xff, 0xff, 0xff, 0xff, 0x0f])],
      ['field number 0', Uint8Array.from([0x00, 0x01])],
      ['top-level fixed64 cut', Uint8Array.from([...tag(6, 1), 1, 2])],
      // Found by `npm run fuzz`: these were accepted, the first with an address of 5.7e22, the others with a NaN cursor.
      ['address beyond 2^53', entry([...tag(1, 0), 0xb4, 0xa4, 0xd8, 0x85, 0x99, 0x81, 0x80, 0x80, 0xf0, 0x0e])],
      ['address varint of 11 bytes', entry([...tag(1, 0), ...Array(10).fill(0x80), 0x00])],
      ['unknown varint of 160 bytes', entry([...tag(5, 0), ...Array(159).fill(0x80), 0x00])],
      ['top-level length varint of 160 bytes', Uint8Array.from([...tag(9, 2), ...Array(159).fill(0x80), 0x00])],
      // Found by `npm run fuzz` (seed 2026): a 56-bit tag whose wire-type bits were lost to rounding, skipped as the wrong type.
      ['tag beyond 32 bits', Uint8Array.from([0xfa, 0xfc, 0xa8, 0xeb, 0xc8, 0xd2, 0x8a, 0x50, 0x0c, 0x0a, 0x00])],
    ];
    for (const [name, bytes] of bad) {
      expect(() => decodeRawAdvertisements(bytes, () => {}), name).toThrow(FrameError);
    }
  });
});
