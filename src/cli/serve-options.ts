import { boardProfile, isProxyBoard } from '../fixture-server/boards.js';
import { firmwareProfile, isFirmwareGeneration } from '../fixture-server/firmware.js';
import { type CommandArgs, flag, intOption, str, UsageError } from './command.js';
import { hostOf } from './single-proxy.js';

/** Options that shape a simulated proxy: a replay plays what it recorded instead, so they contradict --replay. */
const SIMULATION_ONLY = ['profile', 'fleet', 'slots', 'slots-busy', 'rssi-offset', 'firmware', 'subscription', 'board'] as const;
/** The firmware's default `connection_slots`. */
const DEFAULT_SLOTS = 3;

/**
 * Rejects `serve` command lines that contradict themselves (exit 2, nothing started): simulation options with
 * --replay, more busy slots than slots, slots on a board without connections or other slots than the board has,
 * a fleet whose ports run past 65535, a subscription policy on firmware that serves every client, --allow-plaintext
 * with a key, a password with a replay (the recording decides how it logs in).
 */
export function checkServeArguments(args: CommandArgs): void {
  const given = (name: string): boolean => args.values[name] !== undefined;
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
  if (given('replay')) {
    const clash = [...SIMULATION_ONLY, 'password', 'password-file'].find(given);
    if (clash !== undefined) {
      throw new UsageError(`--${clash} shapes a simulated proxy; --replay plays a recording back as it was: give one of them`);
    }
  }
  const board = str(args, 'board');
  const profile = board !== undefined && isProxyBoard(board) ? boardProfile(board) : undefined;
  if (profile !== undefined && !profile.connections) {
    const clash = (['slots', 'slots-busy'] as const).find(given);
    if (clash !== undefined) throw new UsageError(`--${clash} cannot go with --board ${board}: that board has no connection slots`);
  }
  const slots = intOption(args, 'slots', 1, 9) ?? profile?.slots ?? DEFAULT_SLOTS;
  // The board is the hardware: an RP2040 has one slot whatever the YAML asks (refused rather than overridden).
  if (profile?.connections === true && profile.slots !== undefined && given('slots') && slots !== profile.slots) {
    throw new UsageError(`--slots ${slots} cannot go with --board ${board}: that board has ${profile.slots} connection slot(s)`);
  }
  const busy = intOption(args, 'slots-busy', 0, 9);
  if (busy !== undefined && busy > slots) {
    const source = given('slots') ? `--slots ${slots}` : `${slots} slots (${board === undefined ? 'the default' : `--board ${board}`})`;
    throw new UsageError(`--slots-busy ${busy} is more than the proxy has: ${source}`);
  }
  const fleet = intOption(args, 'fleet', 1);
  const port = hostOf(args, { required: false, listening: true })?.port ?? intOption(args, 'port', 0, 65_535) ?? 0;
  if (fleet !== undefined && port !== 0 && port + fleet - 1 > 65_535) {
    throw new UsageError(
      `--fleet ${fleet} from port ${port} needs ports up to ${port + fleet - 1}, past 65535: start lower or use --port 0`,
    );
  }
  const firmware = str(args, 'firmware');
  if (str(args, 'subscription') !== undefined && firmware !== undefined && isFirmwareGeneration(firmware)) {
    if (firmwareProfile(firmware).bluetoothAnswers === 'all-clients') {
      throw new UsageError(
        `--subscription cannot go with --firmware ${firmware}: before 2023.6 every client is served, nobody holds the subscription`,
      );
    }
  }
  const hasKey = given('psk') || given('psk-file');
  if (flag(args, 'allow-plaintext') && hasKey) {
    throw new UsageError('--allow-plaintext asks for a listener without a key, but --psk gives it one: give one of them');
  }
}
