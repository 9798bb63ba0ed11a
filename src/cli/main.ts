#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type Command, joinNegativeValues, UsageError } from './command.js';
import { demoCommand } from './commands/demo.js';
import { discoverCommand } from './commands/discover.js';
import { explainCommand } from './commands/explain.js';
import { gattCommand } from './commands/gatt.js';
import { infoCommand } from './commands/info.js';
import { mqttCommand } from './commands/mqtt.js';
import { notifyCommand } from './commands/notify.js';
import { readCommand } from './commands/read.js';
import { recordCommand } from './commands/record.js';
import { relayCommand } from './commands/relay.js';
import { scanCommand } from './commands/scan.js';
import { serveCommand } from './commands/serve.js';
import { slotsCommand } from './commands/slots.js';
import { writeCommand } from './commands/write.js';
import { EXIT, exitCodeFor, type Output, processOutput, reportError } from './output.js';

const COMMANDS: Command[] = [
  demoCommand,
  discoverCommand,
  infoCommand,
  scanCommand,
  gattCommand,
  readCommand,
  writeCommand,
  notifyCommand,
  slotsCommand,
  explainCommand,
  serveCommand,
  relayCommand,
  mqttCommand,
  recordCommand,
];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'esphome-ble — use ESPHome Bluetooth proxies from Node',
    '',
    'Usage: esphome-ble <command> [options]   (esphome-ble <command> --help for details)',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Exit codes: 0 ok, 1 failure, 2 usage, 3 key/password/identity, 4 timeout, 130 interrupted.',
  ].join('\n');
}

function commandHelp(command: Command): string {
  const options = Object.entries(command.options).map(([name, spec]) => {
    const short = 'short' in spec && spec.short ? `-${spec.short}, ` : '';
    return `  ${short}--${name}${spec.type === 'string' ? ' <value>' : ''}`;
  });
  return [
    `${command.summary}`,
    '',
    `Usage: ${command.usage}`,
    '',
    'Options:',
    ...options,
    ...(command.help ? ['', command.help] : []),
  ].join('\n');
}

/** Runs the CLI with `argv` (without node and script); resolves with the exit code. */
export async function runCli(argv: string[], out: Output = processOutput(), signal?: AbortSignal): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    out.line(usage());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    out.error(`Unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return EXIT.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    out.line(commandHelp(command));
    return EXIT.ok;
  }
  const json = rest.includes('--json');
  try {
    const parsed = parseArgs({
      args: joinNegativeValues(rest, command.options),
      options: command.options,
      allowPositionals: true,
      strict: true,
    });
    const controller = new AbortController();
    const onSignal = (): void => controller.abort(new Error('interrupted'));
    signal?.addEventListener('abort', onSignal, { once: true });
    // Ctrl-C before the command started (a slow start-up) still interrupts it.
    if (signal?.aborted) onSignal();
    try {
      return await command.run(
        { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals },
        { out, signal: controller.signal },
      );
    } catch (error) {
      // Whatever a command was doing when Ctrl-C arrived, the answer is the same one line and exit code.
      if (controller.signal.aborted) {
        out.error('interrupted');
        return EXIT.interrupted;
      }
      throw error;
    } finally {
      signal?.removeEventListener('abort', onSignal);
    }
  } catch (error) {
    if (error instanceof UsageError || (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS'))) {
      out.error(`${error.message}\n\nUsage: ${command.usage}`);
      return EXIT.usage;
    }
    reportError(out, error, json);
    return exitCodeFor(error);
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (isMain) {
  const controller = new AbortController();
  let interrupted = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupted) process.exit(EXIT.interrupted);
      interrupted = true;
      controller.abort(new Error(sig));
    });
  }
  const code = await runCli(process.argv.slice(2), processOutput(), controller.signal);
  process.exitCode = code;
}
