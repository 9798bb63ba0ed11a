// Rebuilds fixtures/profiles/{kitchen,living-room,garage}.json from fixtures/data (real advertisements
// and GATT tables). default.json is hand-written and left alone. Output is deterministic.
//
//   node scripts/build-profiles.mjs [--data <dir with ble-advertisements.json>] [--check]
//
// --data defaults to fixtures/data; --check fails when a committed profile is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = join(ROOT, 'fixtures', 'profiles');
const CCCD = '00002902-0000-1000-8000-00805f9b34fb';
const BASE_SUFFIX = '-0000-1000-8000-00805f9b34fb';

const args = process.argv.slice(2);
const dataArg = args.indexOf('--data');
const DATA_DIR = dataArg >= 0 ? resolve(args[dataArg + 1] ?? '') : join(ROOT, 'fixtures', 'data');
const CHECK = args.includes('--check');

const ads = JSON.parse(readFileSync(join(DATA_DIR, 'ble-advertisements.json'), 'utf8')).advertisements;
const gattDevices = JSON.parse(readFileSync(join(DATA_DIR, 'gatt-services.json'), 'utf8')).devices;
const adById = new Map(ads.map((a) => [a.id, a]));
const gattById = new Map(gattDevices.map((d) => [d.id, d]));

// ---------------------------------------------------------------------------------------------
// Recipes: which records make up each neighbourhood, and the values the data does not carry.
// ---------------------------------------------------------------------------------------------

const utf8 = (text) => ({ utf8: text });

/** Values for the La Marzocco table (keys: value handles). Vendor values are placeholders. */
const LAMARZOCCO_VALUES = {
  3: utf8('LM-espresso'),
  5: '0000',
  11: '00',
  13: '00',
  16: '00',
  18: '00',
  20: '00',
  22: '00',
  29: utf8('La Marzocco'),
  31: utf8('espresso machine'),
  33: utf8('SIM0001'),
  35: utf8('1.0.0'),
  37: utf8('1'),
  39: utf8('1.0.0'),
  41: '00',
  43: '00',
};

/** micro:bit (DAL Bluetooth profile) values: accelerometer, buttons, IO pins, LEDs, magnetometer, temperature. */
const MICROBIT_VALUES = {
  14: utf8('BBC micro:bit'),
  16: utf8('12345'),
  18: utf8('1.4.17'),
  21: '0000000000fc', // accelerometer x, y, z as int16 LE milli-g: 0, 0, -1024 (lying flat)
  24: '1400', // accelerometer period 20 ms
  27: '00',
  30: '00',
  34: '00000000',
  36: '00000000',
  40: '',
  44: '0000000000',
  48: '7800', // scrolling delay 120 ms
  51: '000000000000',
  54: '5a00', // bearing 90 degrees
  57: '1400',
  60: '15', // 21 degrees C
  63: 'e803', // temperature period 1000 ms
};

const MICROBIT_NOTIFY = {
  21: { intervalMs: 500, values: ['0000000000fc', '1000f0ff00fc', 'f0ff100010fc'] },
  27: { intervalMs: 3000, values: ['01', '00'] },
  30: { intervalMs: 5000, values: ['02', '00'] },
  60: { intervalMs: 2000, values: ['15', '16', '15', '14'] },
};

/** DJI table: bluetoothctl printed no properties, so they are assigned (see notes) by value handle. */
const DJI_PROPERTIES = {
  3: ['read'],
  5: ['read'],
  7: ['read'],
  9: ['write'],
  11: ['read'],
  14: ['indicate'],
  18: ['read', 'write'],
  21: ['read', 'write'],
  24: ['notify'],
  28: ['write-without-response', 'write'],
  32: ['read'],
  35: ['read', 'notify'],
  42: ['read'],
  44: ['write-without-response'],
  46: ['read', 'write-without-response'],
  48: ['read'],
  51: ['read', 'notify'],
  55: ['read', 'write', 'write-without-response'],
};

const DJI_VALUES = {
  3: utf8('Osmo Mobile'),
  5: '0000',
  7: '00',
  11: '06000c000000c800', // PPCP: interval 7.5-15 ms, latency 0, timeout 2 s
  18: '00',
  21: '00',
  32: '01000000000000', // PnP ID placeholder
  35: '55', // battery 85 %
  42: '11010002', // HID information: bcdHID 1.11, country 0, normally connectable
  46: '01', // protocol mode: report
  48: '05010906a101c0', // minimal report map: generic desktop keyboard collection
  51: '0000',
  55: '00',
};

