import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors.js';
import {
  DEFAULT_PROFILE_PATH,
  type DeviceProfile,
  loadProfile,
  PROFILES_DIR,
  parseProfile,
  resolveProfilePath,
  splitAdStructures,
} from '../../../src/fixture-server/profile.js';

const PROFILE_FILES = readdirSync(PROFILES_DIR).filter((f) => f.endsWith('.json'));

/** A minimal valid profile; tests patch one field to hit one validation rule. */
function minimal(): { name: string; peripherals: Record<string, unknown>[] } {
  return {
    name: 'test',
    peripherals: [
      {
        mac: 'c0:ff:ee:00:00:02',
        addressType: 1,
        advertisements: ['020106'],
        connectable: true,
        gatt: {
          services: [
            {
              uuid: '180F',
              handle: 1,
              characteristics: [
                { uuid: '0x2A19', handle: 3, properties: ['read', 'notify'], value: '64', descriptors: [{ uuid: '2902', handle: 4 }] },
              ],
            },
          ],
        },
      },
    ],
  };
}

function errorOf(json: unknown): string {
  try {
    parseProfile(json, 'test.json');
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgumentError);
    return (error as Error).message;
  }
  throw new Error('parseProfile accepted invalid input');
}

function allHandles(profile: DeviceProfile, index: number): number[] {
  const handles: number[] = [];
  for (const service of profile.peripherals[index]!.gatt.services) {
    handles.push(service.handle);
    for (const c of service.characteristics) {
      handles.push(c.handle - 1, c.handle, ...c.descriptors.map((d) => d.handle));
    }
  }
  return handles;
}

describe('profile - committed profiles', () => {
  it('profile - ships default, kitchen, living-room, garage and matter', () => {
    expect(PROFILE_FILES.sort()).toEqual(['default.json', 'garage.json', 'kitchen.json', 'living-room.json', 'matter.json']);
    expect(existsSync(DEFAULT_PROFILE_PATH)).toBe(true);
  });

  it.each(PROFILE_FILES)('profile - %s loads, with length-consistent AD structures and ascending unique handles', async (file) => {
    const profile = await loadProfile(join(PROFILES_DIR, file));
    expect(profile.name).toBe(file.replace(/\.json$/, ''));
    expect(profile.peripherals.length).toBeGreaterThan(2);
    expect(profile.peripherals.some((p) => p.connectable && p.gatt.services.length > 0)).toBe(true);
    profile.peripherals.forEach((peripheral, i) => {
      expect(peripheral.address).toBe(Number.parseInt(peripheral.mac.replaceAll(':', ''), 16));
      for (const data of peripheral.advertisements) {
        expect(data.length).toBeLessThanOrEqual(62);
        const structures = splitAdStructures(data);
        expect(structures.length).toBeGreaterThan(0);
        const used = structures.reduce((n, s) => n + 2 + s.data.length, 0);
        expect(data.subarray(used).every((b) => b === 0)).toBe(true);
      }
      const handles = allHandles(profile, i);
      expect(new Set(handles).size).toBe(handles.length);
      expect([...handles].sort((a, b) => a - b)).toEqual(handles);
      for (const service of peripheral.gatt.services) {
        for (const c of service.characteristics) {
          if (c.properties & 0x30) expect(c.descriptors.some((d) => d.uuid === '00002902-0000-1000-8000-00805f9b34fb')).toBe(true);
        }
      }
    });
  });

  it('profile - the default peripheral covers every GATT path the demo and tests need', async () => {
    const profile = await loadProfile(DEFAULT_PROFILE_PATH);
    const demo = profile.peripherals[0]!;
    expect(demo).toMatchObject({ name: 'esphome-ble-demo', addressType: 1, connectable: true, mac: 'C0:FF:EE:00:00:01' });
    const characteristics = demo.gatt.services.flatMap((s) => s.characteristics);
    expect(characteristics.some((c) => c.properties === 0x02)).toBe(true);
    expect(characteristics.some((c) => c.properties & 0x08)).toBe(true);
    expect(characteristics.some((c) => c.properties & 0x04)).toBe(true);
    expect(characteristics.some((c) => c.notify !== undefined)).toBe(true);
    expect(characteristics.some((c) => c.error.read === 5)).toBe(true);
    expect(characteristics.some((c) => c.encrypted)).toBe(true);
    expect(characteristics.some((c) => c.descriptors.some((d) => d.value.length > 0))).toBe(true);
    expect(profile.peripherals.filter((p) => !p.connectable).length).toBeGreaterThanOrEqual(2);
  });

  it('profile - generated profiles match scripts/build-profiles.mjs', () => {
    const script = resolve(PROFILES_DIR, '..', '..', 'scripts', 'build-profiles.mjs');
    // No --data: the script's default (fixtures/data) is what a fresh clone has.
    expect(() => execFileSync(process.execPath, [script, '--check'], { stdio: 'pipe' })).not.toThrow();
  });
});

