import { randomBytes } from 'node:crypto';
import { parseMac } from '../../bluetooth/address.js';
import { describeConnectionError } from '../../bluetooth/codes.js';
import { MdnsDiscovery } from '../../discovery/mdns.js';
import type { AttemptRecord } from '../../errors.js';
import { type SimulatedNode, startSimulatedProxy } from '../../fixture-server/fleet.js';
import { MdnsAdvertiser, simulatedProxyTxt } from '../../fixture-server/mdns-advertiser.js';
import { type DeviceProfile, loadProfile, type PeripheralProfile, resolveProfilePath } from '../../fixture-server/profile.js';
import type { PooledConnection } from '../../pool/pooled-connection.js';
import { ProxyPool } from '../../pool/proxy-pool.js';
import { sleep } from '../../util/abort.js';
import { type Command, intOption, UsageError } from '../command.js';
import { EXIT, type Output, paint, Spinner } from '../output.js';
import { hexOf, printable, sanitize } from '../single-proxy.js';
import { option } from '../vocabulary.js';
import { proxyNames, rankingTable, verdictOf } from './explain.js';
import { slotsTable } from './slots.js';

/** The default profile's connectable demo peripheral (fixtures/profiles/README.md), placed in every room. */
const DEMO_MAC = 'C0:FF:EE:00:00:01';
const DEMO_ADDRESS = parseMac(DEMO_MAC);
const STATUS_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b01';
const COMMAND_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b02';
const COUNTER_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b04';
const STATUS_SERVICE_UUID = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b00';
/** Each MQTT step (broker up, first advertisement, the read's answer) takes well under a second on loopback. */
const MQTT_STEP_MS = 5_000;
/** The counter notifies every 500 ms: three take about 1.5 s. */
const NOTIFICATIONS_SHOWN = 3;
/** The whole demo normally takes 4-6 s; past this something is wrong and it stops instead of hanging CI. */
const DEMO_DEADLINE_MS = 45_000;
/** How long discovery plus the first advertisements may take before the demo gives up. */
const FLEET_READY_MS = 15_000;
/** How long to wait for the notifications before giving up on them. */
const NOTIFY_WAIT_MS = 5_000;
/** mDNS on loopback uses a random private UDP port so parallel runs (and a real responder on 5353) never meet. */
const MDNS_PORT_MIN = 20_000;
const MDNS_PORT_SPAN = 40_000;

/** One simulated room: its proxy's neighbourhood and where the demo device sits in it. */
interface Room {
  readonly name: string;
  readonly profile: string;
  /** RSSI of the demo device as heard by this proxy (dBm). */
  readonly demoRssi: number;
  readonly encrypted: boolean;
  /** Slots held by another client. */
  readonly slotsBusy: number;
}

// Kitchen hears the device best but another client holds all its slots; living-room is next best but its
// controller cancels our first connect (0x100, what firmware reports when it has no room); office (Noise) is third.
const ROOMS: readonly Room[] = [
  { name: 'kitchen', profile: 'kitchen', demoRssi: -50, encrypted: false, slotsBusy: 3 },
  { name: 'living-room', profile: 'living-room', demoRssi: -58, encrypted: false, slotsBusy: 0 },
  { name: 'garage', profile: 'garage', demoRssi: -80, encrypted: false, slotsBusy: 1 },
  { name: 'office', profile: 'default', demoRssi: -66, encrypted: true, slotsBusy: 0 },
];
const SLOT_LIMIT = 3;

