import { isProxyBoard, PROXY_BOARDS, type ProxyBoard } from '../../fixture-server/boards.js';
import { FIRMWARE_GENERATIONS, isFirmwareGeneration, type SubscriptionPolicy } from '../../fixture-server/firmware.js';
import { nodeListeningInfo, SimulatedFleet, type SimulatedNodeOptions, startSimulatedProxy } from '../../fixture-server/fleet.js';
import { MATTER_LOG_LEVELS } from '../../fixture-server/matter/matter-peers.js';
import { ReplayPlugin, type UnrecordedAnswer } from '../../fixture-server/replay.js';
import { loadTranscript } from '../../fixture-server/transcript.js';
import { ApiServer, DEFAULT_MAX_CONNECTIONS } from '../../server/api-server.js';
import type { ApiServerEvent } from '../../server/server-events.js';
import { parseDuration } from '../../util/duration.js';
import { type Command, flag, intOption, num, portOption, str, UsageError } from '../command.js';
import { EventCoalescer } from '../event-coalescer.js';
import type { Output } from '../output.js';
import { redactingOutput, secretOption } from '../secret-options.js';
import { checkServeArguments } from '../serve-options.js';
import { hostOf } from '../single-proxy.js';
import { option } from '../vocabulary.js';

/** The values of --subscription. */
const SUBSCRIPTION_POLICIES: readonly SubscriptionPolicy[] = ['first-wins', 'newest-wins'];

