import { parseArgs } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseMac } from '../../src/bluetooth/address.js';
import { type Command, joinNegativeValues, type OptionDef, parseArgsOptions } from '../../src/cli/command.js';
import { COMMANDS } from '../../src/cli/main.js';
import { parseDuration } from '../../src/util/duration.js';

/** The words of a shell command line as the shell passes them (quotes removed), up to a redirection or pipe. */
function words(line: string): string[] {
  const out: string[] = [];
  for (const match of line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) {
    const word = match[1] ?? match[2] ?? match[3]!;
    if (match[3] !== undefined && /^[>|<]/.test(word)) break;
    out.push(word);
  }
  return out;
}

/** Why `value` is not what `def` takes, or undefined when it is. */
function badValue(name: string, def: OptionDef, value: string): string | undefined {
  const fail = (what: string): string => `--${name} ${JSON.stringify(value)}: ${what}`;
  switch (def.kind) {
    case 'duration':
      try {
        parseDuration(value, `--${name}`, def.unit ?? 'ms');
        return undefined;
      } catch (error) {
        return fail((error as Error).message);
      }
    case 'integer':
      return /^-?\d+$/.test(value) ? undefined : fail('not a whole number');
    case 'number':
    case 'rssi':
      return Number.isFinite(Number(value)) ? undefined : fail('not a number');
    case 'port':
      return /^\d+$/.test(value) && Number(value) <= 65_535 ? undefined : fail('not a port');
    case 'choice':
      if (def.choices === undefined) return fail('a choice option without its choices');
      return def.choices.includes(value) || def.choices.includes(value.toLowerCase())
        ? undefined
        : fail(`not one of ${def.choices.join(', ')}`);
    case 'mac':
      if (value === '*' && def.placeholder?.includes('*')) return undefined;
      try {
        parseMac(value);
        return undefined;
      } catch {
        return fail('not a MAC');
      }
    case 'url':
      return URL.canParse(value) ? undefined : fail('not a URL');
    default:
      return value.trim() === '' ? fail('empty') : undefined;
  }
}

/** Every problem of one example: unknown or deprecated options, values the option does not take, an unknown command. */
function problemsOf(command: Command, args: readonly string[]): string[] {
  const problems: string[] = [];
  let own = [...args];
  let inner: string[] | undefined;
  if (command.name === 'record' && own.includes('--')) {
    inner = own.slice(own.indexOf('--') + 1);
    own = own.slice(0, own.indexOf('--'));
  }
  try {
    const { values } = parseArgs({
      args: joinNegativeValues(own, command.options),
      options: parseArgsOptions(command.options),
      allowPositionals: true,
      strict: true,
    });
    for (const [name, raw] of Object.entries(values)) {
      const def = command.options[name]!;
      if (def.deprecated !== undefined) problems.push(`--${name} is deprecated (use --${def.deprecated.use})`);
      for (const value of Array.isArray(raw) ? raw : [raw]) {
        if (typeof value !== 'string') continue;
        const bad = badValue(name, def, value);
        if (bad !== undefined) problems.push(bad);
      }
    }
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (inner !== undefined) {
    const [name, ...rest] = inner;
    const target = COMMANDS.find((c) => c.name === name);
    if (target === undefined) problems.push(`record runs an unknown command ${JSON.stringify(name)}`);
    else problems.push(...problemsOf(target, rest));
  }
  return problems;
}

describe('cli help examples', () => {
  it('cli help - every example of every command parses against its options: known flags, no deprecated spelling, values its kind and choices take', () => {
    let checked = 0;
    for (const command of COMMANDS) {
      for (const example of command.examples) {
        if (example.startsWith('npm run')) continue;
        const [bin, name, ...rest] = words(example);
        expect([bin, name], example).toEqual(['esphome-ble', command.name]);
        expect(problemsOf(command, rest), example).toEqual([]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(40);
  });

  it('cli help - every choice option names its choices, and the checker catches a wrong one', () => {
    for (const command of COMMANDS) {
      for (const [name, def] of Object.entries(command.options)) {
        if (def.kind === 'choice') expect(def.choices?.length, `${command.name} --${name}`).toBeGreaterThan(0);
      }
    }
    const serve = COMMANDS.find((c) => c.name === 'serve')!;
    expect(problemsOf(serve, ['--firmware', '2024.12'])).toEqual([expect.stringContaining('--firmware "2024.12": not one of')]);
    expect(problemsOf(serve, ['--fleet', 'two'])).toEqual(['--fleet "two": not a whole number']);
  });
});