const DJI_DESCRIPTOR_VALUES = {
  19: utf8('control'),
  22: utf8('status'),
  26: utf8('events'),
  29: utf8('command'),
  37: '0001', // report reference: id 0, input
  38: '0400ad27010000', // presentation format: uint8, percentage
  49: '192a', // external report reference: Battery Level 0x2A19
  53: '0101', // report reference: id 1, input
  56: '0102', // report reference: id 1, output
};

const DJI_NOTIFY = {
  24: { intervalMs: 1000, values: ['aa1a0001', 'aa1a0002'] },
  35: { intervalMs: 10000, values: ['55', '54'] },
};

/** HID report characteristics need an encrypted link (gatt-services.json notes). */
const DJI_ENCRYPTED = [48, 51, 55];

const PROFILES = [
  {
    name: 'kitchen',
    description:
      'A kitchen proxy: a connectable La Marzocco espresso machine (real ESPHome GATT table), a BBQ thermometer, two hygrometers and a SwitchBot meter.',
    peripherals: [
      lamarzocco(-58),
      { ads: ['inkbird-002'], interval: 1000 },
      { ads: ['thermobeacon-003'], interval: 2000 },
      { ads: ['xiaomi-009'], interval: 1000 },
      { ads: ['switchbot-002', 'switchbot-003'], interval: 2000 },
    ],
  },
  {
    name: 'living-room',
    description:
      'A living-room proxy: a connectable BBC micro:bit (real GATT table), an iPhone, a Shelly BLU button (BTHome), a SwitchBot curtain, a Qingping air monitor and a Xiaomi hygrometer; the kitchen espresso machine is heard faintly.',
    peripherals: [
      microbit(-55),
      lamarzocco(-84),
      { ads: ['apple-001', 'apple-002'], interval: 300 },
      { ads: ['bthome-002'], interval: 1000 },
      { ads: ['switchbot-006', 'switchbot-007', 'switchbot-008'], interval: 2000 },
      { ads: ['qingping-009'], interval: 1000 },
      { ads: ['xiaomi-053', 'xiaomi-054'], interval: 1000 },
    ],
  },
  {
    name: 'garage',
    description:
      'A garage proxy: a connectable DJI Osmo Mobile gimbal (real GATT table, HID reports behind pairing, flaky link), a Tilt hydrometer (iBeacon), a MikroTik tag, a Michelin tyre sensor and an Inkbird hygrometer.',
    peripherals: [
      {
        gatt: 'dji-osmo-mobile',
        name: 'Osmo Mobile',
        addressType: 0,
        rssi: -67,
        interval: 100,
        ad: [
          [0x01, '06'],
          [0x03, 'f0ff'],
        ],
        scanResponse: [[0x09, hexOfText('Osmo Mobile')]],
        properties: DJI_PROPERTIES,
        values: DJI_VALUES,
        descriptorValues: DJI_DESCRIPTOR_VALUES,
        notify: DJI_NOTIFY,
        encrypted: DJI_ENCRYPTED,
        mtu: 185,
        behaviour: { connectDelayMs: 60, connectError: 256, connectErrorAttempts: 1, pairing: 'just-works' },
        notes: [
          'Address type 0: the first octet 0x78 is not in the random static range.',
          'Properties assigned (bluetoothctl prints none): GAP 0x2A00/0x2A01/0x2A02/0x2A04 read, 0x2A03 write; 0x2A05 indicate; 0xFFF1/0xFFF3 read+write; 0xFFF4 notify; 0xFFF5 write+write-without-response; 0x2A50 read; 0x2A19 read+notify; HID info/report map read, control point write-without-response, protocol mode read+write-without-response, input report read+notify, output report read+write+write-without-response.',
          'HID report map and reports are encrypted: they answer 0x05 until paired.',
          'The first connect attempt fails with 256 (ESP_GATT_CONN_CONN_CANCEL) to exercise retries.',
        ],
      },
      { ads: ['tilt-001'], interval: 1000 },
      { ads: ['mikrotik-002'], interval: 1000 },
      { ads: ['michelin-001'], interval: 2000 },
      { ads: ['inkbird-008'], interval: 2000 },
    ],
  },
];

