import type { ParseArgsConfig } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { parseDuration } from '../util/duration.js';
import type { Output } from './output.js';
import { VOCABULARY, type WordName } from './vocabulary.js';

/**
 * What an option's value is. The vocabulary (src/cli/vocabulary.ts) gives each flag name one kind, and one unit for a
 * bare number of a duration, in every command; test/cli/vocabulary.test.ts holds every command to it.
 */
export type OptionKind =
  /** A boolean switch. */
  | 'flag'
  /** `500ms`, `5s`, `2m`, `1h`; a bare number is in the option's `unit`. */
  | 'duration'
  /** A whole number (counts, limits). */
  | 'integer'
  /** Any number. */
  | 'number'
  /** A TCP/UDP port, 1..65535 (0 for "a free one" where the option says so). */
  | 'port'
  /** A host name or IP address, optionally with `:port` (`[v6]:port` for IPv6). */
  | 'host'
  /** `host:port` to listen on (port 0: a free one). */
  | 'listen'
  /** A proxy as `host[:port]`. */
  | 'proxy'
  /** A proxy already in the pool, by id, node name, host, host:port or MAC. */
  | 'proxy-ref'
  /** A key or password (never printed). */
  | 'secret'
  /** A path. */
  | 'file'
  /** An IP address. */
  | 'ip'
  /** A device MAC `AA:BB:CC:DD:EE:FF` (any spelling accepted). */
  | 'mac'
  /** A GATT UUID (`2a00`, `0000xxxx-...`). */
  | 'uuid'
  /** Signal strength in dBm. */
  | 'rssi'
  /** Client addresses `ADDR[/BITS]` (comma-separated or repeated), `none` for nobody. */
  | 'clients'
  /** One of a fixed set of words, listed in the placeholder. */
  | 'choice'
  /** A URL. */
  | 'url'
  /** Free text. */
  | 'text';

/** One option of a command: how node:util parseArgs reads it, plus what help and the vocabulary say about it. */
export interface OptionDef {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
  readonly kind: OptionKind;
  /** The unit of a bare number (durations only). */
  readonly unit?: 'ms' | 's';
  /** What help shows for the value (`duration`, `host[:port]`...). */
  readonly placeholder?: string;
  /** One line for help. */
  readonly description: string;
  /** What applies without the option, as help shows it (`5s`, `off`, `required`...). */
  readonly default: string;
  /** The values a `choice` takes (help examples are checked against them). */
  readonly choices?: readonly string[];
  /** A spelling kept for one release: its value goes to the named option, with a warning on stderr. */
  readonly deprecated?: { readonly use: string };
}

/** Option definitions of a command. */
export type OptionSpec = Readonly<Record<string, OptionDef>>;

/** The parseArgs view of a command's options. */
export function parseArgsOptions(spec: OptionSpec): NonNullable<ParseArgsConfig['options']> {
  return Object.fromEntries(
    Object.entries(spec).map(([name, def]) => [
      name,
      { type: def.type, ...(def.short === undefined ? {} : { short: def.short }), ...(def.multiple ? { multiple: true } : {}) },
    ]),
  );
}

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
  /** The synopsis: `esphome-ble read <MAC> <uuid|handle>... [options]`. */
  usage: string;
  options: OptionSpec;
  /** Notes after the option list: behaviour, output formats. */
  help?: string;
  /** Command lines that work as shown (with your own addresses). */
  examples: readonly string[];
  /** Why the command has no --json, when it has none (README "CLI" lists them). */
  noJson?: string;
  run(args: CommandArgs, ctx: CommandContext): Promise<number>;
}

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

/**
 * Reads a duration option (`500ms`, `5s`, `2m`) as ms; a bare number is in the unit the vocabulary gives the flag.
 * Positive unless `allowZero` (then 0 is accepted too).
 */
export function durationOption(args: CommandArgs, name: WordName, options: { allowZero?: boolean } = {}): number | undefined {
  const value = str(args, name);
  if (value === undefined) return undefined;
  const word: { unit?: 'ms' | 's' } = VOCABULARY[name];
  let ms: number;
  try {
    ms = parseDuration(value, `--${name}`, word.unit ?? 'ms');
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw new UsageError(error.message);
    throw error;
  }
  if (!(ms > 0) && !(options.allowZero && ms === 0)) throw new UsageError(`--${name} must be longer than 0`);
  return ms;
}

/** Reads a whole-number option within `min`..`max` (inclusive). */
export function intOption(args: CommandArgs, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const value = str(args, name);
  if (value === undefined) return undefined;
  const parsed = /^\s*-?\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `a whole number, at least ${min}` : `a whole number from ${min} to ${max}`;
    throw new UsageError(`--${name} must be ${range}, got ${JSON.stringify(value)}`);
  }
  return parsed;
}

/** Reads a port option (1..65535; 0 too when `allowZero`, "a free one"). */
export function portOption(args: CommandArgs, name: string, allowZero = false): number | undefined {
  return intOption(args, name, allowZero ? 0 : 1, 65_535);
}

/** Reads a boolean flag. */
export function flag(args: CommandArgs, name: string): boolean {
  return args.values[name] === true;
}

/** A bad command line. */
export class UsageError extends Error {
  override name = 'UsageError';
}