/** `esphome-ble demo`: the whole SDK end to end against simulated proxies on loopback. */
export const demoCommand: Command = {
  name: 'demo',
  summary: 'Run the SDK end to end against 4 simulated proxies on loopback (no hardware needed)',
  usage: 'esphome-ble demo [--mdns-port N]',
  options: { 'mdns-port': option('mdns-port', { description: 'UDP port of the loopback mDNS', default: 'a random private port' }) },
  examples: ['esphome-ble demo', 'npm run demo'],
  noJson: 'a guided tour for people; the commands it shows each have --json',
  help: [
    'Starts four simulated ESPHome Bluetooth proxies on 127.0.0.1 (kitchen, living-room, garage and a',
    'Noise-encrypted office), announces them over mDNS on loopback only, discovers them, and feeds a',
    'ProxyPool. Then: slot table, explain for the demo device, a connect that fails over from a refusing',
    'proxy, GATT read / write / notifications, disconnect, and a reconnect served from the GATT cache.',
    'Nothing leaves the loopback interface; --mdns-port picks the UDP port (default: a random private one).',
  ].join('\n'),
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const mdnsPort = intOption(args, 'mdns-port', 1024, 65_535) ?? MDNS_PORT_MIN + Math.floor(Math.random() * MDNS_PORT_SPAN);
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new Error(`the demo did not finish within ${DEMO_DEADLINE_MS / 1000} s`)),
      DEMO_DEADLINE_MS,
    );
    const signal = AbortSignal.any([ctx.signal, deadline.signal]);
    const demo = new Demo(ctx.out, signal, mdnsPort);
    try {
      await demo.run();
      return EXIT.ok;
    } catch (error) {
      if (ctx.signal.aborted) {
        ctx.out.error('interrupted');
        return EXIT.interrupted;
      }
      throw deadline.signal.aborted ? deadline.signal.reason : error;
    } finally {
      clearTimeout(timer);
      await demo.close();
    }
  },
};

/** The demo's steps and everything it opened. */
class Demo {
  readonly #out: Output;
  readonly #signal: AbortSignal;
  readonly #mdnsPort: number;
  readonly #spinner: Spinner;
  readonly #nodes = new Map<string, SimulatedNode>();
  readonly #started = performance.now();
  #advertiser: MdnsAdvertiser | undefined;
  #discovery: MdnsDiscovery | undefined;
  #pool: ProxyPool | undefined;
  #connection: PooledConnection | undefined;
  #step = 0;

  constructor(out: Output, signal: AbortSignal, mdnsPort: number) {
    this.#out = out;
    this.#signal = signal;
    this.#mdnsPort = mdnsPort;
    this.#spinner = new Spinner(out);
  }

  async run(): Promise<void> {
    const out = this.#out;
    out.line(paint(out, 'bold', 'esphome-ble demo') + ' — 4 simulated Bluetooth proxies on 127.0.0.1; nothing leaves loopback.');
    const psk = randomBytes(32).toString('base64');
    await this.#startFleet(psk);
    const pool = await this.#discover(psk);
    this.#showSlots(pool);
    const skipped = this.#explain(pool);
    const first = await this.#connect(pool);
    const notifications = await this.#useGatt(first.connection);
    const cached = await this.#reconnect(pool, first.connection);
    const mqtt = await this.#mqtt(pool);
    this.#summary(skipped, first, cached, notifications, mqtt);
  }

