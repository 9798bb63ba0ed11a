import { GattError } from '../../errors.js';
import { type Command, flag, UsageError } from '../command.js';
import { EXIT, reportError, table } from '../output.js';
import {
  DEVICE_HELP,
  DEVICE_OPTIONS,
  errorJson,
  handleText,
  hexOf,
  PROXY_HELP,
  parseAddressArg,
  parseAttributeArg,
  printable,
  resolveAttribute,
  runWithDevice,
  uuidLabel,
  valueCells,
} from '../single-proxy.js';

/** `esphome-ble read <MAC> <uuid|handle>...`: read characteristic (or descriptor) values. */
export const readCommand: Command = {
  name: 'read',
  summary: 'Read characteristic or descriptor values of a device through one proxy',
  usage: 'esphome-ble read <MAC> <uuid|handle> [<uuid|handle>...] --host H [--port 6053] [--psk B64] [--timeout ms] [--json]',
  options: DEVICE_OPTIONS,
  help: [
    'Reads each attribute in turn; a handle of a descriptor reads the descriptor. A GATT error on one',
    'attribute is reported (stderr, one line) and the others are still read; the exit code is then 1.',
    '--json prints one line per attribute: {"mac","handle","uuid","kind","value":"hex","text"|null}',
    'or {"mac","handle","uuid","kind","error":{"code","name","message","status","statusName"}}.',
    PROXY_HELP,
    DEVICE_HELP,
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    const [mac, ...keyArgs] = args.positionals;
    const address = parseAddressArg(mac);
    if (keyArgs.length === 0) throw new UsageError('a characteristic UUID or handle is required');
    const keys = keyArgs.map(parseAttributeArg);
    const json = flag(args, 'json');
    return runWithDevice(args, ctx, address, async (link, { timeout }) => {
      const services = await link.getServices({ timeout, signal });
      const rows: string[][] = [];
      let failed = false;
      for (const key of keys) {
        const target = resolveAttribute(services, key, link.mac);
        const base = { mac: link.mac, handle: target.handle, uuid: target.uuid ?? null, kind: target.kind };
        try {
          const value =
            target.kind === 'descriptor'
              ? await link.readDescriptor(target.handle, { timeout, signal })
              : await link.read(target.handle, { timeout, signal });
          if (json) out.json({ ...base, value: hexOf(value), text: printable(value) ?? null });
          else rows.push([handleText(target.handle), target.uuid === undefined ? '?' : uuidLabel(target.uuid), ...valueCells(value)]);
        } catch (error) {
          if (!(error instanceof GattError)) throw error;
          failed = true;
          if (json) out.json({ ...base, error: errorJson(error) });
          else reportError(out, error, false);
        }
      }
      if (rows.length > 0) out.line(table(['handle', 'attribute', 'value', 'text'], rows));
      return failed ? EXIT.failure : EXIT.ok;
    });
  },
};
