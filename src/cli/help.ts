import { readFileSync } from 'node:fs';
import type { Command, OptionDef } from './command.js';

/** Exit codes as help and the README state them. */
export const EXIT_CODES_LINE = 'Exit codes: 0 ok, 1 failure, 2 usage, 3 key/password/identity, 4 timeout, 130 interrupted.';

/** The package's version, read from its package.json (next to dist/ and src/ alike). */
export function packageVersion(): string {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

/** The general help: every command with its summary. */
export function generalHelp(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'esphome-ble — use ESPHome Bluetooth proxies from Node',
    '',
    'Usage: esphome-ble <command> [options]',
    '       esphome-ble help <command>     options, defaults, notes and examples of one command',
    '       esphome-ble --version',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Durations take units (500ms, 5s, 2m); a bare number is in the unit each option states.',
    EXIT_CODES_LINE,
  ].join('\n');
}

/** One command's help: synopsis, one line per option with its default, notes, examples. */
export function commandHelp(command: Command): string {
  const entries = Object.entries(command.options).filter(([, def]) => def.deprecated === undefined);
  const deprecated = Object.entries(command.options).filter(([, def]) => def.deprecated !== undefined);
  const heads = entries.map(([name, def]) => optionHead(name, def));
  const width = Math.min(34, Math.max(...heads.map((h) => h.length)));
  const lines = entries.map(([, def], i) => {
    const head = heads[i]!;
    const indent = ' '.repeat(width + 4);
    const text = wrap(`${def.description} [default: ${def.default}]`, HELP_WIDTH - indent.length).join(`\n${indent}`);
    return head.length > width ? `  ${head}\n${indent}${text}` : `  ${head.padEnd(width)}  ${text}`;
  });
  return [
    command.summary,
    '',
    `Usage: ${command.usage}`,
    '',
    'Options:',
    ...lines,
    ...(deprecated.length === 0
      ? []
      : [
          '',
          'Deprecated spellings (they still work, with a warning):',
          ...deprecated.map(([name, def]) => `  --${name}: ${def.description}`),
        ]),
    ...(command.noJson === undefined ? [] : ['', `No --json: ${command.noJson}`]),
    ...(command.help ? ['', command.help] : []),
    '',
    'Examples:',
    ...command.examples.map((e) => `  ${e}`),
    '',
    EXIT_CODES_LINE,
  ].join('\n');
}

/** Help lines fit a 120-column terminal. */
const HELP_WIDTH = 118;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

function optionHead(name: string, def: OptionDef): string {
  const short = def.short === undefined ? '    ' : `-${def.short}, `;
  const value = def.type === 'string' ? ` <${def.placeholder ?? 'value'}>` : '';
  return `${short}--${name}${value}${def.multiple ? '...' : ''}`;
}