describe('profile - normalisation', () => {
  it('profile - expands UUIDs, parses hex and utf8 values, maps property names to a mask', () => {
    const json = minimal();
    const service = (json.peripherals[0]!.gatt as { services: Record<string, unknown>[] }).services[0]!;
    (service.characteristics as Record<string, unknown>[]).push(
      { uuid: '2A00', handle: 6, properties: ['read', 'writeWithoutResponse'], value: { utf8: 'héllo' } },
      { uuid: 'A3F1C2E0-5B7D-4E8A-9C3B-0D1E2F3A4B01', handle: 8, properties: 10, value: 'DE AD be ef' },
    );
    const profile = parseProfile(json);
    const peripheral = profile.peripherals[0]!;
    expect(peripheral.mac).toBe('C0:FF:EE:00:00:02');
    expect(peripheral.address).toBe(0xc0ffee000002);
    expect(peripheral.behaviour).toMatchObject({ connectDelayMs: 30, connectError: 0, responseDelayMs: 0, pairing: 'just-works' });
    expect(peripheral.behaviour.linkLossAfterMs).toBeUndefined();
    const [battery, name, vendor] = peripheral.gatt.services[0]!.characteristics;
    expect(peripheral.gatt.services[0]!.uuid).toBe('0000180f-0000-1000-8000-00805f9b34fb');
    expect(battery).toMatchObject({ uuid: '00002a19-0000-1000-8000-00805f9b34fb', properties: 0x12, value: Uint8Array.of(0x64) });
    expect(name!.properties).toBe(0x06);
    expect(new TextDecoder().decode(name!.value)).toBe('héllo');
    expect(vendor).toMatchObject({
      uuid: 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b01',
      properties: 10,
      value: Uint8Array.of(0xde, 0xad, 0xbe, 0xef),
    });
    expect(peripheral.gatt.mtu).toBe(23);
  });

  it('profile - resolveProfilePath maps names into the profiles folder and leaves paths alone', () => {
    expect(resolveProfilePath('kitchen')).toBe(join(PROFILES_DIR, 'kitchen.json'));
    expect(resolveProfilePath('./mine.json')).toBe('./mine.json');
    expect(resolveProfilePath('/tmp/x')).toBe('/tmp/x');
  });

  it('profile - splitAdStructures stops at zero padding and rejects overruns', () => {
    expect(splitAdStructures(Uint8Array.of(2, 1, 6, 0, 0)).map((s) => s.type)).toEqual([1]);
    expect(() => splitAdStructures(Uint8Array.of(5, 0xff, 1))).toThrow(/claims 5 bytes/);
    expect(() => splitAdStructures(Uint8Array.of(2, 1, 6, 0, 3))).toThrow(/non-zero bytes/);
  });
});