function microbit(rssi) {
  return {
    gatt: 'microbit-541c',
    name: 'BBC micro:bit [pugit]',
    addressType: 1,
    rssi,
    interval: 100,
    ad: [
      [0x01, '06'],
      [0x09, hexOfText('BBC micro:bit [pugit]')],
    ],
    values: MICROBIT_VALUES,
    notify: MICROBIT_NOTIFY,
    mtu: 23,
    echo: { 38: 40 },
    behaviour: { connectDelayMs: 80 },
    notes: [
      'Address type 1: E4:43:33:7E:54:1C is a random static address (top bits 11), as micro:bit v1 uses.',
      'Handles 1-7 are absent: BlueZ does not export the GAP service (gatt-services.json notes).',
      'Writes to the PWM control characteristic (0x0026) are echoed to the pin data characteristic (0x0028).',
    ],
  };
}

function lamarzocco(rssi) {
  return {
    gatt: 'lamarzocco-esphome',
    name: 'LM-espresso',
    addressType: 0,
    rssi,
    interval: 200,
    ad: [
      [0x01, '06'],
      [0x07, uuid128Le('d30a7847-e12b-09a8-b04b-8e0922a9abab')],
    ],
    scanResponse: [[0x09, hexOfText('LM-espresso')]],
    values: LAMARZOCCO_VALUES,
    mtu: 247,
    behaviour: { connectDelayMs: 40 },
    notes: ['Address type 0: the OUI 34:AB:95 is Espressif (public).', 'The name LM-espresso is made up.'],
  };
}

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

function hexOfText(text) {
  return Buffer.from(text, 'utf8').toString('hex');
}

function uuid128Le(uuid) {
  return Buffer.from(uuid.replaceAll('-', ''), 'hex').reverse().toString('hex');
}

function adStructures(fields) {
  return fields
    .map(([type, hex]) => (hex.length / 2 + 1).toString(16).padStart(2, '0') + type.toString(16).padStart(2, '0') + hex)
    .join('');
}

/** Address type when the source does not say: random if it has the random static form (top bits 11). */
function inferAddressType(mac) {
  return (Number.parseInt(mac.slice(0, 2), 16) & 0xc0) === 0xc0 ? 1 : 0;
}

function short(uuid) {
  return uuid.startsWith('0000') && uuid.endsWith(BASE_SUFFIX) ? uuid.slice(4, 8) : uuid;
}

function advertiser(recipe) {
  const records = recipe.ads.map((id) => {
    const record = adById.get(id);
    if (record === undefined) throw new Error(`unknown advertisement id ${id}`);
    return record;
  });
  const first = records[0];
  if (records.some((r) => r.address !== first.address)) throw new Error(`advertisements ${recipe.ads} have different addresses`);
  const notes = [];
  let addressType = records.find((r) => r.address_type !== null)?.address_type;
  if (addressType === undefined) {
    addressType = inferAddressType(first.address);
    notes.push(`Address type ${addressType} inferred from the address form (the source does not give it).`);
  }
  if (records.some((r) => r.raw_built)) notes.push('Some payloads were rebuilt from parsed fields by fixtures/data (raw_built).');
  const rssi = records.find((r) => r.rssi !== null)?.rssi ?? -70;
  const name = records.find((r) => r.local_name)?.local_name?.replace(/\0+$/, '') || first.device;
  return {
    mac: first.address,
    addressType,
    name,
    source: `ble-advertisements.json ${recipe.ads.join(', ')} (${[...new Set(records.map((r) => r.source))].join('; ')})`,
    ...(notes.length > 0 ? { notes } : {}),
    rssi,
    rssiJitter: 4,
    advertisingIntervalMs: recipe.interval,
    connectable: false,
    advertisements: records.map((r) => r.raw_ad_hex),
  };
}

