import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OptionDef } from '../../src/cli/command.js';
import { COMMANDS } from '../../src/cli/main.js';
import { README_MARKERS, readmeCliTables } from '../../src/cli/readme-tables.js';
import { VOCABULARY } from '../../src/cli/vocabulary.js';
import { type CliServer, runCliProcess, startCliServer } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/repo-root.js';

/** Commands that talk to proxies: each traces with --verbose. */
const TALKS_TO_PROXIES = [
  'discover',
  'info',
  'scan',
  'gatt',
  'read',
  'write',
  'notify',
  'pair',
  'unpair',
  'clear-cache',
  'scanner-mode',
  'slots',
  'events',
  'explain',
  'relay',
  'mqtt',
];
const DEMO = 'C0:FF:EE:00:00:01';

function options(): Array<{ command: string; name: string; def: OptionDef }> {
  return COMMANDS.flatMap((c) => Object.entries(c.options).map(([name, def]) => ({ command: c.name, name, def })));
}

describe('cli vocabulary', () => {
  it('cli vocabulary - every option of every command has a one-line description and a default', () => {
    for (const { command, name, def } of options()) {
      expect(def.description.trim(), `${command} --${name}`).not.toBe('');
      expect(def.description, `${command} --${name}`).not.toContain('\n');
      expect(def.default.trim(), `${command} --${name}`).not.toBe('');
    }
  });

  it('cli vocabulary - one flag means one kind of value (and one unit for a bare number) in every command, as the vocabulary says', () => {
    const seen = new Map<string, { kind: string; unit: string | undefined; short: string | undefined; where: string }>();
    for (const { command, name, def } of options()) {
      if (def.deprecated !== undefined) continue;
      const word = (VOCABULARY as Record<string, Partial<OptionDef> | undefined>)[name];
      expect(word, `${command} --${name} is not in the vocabulary`).toBeDefined();
      expect([def.kind, def.unit, def.type], `${command} --${name}`).toEqual([word!.kind, word!.unit, word!.type]);
      const first = seen.get(name);
      if (first === undefined) seen.set(name, { kind: def.kind, unit: def.unit, short: def.short, where: command });
      else
        expect([def.kind, def.unit, def.short], `--${name} in ${command} and ${first.where}`).toEqual([
          first.kind,
          first.unit,
          first.short,
        ]);
      if (def.kind === 'duration') expect(def.unit, `${command} --${name} says the unit of a bare number`).toBeDefined();
    }
    // A short letter stands for one long name.
    const shorts = new Map<string, string>();
    for (const { name, def } of options()) {
      if (def.short === undefined) continue;
      expect(shorts.get(def.short) ?? name, `-${def.short}`).toBe(name);
      shorts.set(def.short, name);
    }
  });

  it('cli vocabulary - one meaning per spelling: no entry gives a flag a meaning per command, and a command describing a flag in its own words keeps the meaning', () => {
    const names = new Set(COMMANDS.map((c) => c.name));
    const words = VOCABULARY as Record<string, { description: string; meaning?: readonly string[] }>;
    for (const [name, word] of Object.entries(words)) {
      // "(serve, mqtt)" / "(scan)": one entry listing which commands mean what by the flag.
      for (const match of word.description.matchAll(/\(([a-z, -]+)\)/g)) {
        const listed = match[1]!.split(/,\s*/);
        expect(listed.every((n) => names.has(n)) && listed.length > 0, `--${name}: ${word.description}`).toBe(false);
      }
      for (const words of word.meaning ?? []) expect(word.description.toLowerCase(), `--${name}`).toContain(words.toLowerCase());
    }
    for (const { command, name, def } of options()) {
      if (def.deprecated !== undefined) continue;
      const word = words[name]!;
      if (def.description === word.description) continue;
      expect(word.meaning, `--${name} is described in ${command}'s own words: its vocabulary entry needs a meaning`).toBeDefined();
      for (const words of word.meaning!) {
        expect(def.description.toLowerCase(), `${command} --${name} means "${words}"`).toContain(words.toLowerCase());
      }
    }
  });

  it('cli vocabulary - a deprecated spelling names an option of the same command, and help lists it apart', () => {
    const deprecated = options().filter(({ def }) => def.deprecated !== undefined);
    expect(deprecated.map(({ command, name }) => `${command} --${name}`)).toEqual(
      expect.arrayContaining([
        'read --listen',
        'explain --listen',
        'mqtt --interval',
        'mqtt --password',
        'mqtt --key',
        'discover --timeout',
      ]),
    );
    for (const { command, name, def } of deprecated) {
      const target = COMMANDS.find((c) => c.name === command)!.options[def.deprecated!.use];
      expect(target, `${command} --${name} -> --${def.deprecated!.use}`).toBeDefined();
      expect(target!.deprecated).toBeUndefined();
    }
  });

  it('cli vocabulary - every command has examples, --json or the reason it has none, and --verbose where it talks to proxies', () => {
    for (const command of COMMANDS) {
      expect(command.examples.length, command.name).toBeGreaterThan(0);
      for (const example of command.examples)
        expect(example, command.name).toMatch(new RegExp(`^(esphome-ble ${command.name}\\b|npm run)`));
      expect('json' in command.options || command.noJson !== undefined, `${command.name}: --json or noJson`).toBe(true);
      if (TALKS_TO_PROXIES.includes(command.name)) expect(command.options.verbose, `${command.name} --verbose`).toBeDefined();
    }
    expect(COMMANDS.filter((c) => c.noJson !== undefined).map((c) => c.name)).toEqual(['demo', 'record']);
  });
});

