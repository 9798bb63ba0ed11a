import { FIRMWARE_GENERATIONS, isFirmwareGeneration, type SubscriptionPolicy } from '../../fixture-server/firmware.js';
import { nodeListeningInfo, SimulatedFleet, type SimulatedNodeOptions, startSimulatedProxy } from '../../fixture-server/fleet.js';
import { MATTER_LOG_LEVELS } from '../../fixture-server/matter/matter-peers.js';
import { ReplayPlugin } from '../../fixture-server/replay.js';
import { loadTranscript } from '../../fixture-server/transcript.js';
import { ApiServer } from '../../server/api-server.js';
import { parseDuration } from '../../util/duration.js';
import { type Command, num, str, UsageError } from '../command.js';

/** `esphome-ble serve`: run simulated proxies (or replay a recording) until SIGINT/SIGTERM. */
export const serveCommand: Command = {
  name: 'serve',
  summary: 'Run a simulated ESPHome Bluetooth proxy (or a fleet, or a replayed recording) on loopback',
  usage:
    'esphome-ble serve [--port 0] [--host 127.0.0.1] [--psk B64] [--name NODE] [--password PW] [--profile NAME|FILE] [--slots N] [--slots-busy K] [--fleet N] [--replay FILE] [--firmware GEN] [--subscription first-wins|newest-wins] [--matter-mdns-port P] [--matter-log LEVEL] [--matter-start-timeout 30s]',
  options: {
    host: { type: 'string', short: 'H' },
    port: { type: 'string', short: 'p' },
    psk: { type: 'string' },
    name: { type: 'string' },
    password: { type: 'string' },
    profile: { type: 'string' },
    slots: { type: 'string' },
    'slots-busy': { type: 'string' },
    fleet: { type: 'string' },
    replay: { type: 'string' },
    'rssi-offset': { type: 'string' },
    firmware: { type: 'string' },
    subscription: { type: 'string' },
    'matter-mdns-port': { type: 'string' },
    'matter-log': { type: 'string' },
    'matter-start-timeout': { type: 'string' },
  },
  help: [
    'Prints one JSON line {"event":"listening",...,"devices":[...]} on stdout per proxy once ready.',
    'Profiles live in fixtures/profiles (default, kitchen, living-room, garage). --fleet N starts N proxies on',
    'consecutive ports (or free ones with --port 0) cycling through the profiles; --slots-busy holds K slots',
    'with phantom devices, as when another client holds them. --replay plays a recorded transcript back.',
    `--firmware plays an older firmware generation (${FIRMWARE_GENERATIONS.join(', ')}): API version, login rules,`,
    'feature flags, legacy or raw advertisements, scanner state; before 2023.6 Bluetooth answers go to every client.',
    '--subscription picks who keeps the single Bluetooth subscription when a second client subscribes (default:',
    'first-wins, newest-wins from --firmware 2026.7).',
    '--profile matter puts a real Matter device (matter.js, optional peers @matter/main and @matter/nodejs 0.15.6)',
    'behind a simulated peripheral, waiting to be commissioned over BLE: discriminator 3840, passcode 20202021',
    '(the listening line carries its pairing codes). It runs in its own process, on loopback only: mDNS on',
    '--matter-mdns-port (default 5353) over 127.0.0.1, its operational UDP port on ::1 and 127.0.0.1.',
    `--matter-log (or ESPHOME_BLE_MATTER_LOG) sets its matter.js log level (${MATTER_LOG_LEVELS.join(', ')};`,
    'default error; the log goes to stderr). --matter-start-timeout bounds its start (default 30s; bare numbers are',
    'seconds); Ctrl-C while it starts stops it at once.',
  ].join('\n'),
  async run(args, { out, signal }) {
    const host = str(args, 'host') ?? '127.0.0.1';
    const port = num(args, 'port') ?? 0;
    const base: SimulatedNodeOptions = {
      host,
      ...defined('psk', str(args, 'psk')),
      ...defined('password', str(args, 'password')),
      ...defined('slots', num(args, 'slots')),
      ...defined('slotsBusy', num(args, 'slots-busy')),
      ...defined('rssiOffset', num(args, 'rssi-offset')),
      ...defined('firmware', firmwareArg(str(args, 'firmware'))),
      ...defined('subscriptionPolicy', policyArg(str(args, 'subscription'))),
      matter: {
        ...defined('mdnsPort', portArg(num(args, 'matter-mdns-port'), '--matter-mdns-port')),
        ...defined('logLevel', logLevelArg(str(args, 'matter-log'))),
        ...defined('timeout', durationArg(str(args, 'matter-start-timeout'), '--matter-start-timeout')),
        signal,
      },
    };
    const closers: Array<() => Promise<void>> = [];
    const replay = str(args, 'replay');
    const fleetSize = num(args, 'fleet');
    if (replay !== undefined) {
      const transcript = await loadTranscript(replay);
      const server = new ApiServer({
        host,
        port,
        name: str(args, 'name') ?? transcript.header.name,
        ...(transcript.header.mac ? { mac: transcript.header.mac } : {}),
        ...defined('psk', str(args, 'psk')),
        plugins: [new ReplayPlugin(transcript)],
      });
      await server.listen();
      out.json(server.listeningInfo());
      closers.push(() => server.close());
    } else if (fleetSize !== undefined) {
      if (!Number.isInteger(fleetSize) || fleetSize < 1) throw new UsageError('--fleet must be a positive integer');
      const profiles = ['kitchen', 'living-room', 'garage', 'default'];
      const specs = Array.from({ length: fleetSize }, (_, i) => ({
        name: `${str(args, 'name') ?? 'proxy'}-${i + 1}`,
        port: port === 0 ? 0 : port + i,
        profile: str(args, 'profile') ?? profiles[i % profiles.length]!,
      }));
      const fleet = await SimulatedFleet.start(specs, base);
      for (const node of fleet.nodes) out.json(nodeListeningInfo(node));
      closers.push(() => fleet.close());
    } else {
      const node = await startSimulatedProxy({
        ...base,
        port,
        name: str(args, 'name') ?? 'esphome-ble-proxy',
        profile: str(args, 'profile') ?? 'default',
      });
      out.json(nodeListeningInfo(node));
      closers.push(() => node.server.close());
    }
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    for (const close of closers) await close();
    return 0;
  },
};

function firmwareArg(value: string | undefined): SimulatedNodeOptions['firmware'] {
  if (value === undefined || isFirmwareGeneration(value)) return value;
  throw new UsageError(`--firmware must be one of ${FIRMWARE_GENERATIONS.join(', ')}`);
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
