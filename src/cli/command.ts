import type { ParseArgsConfig } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { parseDuration } from '../util/duration.js';
import type { Output } from './output.js';

/** Option definitions of a command (node:util parseArgs format). */
export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** Parsed values of a command line. */
export interface CommandArgs {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/** What a command receives besides its arguments. */
export interface CommandContext {
  out: Output;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

/** One `esphome-ble <name>` command. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: OptionSpec;
  /** Extra help lines (examples). */
  help?: string;
  run(args: CommandArgs, ctx: CommandContext): Promise<number>;
}

/** Options every command that talks to one proxy understands. */
export const PROXY_OPTIONS = {
  host: { type: 'string', short: 'H' },
  port: { type: 'string', short: 'p' },
  psk: { type: 'string' },
  password: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies OptionSpec;

/** Reads a string option. */
export function str(args: CommandArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === 'string' ? value : undefined;
}

/** Reads a numeric option, rejecting junk. */
export function num(args: CommandArgs, name: string): number | undefined {
  const value = str(args, name);
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) throw new UsageError(`--${name} must be a number, got ${JSON.stringify(value)}`);
  return parsed;
}

/**
 * `--min-rssi -90` as parseArgs' `--min-rssi=-90`: parseArgs takes a value that starts with a dash for a flag and
 * stops as "ambiguous", but a negative number after an option that takes a value can only be that value.
 */
export function joinNegativeValues(args: readonly string[], options: OptionSpec): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
    if (arg === '--') {
      out.push(...args.slice(i + 1));
      break;
    }
  }
  return out;
}

/** Reads a positive duration option (`500ms`, `5s`, `2m`; a bare number in `bareUnit`, as the flag documents) as ms. */
export function durationOption(args: CommandArgs, name: string, bareUnit: 'ms' | 's'): number | undefined {
  const value = str(args, name);
  if (value === undefined) return undefined;
  let ms: number;
  try {
    ms = parseDuration(value, `--${name}`, bareUnit);
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw new UsageError(error.message);
    throw error;
  }
  if (!(ms > 0)) throw new UsageError(`--${name} must be longer than 0`);
  return ms;
}

/** Reads a boolean flag. */
export function flag(args: CommandArgs, name: string): boolean {
  return args.values[name] === true;
}

/** A bad command line. */
export class UsageError extends Error {
  override name = 'UsageError';
}