describe('cli vocabulary in README', () => {
  it('cli vocabulary - README "CLI" holds the tables generated from the vocabulary and the commands (node scripts/readme-cli.mjs rewrites them)', () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const start = readme.indexOf(README_MARKERS.start);
    const end = readme.indexOf(README_MARKERS.end);
    expect(start, 'README has the cli-tables markers').toBeGreaterThan(0);
    expect(readme.slice(start, end + README_MARKERS.end.length)).toBe(readmeCliTables(COMMANDS));
  });
});

describe('cli help and version (built CLI)', () => {
  it('cli help - help <command> lists every option with its default, notes and examples; --help says the same', async () => {
    const results = await Promise.all(COMMANDS.map((c) => runCliProcess(['help', c.name])));
    for (const [i, command] of COMMANDS.entries()) {
      const help = results[i]!;
      expect(help.code, command.name).toBe(0);
      expect(help.stdout).toContain(`Usage: ${command.usage}`);
      // Help wraps long lines: compare with the whitespace folded.
      const flat = help.stdout.replace(/\s+/g, ' ');
      for (const [name, def] of Object.entries(command.options)) {
        expect(help.stdout, `${command.name} --${name}`).toContain(`--${name}`);
        if (def.deprecated === undefined)
          expect(flat, `${command.name} --${name}`).toContain(`${def.description} [default: ${def.default}]`);
      }
      expect(help.stdout).toContain('Examples:');
      expect(help.stdout).toContain(command.examples[0]!);
      expect(help.stdout).toContain('Exit codes: 0 ok, 1 failure, 2 usage, 3 key/password/identity, 4 timeout, 130 interrupted.');
    }
    const [viaFlag, scanHelp] = await Promise.all([runCliProcess(['scan', '--help']), runCliProcess(['help', 'scan'])]);
    expect(viaFlag.stdout).toBe(scanHelp.stdout);
  });

  it('cli help - --version prints the package version; help of nothing and of an unknown command', async () => {
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const [v, V, general, bare, unknown] = await Promise.all([
      runCliProcess(['--version']),
      runCliProcess(['-V']),
      runCliProcess(['help']),
      runCliProcess([]),
      runCliProcess(['help', 'nosuch']),
    ]);
    expect([v.code, v.stdout]).toEqual([0, `${version}\n`]);
    expect(V.stdout).toBe(v.stdout);
    expect(general.code).toBe(0);
    for (const command of COMMANDS) expect(general.stdout).toContain(`  ${command.name} `);
    expect(bare.code).toBe(2);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('Unknown command "nosuch"');
  });
});

describe('cli units and deprecated spellings (built CLI)', () => {
  let node: CliServer;
  let host: string;

  beforeAll(async () => {
    node = await startCliServer(['--port', '0']);
    host = `127.0.0.1:${(node.lines[0] as { port: number }).port}`;
  });
  afterAll(async () => {
    await node.stop();
  });

  it('cli units - durations take units, bare numbers keep the unit their flag documents, junk exits 2', async () => {
    // One at a time: each takes the proxy's single Bluetooth subscription.
    const ms = await runCliProcess(['read', DEMO, '3', '--host', host, '--address-type', 'random', '--timeout', '3s', '--json']);
    const seconds = await runCliProcess(['scan', '--host', host, '--duration', '800ms', '--json']);
    const bare = await runCliProcess(['scan', '--host', host, '--duration', '0.8', '--json']);
    const [junk, zero] = await Promise.all([
      runCliProcess(['scan', '--host', host, '--duration', '5 minutes']),
      runCliProcess(['info', '--host', host, '--timeout', '0']),
    ]);
    expect(ms.code, ms.stderr).toBe(0);
    expect(seconds.code, seconds.stderr).toBe(0);
    expect(bare.code, bare.stderr).toBe(0);
    expect(junk.code).toBe(2);
    expect(junk.stderr).toContain('--duration must be a duration such as 500ms, 5s, 2m or 1h, got "5 minutes"');
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain('--timeout must be longer than 0');
  });

  it('cli units - --host takes host:port everywhere --proxy does; a --port that disagrees is a usage error', async () => {
    const [port] = host.split(':').slice(1);
    const [combined, separate, clash] = await Promise.all([
      runCliProcess(['info', '--host', host, '--json']),
      runCliProcess(['info', '--host', '127.0.0.1', '--port', port!, '--json']),
      runCliProcess(['info', '--host', host, '--port', '1']),
    ]);
    expect(combined.code, combined.stderr).toBe(0);
    expect(JSON.parse(combined.stdout)).toMatchObject({ host: '127.0.0.1', port: Number(port) });
    expect(JSON.parse(separate.stdout)).toMatchObject({ port: Number(port) });
    // One MAC format in every --json.
    expect(JSON.parse(combined.stdout).deviceInfo.macAddress).toMatch(/^([0-9A-F]{2}:){5}[0-9A-F]{2}$/);
    expect(clash.code).toBe(2);
    expect(clash.stderr).toContain(`--host ${host} names port ${port} but --port says 1`);
  });

  it('cli units - a deprecated spelling still works, its bare number in its old unit, with a warning on stderr', async () => {
    const old = await runCliProcess(['read', DEMO, '3', '--proxy', host, '--listen', '0', '--json']);
    const both = await runCliProcess(['read', DEMO, '3', '--proxy', host, '--listen', '0', '--listen-for', '0']);
    expect(old.code, old.stderr).toBe(0);
    expect(old.stderr).toContain('warning --listen is deprecated in read and goes away in the next release: use --listen-for');
    expect(JSON.parse(old.stdout.trim().split('\n')[0]!)).toMatchObject({ mac: DEMO, handle: 3 });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--listen is the old spelling of --listen-for: give only --listen-for');
  });
});
