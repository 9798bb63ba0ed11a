import { RECORD_ENV, startRecording, stopRecording } from '../../fixture-server/recorder.js';
import { type Command, flag, str, UsageError } from '../command.js';
// Circular on purpose (main.ts lists this command): runCli is only called at run time, by then main.ts is
// evaluated. Import this module through main.ts, never first. A dynamic import would deadlock instead:
// main.ts is still in its top-level await while a command runs.
import { runCli } from '../main.js';
import { EXIT } from '../output.js';
import { option } from '../vocabulary.js';

/** Options whose values never go into a recording's description. */
const SECRET_OPTIONS = new Set(['--psk', '--password', '--downstream-psk', '--broker-password']);

/** `esphome-ble record --out FILE -- <command> [args...]`: run a command and record its API session(s). */
export const recordCommand: Command = {
  name: 'record',
  summary: 'Run another command and record its API session into a replayable transcript (.jsonl)',
  usage: 'esphome-ble record --out FILE [options] -- <command> [args...]',
  options: {
    out: option('out', { default: 'required' }),
    description: option('description', { default: 'the command line, keys and passwords masked' }),
    pings: option('pings', { default: 'off' }),
  },
  examples: [
    'esphome-ble record --out kitchen-gatt.jsonl -- gatt C0:FF:EE:00:00:01 --host 192.168.1.40 --psk-file kitchen.key',
    'esphome-ble record --out scan.jsonl -- scan --host 192.168.1.40 --duration 5s --json',
  ],
  noJson: 'it prints what the recorded command prints; give --json to that command (after --)',
  help: [
    'Runs <command> in this process; every API session it opens is recorded after the transport handshake',
    '(a Noise session is recorded decrypted; replay it with the same or any --psk). A second session goes to',
    'FILE.2.jsonl, and so on. Keep-alive pings are dropped unless --pings; a legacy API password is redacted.',
    'The command prints as usual; a summary line goes to stderr. Replay with: esphome-ble serve --replay FILE',
    `Without this command, ${RECORD_ENV}=FILE records the sessions of any command (written on exit).`,
  ].join('\n'),
  async run(args, { out, signal }) {
    const file = str(args, 'out');
    if (file === undefined) throw new UsageError('--out FILE is required');
    const [name, ...rest] = args.positionals;
    if (name === undefined) throw new UsageError('the command to record is missing (put it after --)');
    if (name === 'record' || name === 'serve') throw new UsageError(`${name} cannot be recorded`);
    const description = str(args, 'description') ?? `Recorded by: esphome-ble ${redact([name, ...rest]).join(' ')}`;
    startRecording(file, { description, includePings: flag(args, 'pings') });
    let code: number = EXIT.failure;
    try {
      code = await runCli([name, ...rest], out, signal);
    } finally {
      const files = await stopRecording().catch((error: unknown) => {
        out.error(`Cannot write the recording: ${error instanceof Error ? error.message : String(error)}`);
        return undefined;
      });
      if (files === undefined) code = EXIT.failure;
      else {
        for (const f of files) out.error(`recorded ${f.messages} messages of ${f.name} to ${f.path}`);
        if (files.length === 0) {
          out.error(`nothing recorded: ${name} opened no API session`);
          if (code === EXIT.ok) code = EXIT.failure;
        }
      }
    }
    return code;
  },
};

/** The command line with --psk/--password values masked. */
function redact(argv: readonly string[]): string[] {
  return argv.map((arg, i) => {
    const [option] = arg.split('=', 1);
    if (option !== undefined && SECRET_OPTIONS.has(option) && arg.includes('=')) return `${option}=***`;
    return i > 0 && SECRET_OPTIONS.has(argv[i - 1]!) ? '***' : arg;
  });
}
