#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type Command, type CommandArgs, joinNegativeValues, parseArgsOptions, UsageError } from './command.js';
import { clearCacheCommand } from './commands/clear-cache.js';
import { demoCommand } from './commands/demo.js';
import { discoverCommand } from './commands/discover.js';
import { eventsCommand } from './commands/events.js';
import { explainCommand } from './commands/explain.js';
import { gattCommand } from './commands/gatt.js';
import { infoCommand } from './commands/info.js';
import { mqttCommand } from './commands/mqtt.js';
import { notifyCommand } from './commands/notify.js';
import { pairCommand } from './commands/pair.js';
import { readCommand } from './commands/read.js';
import { recordCommand } from './commands/record.js';
import { relayCommand } from './commands/relay.js';
import { scanCommand } from './commands/scan.js';
import { scannerModeCommand } from './commands/scanner-mode.js';
import { serveCommand } from './commands/serve.js';
import { slotsCommand } from './commands/slots.js';
import { unpairCommand } from './commands/unpair.js';
import { writeCommand } from './commands/write.js';
import { commandHelp, generalHelp, packageVersion } from './help.js';
import { EXIT, exitCodeFor, type Output, paint, processOutput, reportError } from './output.js';
import { enableTrace } from './trace.js';

/** Every command, in the order help lists them. */
export const COMMANDS: readonly Command[] = [
  demoCommand,
  discoverCommand,
  infoCommand,
  scanCommand,
  gattCommand,
  readCommand,
  writeCommand,
  notifyCommand,
  pairCommand,
  unpairCommand,
  clearCacheCommand,
  scannerModeCommand,
  slotsCommand,
  eventsCommand,
  explainCommand,
  serveCommand,
  relayCommand,
  mqttCommand,
  recordCommand,
];

/** Runs the CLI with `argv` (without node and script); resolves with the exit code. */
export async function runCli(argv: string[], out: Output = processOutput(), signal?: AbortSignal): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V' || name === 'version') {
    out.line(packageVersion());
    return EXIT.ok;
  }
  if (name === undefined || name === '--help' || name === '-h') {
    out.line(generalHelp(COMMANDS));
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === 'help') {
    const topic = rest[0];
    if (topic === undefined) {
      out.line(generalHelp(COMMANDS));
      return EXIT.ok;
    }
    const command = COMMANDS.find((c) => c.name === topic);
    if (command === undefined) {
      out.error(`Unknown command ${JSON.stringify(topic)}\n\n${generalHelp(COMMANDS)}`);
      return EXIT.usage;
    }
    out.line(commandHelp(command));
    return EXIT.ok;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    out.error(`Unknown command ${JSON.stringify(name)}\n\n${generalHelp(COMMANDS)}`);
    return EXIT.usage;
  }
  // `record` passes what follows `--` to the command it runs: only its own part asks for help.
  const own = command.name === 'record' && rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    out.line(commandHelp(command));
    return EXIT.ok;
  }
  const json = own.includes('--json');
  try {
    const parsed = parseArgs({
      args: joinNegativeValues(rest, command.options),
      options: parseArgsOptions(command.options),
      allowPositionals: true,
      strict: true,
    });
    const values = applyDeprecated(command, parsed.values as CommandArgs['values'], out);
    if (values.verbose === true) enableTrace(out);
    const controller = new AbortController();
    const onSignal = (): void => controller.abort(new Error('interrupted'));
    signal?.addEventListener('abort', onSignal, { once: true });
    // Ctrl-C before the command started (a slow start-up) still interrupts it.
    if (signal?.aborted) onSignal();
    try {
      return await command.run({ values, positionals: parsed.positionals }, { out, signal: controller.signal });
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
      out.error(`${error.message}\n\nUsage: ${command.usage}   (esphome-ble help ${command.name})`);
      return EXIT.usage;
    }
    reportError(out, error, json);
    return exitCodeFor(error);
  }
}

/**
 * Moves the values of deprecated spellings to the options that replace them, warning once per spelling on stderr.
 * A bare number keeps its old unit (written out), so an old command line means what it meant.
 */
function applyDeprecated(command: Command, values: CommandArgs['values'], out: Output): CommandArgs['values'] {
  const result = { ...values };
  for (const [name, def] of Object.entries(command.options)) {
    if (def.deprecated === undefined || result[name] === undefined) continue;
    const target = def.deprecated.use;
    if (result[target] !== undefined) throw new UsageError(`--${name} is the old spelling of --${target}: give only --${target}`);
    out.error(
      `${paint(out, 'yellow', 'warning')} --${name} is deprecated in ${command.name} and goes away in the next release: use --${target}`,
    );
    const value = result[name];
    result[target] =
      def.unit !== undefined && typeof value === 'string' && /^\s*[\d.]+\s*$/.test(value) ? `${value.trim()}${def.unit}` : value;
    delete result[name];
  }
  return result;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (isMain) {
  const controller = new AbortController();
  let interrupted = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupted) process.exit(EXIT.interrupted);
      interrupted = true;
      // Closing sessions and releasing slots can take a moment: a terminal hears at once that Ctrl-C was taken.
      if (sig === 'SIGINT' && process.stderr.isTTY) process.stderr.write('\r\u001b[Kstopping… (Ctrl-C again quits at once)\n');
      controller.abort(new Error(sig));
    });
  }
  const code = await runCli(process.argv.slice(2), processOutput(), controller.signal);
  process.exitCode = code;
}