describe('profile - validation errors name the path inside the JSON', () => {
  const cases: [string, (json: ReturnType<typeof minimal>) => void, RegExp][] = [
    ['a bad MAC', (j) => (j.peripherals[0]!.mac = 'C0:FF:EE:00:00'), /test\.json: peripherals\[0\]\.mac: expected AA:BB/],
    ['an unknown key', (j) => (j.peripherals[0]!.behavior = {}), /peripherals\[0\]\.behavior: unknown key/],
    ['a bad address type', (j) => (j.peripherals[0]!.addressType = 4), /peripherals\[0\]\.addressType: expected an integer 0\.\.3, got 4/],
    ['odd hex', (j) => (j.peripherals[0]!.advertisements = ['02010']), /peripherals\[0\]\.advertisements\[0\]: expected hex/],
    ['an AD overrun', (j) => (j.peripherals[0]!.advertisements = ['050106']), /advertisements\[0\]: not a sequence of AD structures/],
    ['no advertisements', (j) => (j.peripherals[0]!.advertisements = []), /advertisements: expected at least one/],
    [
      'a too long advertisement',
      (j) => (j.peripherals[0]!.advertisements = ['1effaa'.padEnd(126, '0')]),
      /advertisements\[0\]: expected 1\.\.62 bytes, got 63/,
    ],
    ['a duplicate MAC', (j) => j.peripherals.push({ ...j.peripherals[0]! }), /peripherals\[1\]\.mac: C0:FF:EE:00:00:02 is already used/],
    [
      'an unknown property',
      (j) => (characteristic(j).properties = ['read', 'sing']),
      /characteristics\[0\]\.properties\[1\]: unknown property "sing"/,
    ],
    ['a bad UUID', (j) => (characteristic(j).uuid = '2a0'), /characteristics\[0\]\.uuid: expected a 16-bit/],
    [
      'notify without CCCD',
      (j) => (characteristic(j).descriptors = []),
      /characteristics\[0\]\.descriptors: a notify\/indicate characteristic needs/,
    ],
    [
      'a CCCD with a value',
      (j) => (characteristic(j).descriptors = [{ uuid: '2902', handle: 4, value: '0100' }]),
      /descriptors\[0\]\.value: a CCCD value comes from/,
    ],
    [
      'a handle not above the service',
      (j) => (characteristic(j).handle = 2),
      /characteristics\[0\]\.handle: value handle 2 leaves no room/,
    ],
    [
      'a descriptor below its value',
      (j) => (characteristic(j).descriptors = [{ uuid: '2902', handle: 3 }]),
      /descriptors\[0\]\.handle: handle 3 is not above/,
    ],
    [
      'notify on a read-only characteristic',
      (j) => Object.assign(characteristic(j), { properties: ['read'], notify: { intervalMs: 10, values: ['00'] } }),
      /\.notify: the characteristic has neither/,
    ],
    ['a dangling echoTo', (j) => (characteristic(j).echoTo = 99), /characteristics\[0\]\.echoTo: no characteristic has value handle 99/],
    ['a reply without echoTo', (j) => (characteristic(j).reply = '01'), /characteristics\[0\]\.reply: a reply needs echoTo/],
    [
      'a bad pairing mode',
      (j) => (j.peripherals[0]!.behaviour = { pairing: 'maybe' }),
      /behaviour\.pairing: expected "just-works" or "fail"/,
    ],
    [
      'a bad error status',
      (j) => (characteristic(j).error = { read: 0 }),
      /characteristics\[0\]\.error\.read: expected an integer 1\.\.255/,
    ],
  ];

  it.each(cases)('profile - rejects %s', (_name, patch, message) => {
    const json = minimal();
    patch(json);
    expect(errorOf(json)).toMatch(message);
  });

  it('profile - rejects a root that is not an object, and a missing name', () => {
    expect(errorOf([])).toBe('test.json: (root): expected an object, got an array');
    expect(errorOf({ peripherals: [] })).toBe('test.json: name: expected a string, got nothing');
  });

  it('profile - loadProfile reports unreadable files and bad JSON as InvalidArgumentError', async () => {
    await expect(loadProfile(join(PROFILES_DIR, 'no-such-profile.json'))).rejects.toThrow(InvalidArgumentError);
    const dir = await mkdtemp(join(tmpdir(), 'esphome-ble-profile-'));
    try {
      await writeFile(join(dir, 'broken.json'), '{ "name": ');
      await expect(loadProfile(join(dir, 'broken.json'))).rejects.toThrow(/broken\.json: not valid JSON/);
      await writeFile(join(dir, 'wrong.json'), JSON.stringify({ name: 'x', peripherals: [{ mac: 1 }] }));
      await expect(loadProfile(join(dir, 'wrong.json'))).rejects.toThrow(/wrong\.json: peripherals\[0\]\.mac: expected a string, got 1/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

function characteristic(json: ReturnType<typeof minimal>): Record<string, unknown> {
  const gatt = json.peripherals[0]!.gatt as { services: { characteristics: Record<string, unknown>[] }[] };
  return gatt.services[0]!.characteristics[0]!;
}
