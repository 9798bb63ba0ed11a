// Records one API session per major flow against the simulator into fixtures/recordings/*.jsonl.
// Uses the built library (dist/): run `npm run build` first. Output is stable enough to diff:
// seeded RSSI jitter, fixed names and MACs, times rounded to RESOLUTION_MS, a date-only recordedAt.
//
//   node scripts/record-fixtures.mjs [--out <dir>] [--only <name>[,<name>...]] [--list] [--check]
//
// --check records into memory and fails when a committed file differs in anything but `t` and recordedAt
// (times move by a few 10-ms steps from run to run; message content and order must not).
//
// test/integration/replay.test.ts replays every file with the same client flow; keep the two in step.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
if (!existsSync(join(DIST, 'fixture-server', 'recorder.js'))) {
  console.error('dist/ is missing or stale: run `npm run build` first');
  process.exit(2);
}
const load = (path) => import(pathToFileURL(join(DIST, path)).href);
const { ApiConnection } = await load('connection/connection.js');
const { BluetoothProxy } = await load('bluetooth/proxy-client.js');
const { startSimulatedProxy } = await load('fixture-server/fleet.js');
const { DEFAULT_PROFILE_PATH, loadProfile } = await load('fixture-server/profile.js');
const { seededRandom } = await load('fixture-server/simulated-peripheral.js');
const { SessionRecorder } = await load('fixture-server/recorder.js');
const { parseTranscript } = await load('fixture-server/transcript.js');
const { RAW_ADVERTISEMENTS_MESSAGE_ID } = await load('bluetooth/raw-advertisements.js');

/** Coarse enough that run-to-run scheduling jitter rarely changes a value, fine enough to keep the pace. */
const RESOLUTION_MS = 10;
/** Node identity of every recording (the Noise handshake and DeviceInfo carry it). */
const NODE = { name: 'recorded-proxy', mac: '02:00:00:00:00:01', bluetoothMac: 'AA:BB:CC:00:00:01' };
/** Same key as test/helpers/fixture.ts TEST_PSK (spec Appendix A): the replay test serves the noise file with it. */
const TEST_PSK = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
/** The default profile's connectable demo peripheral (random address). */
const DEMO = 0xc0ffee000001;
const DEMO_ADDRESS_TYPE = 1;
/** A few batches: the first carries every device (the simulator starts them all at once), later ones the fast advertisers. */
const SCAN_BATCHES = 3;
/** Simulated link loss delay: long enough that the connect reply and the loss are separate moments. */
const LINK_LOSS_AFTER_MS = 300;

const defaultProfile = await loadProfile(DEFAULT_PROFILE_PATH);
const demoOnly = { ...defaultProfile, peripherals: defaultProfile.peripherals.filter((p) => p.address === DEMO) };