function gattPeripheral(recipe) {
  const device = gattById.get(recipe.gatt);
  if (device === undefined) throw new Error(`unknown GATT device ${recipe.gatt}`);
  const notes = [...recipe.notes];
  const services = device.services.map((service, si) => ({
    uuid: short(service.uuid),
    handle: service.handle,
    characteristics: service.characteristics.map((c, ci) => {
      const names = c.properties ?? recipe.properties?.[c.handle];
      if (names === undefined) throw new Error(`${recipe.gatt}: no properties for handle ${c.handle}`);
      const descriptors = c.descriptors.map((d) => {
        const value = recipe.descriptorValues?.[d.handle];
        return { uuid: short(d.uuid), handle: d.handle, ...(value === undefined ? {} : { value }) };
      });
      const subscribable = names.includes('notify') || names.includes('indicate');
      if (subscribable && !c.descriptors.some((d) => d.uuid === CCCD)) {
        const handle = c.handle + 1;
        const next = nextHandle(device, si, ci);
        if (descriptors.some((d) => d.handle === handle) || (next !== undefined && handle >= next)) {
          throw new Error(`${recipe.gatt}: no free handle for the CCCD of ${c.handle}`);
        }
        descriptors.unshift({ uuid: '2902', handle });
        notes.push(`CCCD added at handle ${handle} for characteristic ${c.handle}.`);
      }
      const value = recipe.values?.[c.handle];
      const notify = recipe.notify?.[c.handle];
      const echoTo = recipe.echo?.[c.handle];
      return {
        uuid: short(c.uuid),
        handle: c.handle,
        properties: names,
        ...(value === undefined ? {} : { value }),
        ...(descriptors.length > 0 ? { descriptors } : {}),
        ...(notify === undefined ? {} : { notify }),
        ...(recipe.encrypted?.includes(c.handle) ? { encrypted: true } : {}),
        ...(echoTo === undefined ? {} : { echoTo }),
      };
    }),
  }));
  notes.push(`Advertisement built by scripts/build-profiles.mjs (flags, service UUID, name); the GATT source has none.`);
  notes.push('Characteristic values are plausible placeholders, not captured data.');
  return {
    mac: device.address,
    addressType: recipe.addressType,
    name: recipe.name,
    source: `gatt-services.json ${device.id} (${device.source})`,
    notes,
    rssi: recipe.rssi,
    rssiJitter: 3,
    advertisingIntervalMs: recipe.interval,
    connectable: true,
    advertisements: [adStructures(recipe.ad), ...(recipe.scanResponse ? [adStructures(recipe.scanResponse)] : [])],
    gatt: { mtu: recipe.mtu, services },
    behaviour: behaviour(recipe.behaviour),
  };
}

/** Behaviour with every knob spelled out, in a fixed key order. */
function behaviour(overrides) {
  const merged = {
    connectDelayMs: 30,
    connectError: 0,
    connectErrorAttempts: undefined,
    responseDelayMs: 0,
    pairing: 'just-works',
    ...overrides,
  };
  return Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined));
}

function nextHandle(device, si, ci) {
  const service = device.services[si];
  const nextCharacteristic = service.characteristics[ci + 1];
  if (nextCharacteristic !== undefined) return nextCharacteristic.declaration_handle ?? nextCharacteristic.handle - 1;
  return device.services[si + 1]?.handle;
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

let stale = 0;
for (const profile of PROFILES) {
  const json = {
    name: profile.name,
    description: profile.description,
    notes: ['Generated by scripts/build-profiles.mjs from fixtures/data; edit the script, not this file.'],
    peripherals: profile.peripherals.map((p) => (p.gatt !== undefined ? gattPeripheral(p) : advertiser(p))),
  };
  const text = `${format(json, '')}\n`;
  const path = join(OUT_DIR, `${profile.name}.json`);
  if (CHECK) {
    let current = '';
    try {
      current = readFileSync(path, 'utf8');
    } catch {}
    if (current !== text) {
      console.error(`${path} is stale; run node scripts/build-profiles.mjs`);
      stale++;
    }
  } else {
    writeFileSync(path, text);
    console.log(`wrote ${path} (${text.length} bytes)`);
  }
}
if (stale > 0) process.exit(1);

/** JSON with 2-space indent; anything that fits in one line of 140 columns stays on one line, for short readable diffs. */
function format(value, indent, prefix = 0) {
  const inline = JSON.stringify(value);
  if (indent.length + prefix + inline.length <= 140) return inline;
  const inner = `${indent}  `;
  if (Array.isArray(value)) return `[\n${value.map((v) => inner + format(v, inner)).join(',\n')}\n${indent}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${format(v, inner, k.length + 4)}`);
    return `{\n${entries.join(',\n')}\n${indent}}`;
  }
  return inline;
}