  /** Closes everything this demo opened, in reverse order. Idempotent. */
  async close(): Promise<void> {
    this.#spinner.stop();
    await this.#connection?.disconnect({ timeout: 2_000 }).catch(() => {});
    this.#connection = undefined;
    await this.#pool?.close();
    await this.#discovery?.close();
    await this.#advertiser?.close();
    await Promise.allSettled([...this.#nodes.values()].map((n) => n.server.close()));
    this.#nodes.clear();
  }

  async #startFleet(psk: string): Promise<void> {
    const out = this.#out;
    this.#header('Simulated fleet');
    const defaultProfile = await loadProfile(resolveProfilePath('default'));
    const demo = defaultProfile.peripherals.find((p) => p.mac === DEMO_MAC);
    if (demo === undefined) throw new Error(`default profile lacks ${DEMO_MAC}`);
    for (const room of ROOMS) {
      const base = room.profile === 'default' ? defaultProfile : await loadProfile(resolveProfilePath(room.profile));
      const node = await startSimulatedProxy({
        name: room.name,
        host: '127.0.0.1',
        port: 0,
        profile: withDevice(base, { ...demo, rssi: room.demoRssi }),
        slots: SLOT_LIMIT,
        slotsBusy: room.slotsBusy,
        bluetoothMac: `AA:BB:CC:00:00:0${this.#nodes.size + 1}`,
        ...(room.encrypted ? { psk } : {}),
      });
      this.#nodes.set(room.name, node);
      const devices = node.bluetooth.peripherals.length;
      out.line(
        `  ${room.name.padEnd(12)} 127.0.0.1:${String(node.server.address.port).padEnd(5)}  ${room.encrypted ? 'noise    ' : 'plaintext'}  ` +
          `${devices} devices nearby, ${SLOT_LIMIT - room.slotsBusy}/${SLOT_LIMIT} slots free`,
      );
    }
    // The race a real fleet has: the proxy's slot count said "free", its controller still says no.
    this.#node('living-room').bluetooth.setBehaviour(DEMO_ADDRESS, { connectError: 0x100, connectErrorCount: 1 });
    out.line(
      paint(
        out,
        'dim',
        `  Scripted: another client holds all of kitchen's slots; living-room's controller refuses our first connect (0x100).`,
      ),
    );
  }

  async #discover(psk: string): Promise<ProxyPool> {
    const out = this.#out;
    this.#header(`mDNS discovery (127.0.0.1, UDP ${this.#mdnsPort})`);
    const socket = { interface: '127.0.0.1', bind: '0.0.0.0', port: this.#mdnsPort };
    const advertiser = new MdnsAdvertiser(socket);
    this.#advertiser = advertiser;
    for (const room of ROOMS) {
      const node = this.#node(room.name);
      advertiser.publish({
        name: room.name,
        port: node.server.address.port,
        host: '127.0.0.1',
        txt: simulatedProxyTxt({ mac: node.server.mac, encrypted: room.encrypted, friendlyName: title(room.name) }),
      });
    }
    const started = performance.now();
    const discovery = new MdnsDiscovery(socket);
    this.#discovery = discovery;
    // Only the office key is known: the pool picks it by node name when office shows up.
    const pool = new ProxyPool([], { discovery, keys: { office: psk }, clientInfo: 'esphome-ble demo' });
    this.#pool = pool;
    pool.start();
    this.#spinner.update('waiting for mDNS answers and the first advertisements');
    await this.#until(
      () => {
        const online = pool.proxies().filter((p) => p.online).length;
        return online === ROOMS.length && pool.explain(DEMO_ADDRESS).length === ROOMS.length;
      },
      FLEET_READY_MS,
      () => `only ${pool.proxies().filter((p) => p.online).length}/${ROOMS.length} proxies came up via mDNS`,
    );
    this.#spinner.stop();
    const found = discovery.snapshot().sort((a, b) => a.name.localeCompare(b.name));
    out.line(
      `  found ${found.length} proxies: ${found.map((p) => `${p.name}${p.txt.encryption === 'required' ? ' (noise)' : ''}`).join(', ')}`,
    );
    out.line(`  ProxyPool connected to all ${ROOMS.length} (office with its Noise key) in ${ms(performance.now() - started)}`);
    return pool;
  }