/** Client flows; each gets a connected ApiConnection and the simulated node. */
const FLOWS = [
  {
    name: 'handshake-plaintext',
    description: 'Plaintext session: Hello (+ empty legacy login), DeviceInfo, DeviceCapabilities, graceful Disconnect.',
    node: { profile: demoOnly, advertise: false },
    async run() {},
  },
  {
    name: 'handshake-noise',
    description:
      'Noise session (messages after the handshake, decrypted): Hello, DeviceInfo, DeviceCapabilities, Disconnect. Replay with any --psk.',
    node: { profile: demoOnly, advertise: false, psk: TEST_PSK },
    async run() {},
  },
  {
    name: 'scan',
    description: `Bluetooth subscribe (raw advertisements, scanner state, slots), ${SCAN_BATCHES} advertisement batches (all four default-profile devices heard), unsubscribe, Disconnect.`,
    node: { profile: defaultProfile },
    async run(api) {
      const proxy = await BluetoothProxy.attach(api);
      const wanted = new Set(defaultProfile.peripherals.map((p) => p.address));
      let batches = 0;
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${batches} batches, ${wanted.size} devices never heard`)), 5_000);
        const offAds = proxy.onAdvertisement((ad) => wanted.delete(ad.address));
        // Registered after the proxy's own listener, so the batch's advertisements are already counted.
        const offBatches = api.onRaw(RAW_ADVERTISEMENTS_MESSAGE_ID, () => {
          batches++;
          if (batches < SCAN_BATCHES || wanted.size > 0) return;
          clearTimeout(timer);
          offAds();
          offBatches();
          resolve();
        });
      });
      await proxy.detach();
    },
  },
  {
    name: 'gatt',
    description:
      'Connect C0:FF:EE:00:00:01 without cache, services, read 0x0003 (device name), write "hello" to 0x000e, read it back from 0x000c, notify on 0x0012 until one notification, stop, disconnect, Disconnect.',
    node: { profile: demoOnly, advertise: false },
    async run(api) {
      const proxy = await BluetoothProxy.attach(api);
      const link = await proxy.connect(DEMO, { addressType: DEMO_ADDRESS_TYPE });
      await link.getServices();
      await link.read(0x03);
      await link.write(0x0e, new TextEncoder().encode('hello'));
      await link.read(0x0c);
      let gotOne;
      const first = new Promise((resolve) => {
        gotOne = resolve;
      });
      const stop = await link.startNotify(0x12, (data) => gotOne(data));
      await first;
      await stop();
      await link.disconnect();
      await proxy.detach();
    },
  },
  {
    name: 'out-of-slots',
    description:
      'Every slot held by another client: connect C0:FF:EE:00:00:01 is refused at once (connected=false, error 0), unsubscribe, Disconnect.',
    node: { profile: demoOnly, advertise: false, slotsBusy: 3 },
    async run(api) {
      const proxy = await BluetoothProxy.attach(api);
      const refused = await proxy.connect(DEMO, { addressType: DEMO_ADDRESS_TYPE }).then(
        () => undefined,
        (error) => error,
      );
      if (refused?.failureClass !== 'outOfSlots') throw new Error(`expected an out-of-slots refusal, got ${refused}`);
      await proxy.detach();
    },
  },
  {
    name: 'link-loss',
    description: `Connect C0:FF:EE:00:00:01, then the link drops ${LINK_LOSS_AFTER_MS} ms later (connected=false, 0x08 supervision timeout; the client waits for the slot to be freed), unsubscribe, Disconnect.`,
    node: { profile: demoOnly, advertise: false },
    async run(api, node) {
      node.bluetooth.setBehaviour(DEMO, { linkLossAfterMs: LINK_LOSS_AFTER_MS });
      const proxy = await BluetoothProxy.attach(api);
      const link = await proxy.connect(DEMO, { addressType: DEMO_ADDRESS_TYPE });
      const closed = await link.closed();
      if (closed.reason !== 0x08) throw new Error(`expected reason 0x08, got ${closed.reason}`);
      // On a dropped link this only waits for the proxy to free the slot: the recording then ends the same way every time.
      await link.disconnect();
      await proxy.detach();
    },
  },
];

const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
if (args.includes('--list')) {
  for (const flow of FLOWS) console.log(`${flow.name}\t${flow.description}`);
  process.exit(0);
}
const outDir = resolve(option('--out') ?? join(ROOT, 'fixtures', 'recordings'));
const only = option('--only')?.split(',');
const selected = only === undefined ? FLOWS : FLOWS.filter((flow) => only.includes(flow.name));
if (selected.length === 0) {
  console.error(`no flow named ${only}; try --list`);
  process.exit(2);
}

const recordedAt = new Date().toISOString().slice(0, 10);
const CHECK = args.includes('--check');
// A first, unsaved pass warms up the JIT: cold code paths otherwise shift the first recording's times by 10-20 ms.
for (const flow of selected) await record(flow);
let stale = 0;
for (const flow of selected) {
  const recorder = await record(flow);
  const path = join(outDir, `${flow.name}.jsonl`);
  if (CHECK) {
    const problem = difference(path, recorder.transcript());
    if (problem !== undefined) stale++;
    console.log(`${path}: ${problem ?? 'up to date'}`);
    continue;
  }
  await recorder.save(path);
  console.log(`${path}: ${recorder.size} messages`);
}
if (stale > 0) {
  console.error(`${stale} recording(s) differ: run node scripts/record-fixtures.mjs and review the diff`);
  process.exitCode = 1;
}

/** Why the committed file differs from a fresh recording beyond timing, or undefined. */
function difference(path, fresh) {
  if (!existsSync(path)) return 'missing';
  const committed = parseTranscript(readFileSync(path, 'utf8'), path);
  const { recordedAt: _a, ...headerA } = committed.header;
  const { recordedAt: _b, ...headerB } = fresh.header;
  if (JSON.stringify(headerA) !== JSON.stringify(headerB)) return 'header differs';
  const shape = (e) => JSON.stringify([e.dir, e.type, e.msg]);
  const length = Math.max(committed.entries.length, fresh.entries.length);
  for (let i = 0; i < length; i++) {
    const [a, b] = [committed.entries[i], fresh.entries[i]];
    if (a === undefined || b === undefined || shape(a) !== shape(b)) {
      return `entry ${i + 1} differs: committed ${a ? `${a.dir} ${a.type}` : 'nothing'}, recorded ${b ? `${b.dir} ${b.type}` : 'nothing'}`;
    }
  }
  return undefined;
}

/** Runs one flow against a fresh simulated proxy and returns its recorder. */
async function record(flow) {
  const node = await startSimulatedProxy({ host: '127.0.0.1', port: 0, ...NODE, random: seededRandom(1), ...flow.node });
  const psk = flow.node.psk;
  const recorder = new SessionRecorder(
    {
      name: NODE.name,
      mac: NODE.mac,
      encryption: psk === undefined ? 'plaintext' : 'noise',
      recordedAt,
      description: `${flow.description} Recorded against the simulator by scripts/record-fixtures.mjs.`,
    },
    { resolution: RESOLUTION_MS },
  );
  try {
    const { port } = node.server.address;
    const api = await ApiConnection.connect({ host: '127.0.0.1', port, psk, tap: recorder.tap, timeout: 5_000 });
    try {
      await flow.run(api, node);
    } finally {
      await api.close();
    }
  } finally {
    await node.server.close();
  }
  return recorder;
}