/** `esphome-ble serve`: run simulated proxies (or replay a recording) until SIGINT/SIGTERM. */
export const serveCommand: Command = {
  name: 'serve',
  summary: 'Run a simulated ESPHome Bluetooth proxy (or a fleet, or a replayed recording) on loopback',
  usage: 'esphome-ble serve [--port 0] [--profile NAME|FILE | --fleet N | --replay FILE] [options]',
  options: {
    host: option('host', { description: 'Address the simulated proxy listens on (host or host:port)', default: '127.0.0.1' }),
    port: option('port', { description: 'Port to listen on (0: a free one; --fleet: P, P+1, ...)', default: '0' }),
    psk: option('psk', { description: 'Give the node this Noise key; also $ESPHOME_BLE_PSK', default: 'none: plaintext' }),
    'psk-file': option('psk-file', { default: 'none' }),
    'allow-plaintext': option('allow-plaintext', { default: 'off: plaintext on loopback only' }),
    'max-connections': option('max-connections', { default: String(DEFAULT_MAX_CONNECTIONS) }),
    'evict-unauthenticated': option('evict-unauthenticated', { default: 'off: refuse the newcomer, as the firmware' }),
    name: option('name', {
      description: 'Node name the simulated proxy calls itself (with --fleet: the prefix of name-1, name-2, ...)',
      default: 'esphome-ble-proxy',
    }),
    password: option('password', { description: 'Legacy API password the node asks for', default: 'none' }),
    'password-file': option('password-file', { default: 'none' }),
    profile: option('profile', {
      description: 'Device profile: default, kitchen, living-room, garage, matter (a Matter device, see the notes), or a JSON file',
      default: 'default (--fleet: kitchen, living-room, garage, default in turn)',
    }),
    slots: option('slots', { default: '3 (one on rp2040/rp2350)' }),
    'slots-busy': option('slots-busy', { default: '0' }),
    fleet: option('fleet', { default: 'one proxy' }),
    replay: option('replay', { default: 'none: simulate' }),
    'rssi-offset': option('rssi-offset', { default: '0' }),
    firmware: option('firmware', {
      description: `Firmware generation to play: ${FIRMWARE_GENERATIONS.join(', ')}`,
      default: 'current',
      choices: FIRMWARE_GENERATIONS,
    }),
    subscription: option('subscription', {
      default: 'first-wins (newest-wins from --firmware 2026.7)',
      choices: SUBSCRIPTION_POLICIES,
    }),
    board: option('board', { description: `Hardware to play: ${PROXY_BOARDS.join(', ')}`, default: 'esp32', choices: PROXY_BOARDS }),
    'matter-mdns-port': option('matter-mdns-port', { default: '5353' }),
    'matter-log': option('matter-log', {
      description: `--profile matter: matter.js log level (${MATTER_LOG_LEVELS.join(', ')}); also $ESPHOME_BLE_MATTER_LOG`,
      default: 'error',
      choices: MATTER_LOG_LEVELS,
    }),
    'matter-start-timeout': option('matter-start-timeout', { default: '30s' }),
    json: option('json', { description: 'Accepted for symmetry: serve always prints JSON lines', default: 'on' }),
  },
  examples: [
    'esphome-ble serve --port 16053',
    'esphome-ble serve --fleet 3 --port 0 --slots-busy 1',
    'esphome-ble serve --replay fixtures/recordings/gatt.jsonl --port 16053',
    'esphome-ble serve --port 16053 --psk-file node.key --firmware 2024.10',
    'esphome-ble serve --profile matter --port 16053',
  ],
  help: [
    'Prints one JSON line {"event":"listening",...,"devices":[...]} on stdout per proxy once ready.',
    'Profiles live in fixtures/profiles (default, kitchen, living-room, garage). --fleet N starts N proxies on',
    'consecutive ports (or free ones with --port 0) cycling through the profiles; --slots-busy holds K slots',
    'with phantom devices, links of another client; like every link they exist only while somebody holds the',
    'Bluetooth subscription (the firmware drops them all otherwise). --replay plays a recorded transcript back.',
    `--firmware plays an older firmware generation (${FIRMWARE_GENERATIONS.join(', ')}): API version, login rules,`,
    'feature flags, legacy or raw advertisements, scanner state; before 2023.6 Bluetooth answers go to every client.',
    '--subscription picks who keeps the single Bluetooth subscription when a second client subscribes (default:',
    'first-wins, newest-wins from --firmware 2026.7).',
    `--board plays the hardware (${PROXY_BOARDS.join(', ')}; default esp32): esp32-adv-only and bk72xx forward`,
    'advertisements only (no connection half: connect, GATT and slot requests go unanswered, as on 2026.8+ firmware',
    'built without connection slots); rp2040 and rp2350 have one connection slot. It combines with --firmware.',
    'Keys and passwords are never printed. Without a key only loopback may be served: another --host is refused',
    '(exit 2) unless --allow-plaintext asks for it. Contradictory options are refused (exit 2): simulation options',
    'with --replay, --slots-busy beyond --slots, slots on a board without connections or other --slots than the',
    'board has (rp2040/rp2350: 1), a --fleet whose ports run past 65535, --subscription with a firmware before 2023.6',
    '(every client is served there), --allow-plaintext with a key.',
    '--max-connections: as the ESP32 firmware, one session more is accepted and closed at',
    'once; with --evict-unauthenticated it takes the place of the oldest session that has not',
    'authenticated yet instead (not what the firmware does: idle sockets then cannot keep a client out). As the',
    'firmware, an authenticated session silent for 60 s is pinged and one silent for 150 s dropped, and one not',
    'authenticated 60 s after connecting is dropped. Refused and dropped sessions are JSON lines',
    '{"event":"sessionRefused"|"sessionDropped","node","reason",...,"count"}: the first of a reason at once, the',
    "others of the following second as one line with their count and the latest one's fields (reasons: backlog,",
    'it read nothing while more than 1 MiB waited for it; keepalive; handshakeTimeout; protocol; evicted;',
    'maxConnections).',
    '--profile matter puts a real Matter device (matter.js, optional peers @matter/main and @matter/nodejs 0.15.6)',
    'behind a simulated peripheral, waiting to be commissioned over BLE: discriminator 3840, passcode 20202021',
    '(the listening line carries its pairing codes). It runs in its own process, on loopback only: mDNS on',
    '--matter-mdns-port (default 5353) over 127.0.0.1, its operational UDP port on ::1 and 127.0.0.1.',
    `--matter-log (or ESPHOME_BLE_MATTER_LOG) sets its matter.js log level (${MATTER_LOG_LEVELS.join(', ')};`,
    'default error; the log goes to stderr). --matter-start-timeout bounds its start (default 30s; bare numbers are',
    'seconds); Ctrl-C while it starts stops it at once.',
  ].join('\n'),
  async run(args, { out: stdout, signal }) {
    checkServeArguments(args);
    const listen = hostOf(args, { required: false, listening: true });
    const host = listen?.host ?? '127.0.0.1';
    const port = listen?.port ?? portOption(args, 'port', true) ?? 0;
    const psk = secretOption(args, { flag: 'psk', env: 'ESPHOME_BLE_PSK' });
    const password = secretOption(args, { flag: 'password' });
    const out = redactingOutput(stdout, [psk, password]);
    const maxConnections = intOption(args, 'max-connections', 1);
    const base: SimulatedNodeOptions = {
      host,
      // A node that runs for days keeps no per-message history (it would grow with every request).
      recordReceived: false,
      ...defined('psk', psk),
      ...defined('password', password),
      ...defined('maxConnections', maxConnections),
      ...(flag(args, 'evict-unauthenticated') ? { evictUnauthenticated: true } : {}),
      ...(flag(args, 'allow-plaintext') ? { allowPlaintext: true } : {}),
      ...defined('slots', intOption(args, 'slots', 1, 9)),
      ...defined('slotsBusy', intOption(args, 'slots-busy', 0, 9)),
      ...defined('rssiOffset', num(args, 'rssi-offset')),
      ...defined('firmware', firmwareArg(str(args, 'firmware'))),
      ...defined('subscriptionPolicy', policyArg(str(args, 'subscription'))),
      ...defined('board', boardArg(str(args, 'board'))),
      matter: {
        ...defined('mdnsPort', portArg(num(args, 'matter-mdns-port'), '--matter-mdns-port')),
        ...defined('logLevel', logLevelArg(str(args, 'matter-log'))),
        ...defined('timeout', durationArg(str(args, 'matter-start-timeout'), '--matter-start-timeout')),
        signal,
      },
    };
    const closers: Array<() => Promise<void>> = [];
    const reporters: Array<{ flush(): void }> = [];
    const report = (node: string): ((event: ApiServerEvent) => void) => {
      const reporter = eventReporter(out, node);
      reporters.push(reporter);
      return (event) => reporter.push(event);
    };
    const replay = str(args, 'replay');
    const fleetSize = intOption(args, 'fleet', 1);
    if (replay !== undefined) {
      const transcript = await loadTranscript(replay);
      const name = str(args, 'name') ?? transcript.header.name;
      const server = new ApiServer({
        host,
        port,
        ...defined('psk', psk),
        ...defined('maxConnections', maxConnections),
        ...(flag(args, 'evict-unauthenticated') ? { evictUnauthenticated: true } : {}),
        ...(flag(args, 'allow-plaintext') ? { allowPlaintext: true } : {}),
        name,
        ...(transcript.header.mac ? { mac: transcript.header.mac } : {}),
        label: 'replayed proxy',
        recordReceived: false,
        onEvent: report(name),
        plugins: [new ReplayPlugin(transcript, { onUnrecorded: unrecordedReporter(out, name, reporters) })],
      });
      await server.listen();
      out.json(server.listeningInfo());
      closers.push(() => server.close());
    } else if (fleetSize !== undefined) {
      const profiles = ['kitchen', 'living-room', 'garage', 'default'];
      const specs = Array.from({ length: fleetSize }, (_, i) => {
        const name = `${str(args, 'name') ?? 'proxy'}-${i + 1}`;
        return {
          name,
          port: port === 0 ? 0 : port + i,
          profile: str(args, 'profile') ?? profiles[i % profiles.length]!,
          label: 'simulated proxy',
          onEvent: report(name),
        };
      });
      const fleet = await SimulatedFleet.start(specs, base);
      for (const node of fleet.nodes) out.json(nodeListeningInfo(node));
      closers.push(() => fleet.close());
    } else {
      const name = str(args, 'name') ?? 'esphome-ble-proxy';
      const node = await startSimulatedProxy({
        ...base,
        port,
        name,
        profile: str(args, 'profile') ?? 'default',
        label: 'simulated proxy',
        onEvent: report(name),
      });
      out.json(nodeListeningInfo(node));
      closers.push(() => node.server.close());
    }
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    for (const close of closers) await close();
    for (const reporter of reporters) reporter.flush();
    return 0;
  },
};

