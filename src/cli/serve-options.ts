import { boardProfile, isProxyBoard } from '../fixture-server/boards.js';
import { type CommandArgs, flag, intOption, str, UsageError } from './command.js';

/** Options that shape a simulated proxy: a replay plays what it recorded instead, so they contradict --replay. */
const SIMULATION_ONLY = ['profile', 'fleet', 'slots', 'slots-busy', 'rssi-offset', 'firmware', 'subscription', 'board'] as const;
/** The firmware's default `connection_slots`. */
const DEFAULT_SLOTS = 3;

/**
 * Rejects `serve` command lines that contradict themselves (exit 2, nothing started): simulation options with
 * --replay, more busy slots than slots, slots on a board without connections, --allow-plaintext with a key, a
 * password with a replay (the recording decides how it logs in).
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
  const busy = intOption(args, 'slots-busy', 0, 9);
  if (busy !== undefined && busy > slots) {
    const source = given('slots') ? `--slots ${slots}` : `${slots} slots (${board === undefined ? 'the default' : `--board ${board}`})`;
    throw new UsageError(`--slots-busy ${busy} is more than the proxy has: ${source}`);
  }
  const hasKey = given('psk') || given('psk-file');
  if (flag(args, 'allow-plaintext') && hasKey) {
    throw new UsageError('--allow-plaintext asks for a listener without a key, but --psk gives it one: give one of them');
  }
}