  #showSlots(pool: ProxyPool): void {
    this.#header('Connection slots (esphome-ble slots)');
    this.#out.line(indent(slotsTable(this.#out, pool)));
  }

  /** Prints the ranking; returns the proxies that hear the device but are not eligible, with why. */
  #explain(pool: ProxyPool): string[] {
    const out = this.#out;
    const name = pool.devices().find((d) => d.address === DEMO_ADDRESS)?.name;
    this.#header(`Who should connect to ${DEMO_MAC}${name ? ` (${sanitize(name)})` : ''}? (esphome-ble explain)`);
    const ranking = pool.explain(DEMO_ADDRESS);
    out.line(indent(rankingTable(out, ranking, proxyNames(pool))));
    out.line(`  ${verdictOf(pool, DEMO_ADDRESS, ranking).message}`);
    return ranking.filter((r) => !r.eligible).map((r) => `${r.proxy} (${r.reason})`);
  }

  async #connect(pool: ProxyPool): Promise<Connected> {
    const out = this.#out;
    this.#header('establishConnection');
    const before = this.#servicesRequests();
    const started = performance.now();
    this.#spinner.update(`connecting to ${DEMO_MAC}`);
    const connection = await pool.establishConnection(DEMO_MAC, { name: 'demo device', signal: this.#signal });
    this.#connection = connection;
    this.#spinner.stop();
    const elapsed = performance.now() - started;
    for (const attempt of connection.timeline) out.line(`  ${attemptLine(out, attempt)}`);
    const failed = connection.timeline.filter((a) => a.proxy !== undefined && a.proxy !== connection.proxy).map((a) => a.proxy!);
    const via = `${connection.proxy}${this.#node(connection.proxy).server.psk ? ' (Noise)' : ''}`;
    const services = connection.services.services.length;
    out.line(
      failed.length > 0
        ? `  failover: ${[...new Set(failed)].join(', ')} refused, connected via ${via} after ${connection.timeline.length} attempts in ${ms(elapsed)}`
        : `  connected via ${via} in ${ms(elapsed)}`,
    );
    const requests = this.#servicesRequests() - before;
    out.line(
      `  fromCache: ${connection.fromCache} (${services} services discovered with ${plural(requests, 'GetServices request')}, MTU ${connection.mtu})`,
    );
    return { connection, ms: elapsed, servicesRequests: requests };
  }

  async #useGatt(connection: PooledConnection): Promise<string[]> {
    const out = this.#out;
    this.#header('GATT read / write / notify');
    const status = await connection.read(STATUS_UUID, { signal: this.#signal });
    out.line(`  read   status   ${valueText(status)}`);
    const command = new TextEncoder().encode('hello from esphome-ble');
    await connection.write(COMMAND_UUID, command, { signal: this.#signal });
    out.line(`  write  command  ${valueText(command)}`);
    out.line(`  read   status   ${valueText(await connection.read(STATUS_UUID, { signal: this.#signal }))}  (the device echoes commands)`);
    this.#spinner.update('waiting for notifications');
    const values = await this.#notifications(connection);
    this.#spinner.stop();
    out.line(`  notify counter  ${values.join(' ')}  (${values.length} notifications, then unsubscribed)`);
    await connection.disconnect({ signal: this.#signal });
    this.#connection = undefined;
    const slots = this.#pool?.proxies().find((p) => p.id === connection.proxy)?.slots;
    out.line(`  disconnected; ${connection.proxy} now has ${slots ? `${slots.free}/${slots.limit}` : 'unknown'} slots free`);
    return values;
  }

  async #notifications(connection: PooledConnection): Promise<string[]> {
    const values: string[] = [];
    let done: () => void = () => {};
    const enough = new Promise<void>((resolve) => {
      done = resolve;
    });
    const unsubscribe = await connection.startNotify(
      COUNTER_UUID,
      (data) => {
        if (values.length >= NOTIFICATIONS_SHOWN) return;
        values.push(hexOf(data));
        if (values.length === NOTIFICATIONS_SHOWN) done();
      },
      { signal: this.#signal },
    );
    const timer = setTimeout(done, NOTIFY_WAIT_MS);
    const onAbort = (): void => done();
    this.#signal.addEventListener('abort', onAbort, { once: true });
    try {
      await enough;
      this.#signal.throwIfAborted();
    } finally {
      clearTimeout(timer);
      this.#signal.removeEventListener('abort', onAbort);
      await unsubscribe().catch(() => {});
    }
    if (values.length === 0) throw new Error(`no notification from ${DEMO_MAC} within ${NOTIFY_WAIT_MS} ms`);
    return values;
  }

  async #reconnect(pool: ProxyPool, first: PooledConnection): Promise<Connected> {
    const out = this.#out;
    this.#header('Reconnect with the GATT cache');
    const before = this.#servicesRequests();
    const started = performance.now();
    // The cache is per device and proxy (handles may differ between proxies), so ask for the same proxy.
    const connection = await pool.establishConnection(DEMO_MAC, { require: [first.proxy], signal: this.#signal });
    this.#connection = connection;
    const elapsed = performance.now() - started;
    const requests = this.#servicesRequests() - before;
    out.line(
      `  connected via ${connection.proxy} in ${ms(elapsed)}, fromCache: ${connection.fromCache} (${plural(requests, 'GetServices request')})`,
    );
    out.line(`  read   status   ${valueText(await connection.read(STATUS_UUID, { signal: this.#signal }))}`);
    await connection.disconnect({ signal: this.#signal });
    this.#connection = undefined;
    return { connection, ms: elapsed, servicesRequests: requests };
  }

  /** The fleet on an embedded MQTT broker (loopback, a free port): an advertisement and a GATT read over MQTT. */
  async #mqtt(pool: ProxyPool): Promise<string> {
    const out = this.#out;
    this.#header('MQTT gateway (OpenMQTTGateway topics, embedded broker on loopback)');
    // Loaded here, as by the mqtt command: MQTT.js and aedes are not needed by the rest of the demo.
    const [{ MqttGateway }, { default: mqtt }] = await Promise.all([import('../../mqtt/mqtt-gateway.js'), import('mqtt')]);
    const started = performance.now();
    const gateway = new MqttGateway({
      pool,
      name: 'esphome-ble-demo',
      embeddedBroker: { host: '127.0.0.1', port: 0 },
      commands: { allowRead: [DEMO_MAC] },
    });
    const topics = gateway.topics;
    let client: import('mqtt').MqttClient | undefined;
    try {
      await gateway.start({ signal: this.#signal, timeout: MQTT_STEP_MS });
      out.line(`  broker ${gateway.brokerUrl} (embedded); gateway ${gateway.name} is ${paint(out, 'green', 'online')} on ${topics.lwt}`);
      client = await mqtt.connectAsync(gateway.brokerUrl!, { reconnectPeriod: 0, connectTimeout: MQTT_STEP_MS });
      const received: Array<{ topic: string; text: string }> = [];
      let wake: () => void = () => {};
      client.on('message', (topic, payload) => {
        received.push({ topic, text: payload.toString('utf8') });
        wake();
      });
      const next = async (match: (m: { topic: string; text: string }) => boolean, what: string) => {
        const deadline = performance.now() + MQTT_STEP_MS;
        for (;;) {
          const found = received.find(match);
          if (found !== undefined) return found;
          if (performance.now() > deadline) throw new Error(`demo: no ${what} over MQTT within ${MQTT_STEP_MS / 1000} s`);
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, 50);
          });
          this.#signal.throwIfAborted();
        }
      };
      await client.subscribeAsync(`${topics.bt}/#`);
      const device = topics.device(DEMO_MAC);
      const ad = await next((m) => m.topic === device, 'advertisement');
      out.line(`  ${ad.topic}`);
      out.line(`    ${ad.text}`);
      const other = await next((m) => m.topic !== device && m.topic.startsWith(`${topics.bt}/`), 'advertisement of another device');
      out.line(`  ${other.topic}`);
      out.line(`    ${other.text}`);
      const command = JSON.stringify({
        ble_read_address: DEMO_MAC,
        ble_read_service: STATUS_SERVICE_UUID,
        ble_read_char: STATUS_UUID,
        value_type: 'STRING',
      });
      out.line(`  publish ${topics.commands}`);
      out.line(`    ${command}`);
      await client.publishAsync(topics.commands, command);
      const answer = await next((m) => m.topic === device && m.text.includes('"success"'), 'answer to the read');
      out.line(`  answer on ${answer.topic}`);
      out.line(`    ${answer.text}`);
      const stats = gateway.stats();
      return `MQTT: ${stats.advertisementsPublished} advertisements published and a GATT read answered over the embedded broker in ${ms(performance.now() - started)}`;
    } finally {
      await client?.endAsync(true).catch(() => {});
      await gateway.close();
    }
  }

  #summary(skipped: readonly string[], first: Connected, cached: Connected, notifications: readonly string[], mqtt: string): void {
    const out = this.#out;
    this.#header('Summary');
    const link = first.connection;
    const refused = [...new Set(link.timeline.filter((a) => a.proxy !== undefined && a.proxy !== link.proxy).map((a) => a.proxy))];
    const encrypted = ROOMS.filter((r) => r.encrypted).length;
    const lines = [
      `${ROOMS.length} proxies found over mDNS (${encrypted} with Noise encryption)${skipped.length > 0 ? `; skipped by ranking: ${skipped.join(', ')}` : ''}`,
      refused.length > 0
        ? `failover: ${refused.join(', ')} refused, ${link.proxy} connected (${link.timeline.length} attempts, ${ms(first.ms)})`
        : `connected via ${link.proxy} on the first attempt (${ms(first.ms)})`,
      `read, write and ${notifications.length} notifications through ${link.proxy}`,
      `cached reconnect in ${ms(cached.ms)}: fromCache: ${cached.connection.fromCache}, ${plural(cached.servicesRequests, 'GetServices request')} ` +
        `(first link: ${first.servicesRequests}; on loopback discovery is cheap, over the air it costs round trips per service)`,
      mqtt,
      `total ${((performance.now() - this.#started) / 1000).toFixed(1)} s; everything closed`,
    ];
    for (const line of lines) out.line(`  ${paint(out, 'green', '✓')} ${line}`);
  }

  /** GetServices requests the simulated proxies have answered so far. */
  #servicesRequests(): number {
    let total = 0;
    for (const node of this.#nodes.values()) total += node.bluetooth.servicesRequests;
    return total;
  }

  #header(text: string): void {
    this.#step++;
    this.#out.line('');
    this.#out.line(paint(this.#out, 'bold', `${this.#step}. ${text}`));
  }

  #node(name: string): SimulatedNode {
    const node = this.#nodes.get(name);
    if (node === undefined) throw new Error(`no simulated proxy named ${name}`);
    return node;
  }

  async #until(ready: () => boolean, withinMs: number, why: () => string): Promise<void> {
    const deadline = performance.now() + withinMs;
    while (!ready()) {
      if (performance.now() > deadline) throw new Error(`demo setup failed: ${why()} within ${withinMs / 1000} s`);
      await sleep(25, this.#signal);
    }
  }
}

/** A link the demo opened, with how long it took and the service discovery it needed. */
interface Connected {
  readonly connection: PooledConnection;
  readonly ms: number;
  readonly servicesRequests: number;
}

/** `profile` with `device` added (replacing a peripheral of the same MAC). */
function withDevice(profile: DeviceProfile, device: PeripheralProfile): DeviceProfile {
  return { ...profile, peripherals: [...profile.peripherals.filter((p) => p.mac !== device.mac), device] };
}

function attemptLine(out: Output, a: AttemptRecord): string {
  const where = `attempt ${a.attempt}  ${(a.proxy ?? '-').padEnd(12)} ${a.rssi === undefined ? '' : `${Math.round(a.rssi)} dBm`.padEnd(8)}`;
  if (a.code === undefined) return `${where} ${paint(out, 'green', 'connected')}  ${ms(a.ms)}`;
  const reason = a.reason === undefined ? a.code : `${a.code} (0x${a.reason.toString(16)} ${describeConnectionError(a.reason).name})`;
  return `${where} ${paint(out, 'yellow', 'refused')}    ${ms(a.ms)}  ${reason}`;
}

function valueText(data: Uint8Array): string {
  const text = printable(data);
  return text === undefined ? hexOf(data) : JSON.stringify(sanitize(text));
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}

function title(name: string): string {
  return name
    .split('-')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(' ');
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function ms(value: number): string {
  return `${Math.round(value)} ms`;
}