/**
 * Prints refused and dropped sessions as JSON lines naming the node: the first of a kind (event and reason) at
 * once, the others of the following second as one line with their `count` (the latest one's fields).
 */
function eventReporter(out: Output, node: string): EventCoalescer<ApiServerEvent> {
  return new EventCoalescer(
    (event) => `${event.type}:${event.reason}`,
    ({ type, ...rest }, count) => out.json({ event: type, node, ...rest, count }),
  );
}

/**
 * Prints the requests a replay has no recording for, with what it answered instead, as JSON lines: the first of a
 * request type at once, the others of the following second as one line with their count.
 */
function unrecordedReporter(out: Output, node: string, reporters: Array<{ flush(): void }>): (answer: UnrecordedAnswer) => void {
  const reporter = new EventCoalescer<UnrecordedAnswer>(
    (answer) => `${answer.request}:${answer.answer}`,
    (answer, count) => out.json({ event: 'replayUnrecorded', node, ...answer, count }),
  );
  reporters.push(reporter);
  return (answer) => reporter.push(answer);
}

function firmwareArg(value: string | undefined): SimulatedNodeOptions['firmware'] {
  if (value === undefined || isFirmwareGeneration(value)) return value;
  throw new UsageError(`--firmware must be one of ${FIRMWARE_GENERATIONS.join(', ')}`);
}

function boardArg(value: string | undefined): ProxyBoard | undefined {
  if (value === undefined || isProxyBoard(value)) return value;
  throw new UsageError(`--board must be one of ${PROXY_BOARDS.join(', ')}`);
}

function portArg(value: number | undefined, flag: string): number | undefined {
  if (value === undefined || (Number.isInteger(value) && value >= 1 && value <= 65_535)) return value;
  throw new UsageError(`${flag} must be a port number (1-65535)`);
}

function logLevelArg(value: string | undefined): string | undefined {
  if (value === undefined || (MATTER_LOG_LEVELS as readonly string[]).includes(value.toLowerCase())) return value;
  throw new UsageError(`--matter-log must be one of ${MATTER_LOG_LEVELS.join(', ')}`);
}

function durationArg(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  try {
    const ms = parseDuration(value, flag, 's');
    if (ms > 0) return ms;
  } catch {
    // reported below, as a usage error
  }
  throw new UsageError(`${flag} must be a positive duration such as 500ms, 30s or 2m`);
}

function policyArg(value: string | undefined): SubscriptionPolicy | undefined {
  if (value === undefined || value === 'first-wins' || value === 'newest-wins') return value;
  throw new UsageError('--subscription must be first-wins or newest-wins');
}

/** `{ [key]: value }` when value is defined, else `{}` (for exactOptionalPropertyTypes). */
export function defined<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
