import { GattError } from '../../errors.js';
import { type Command, flag, UsageError } from '../command.js';
import { LINK_OPTIONS, POOL_LINK_HELP, runWithLink } from '../device-session.js';
import { EXIT, reportError, table } from '../output.js';
import {
  DEVICE_HELP,
  errorJson,
  handleText,
  hexOf,
  PROXY_HELP,
  parseAddressArg,
  parseAttributeArg,
  printable,
  resolveAttribute,
  uuidLabel,
  valueCells,
} from '../single-proxy.js';

/** `esphome-ble read <MAC> <uuid|handle>...`: read characteristic (or descriptor) values. */
export const readCommand: Command = {
  name: 'read',
  summary: 'Read characteristic or descriptor values of a device through one proxy or the pool',
  usage: 'esphome-ble read <MAC> <uuid|handle> [<uuid|handle>...] [--host host[:port] | --proxy host[:port]...] [options]',
  options: LINK_OPTIONS,
  examples: ['esphome-ble read C0:FF:EE:00:00:01 2a00 0x0003 --host 192.168.1.40', 'esphome-ble read C0:FF:EE:00:00:01 2a19 --json'],
  help: [
    'Reads each attribute in turn; a handle of a descriptor reads the descriptor. A GATT error on one',
    'attribute is reported (stderr, one line) and the others are still read; the exit code is then 1.',
    '--json prints one line per attribute: {"mac","handle","uuid","kind","value":"hex","text"|null}',
    'or {"mac","handle","uuid","kind","error":{"code","name","message","status","statusName"}}.',
    PROXY_HELP,
    DEVICE_HELP,
    POOL_LINK_HELP,
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    const [mac, ...keyArgs] = args.positionals;
    const address = parseAddressArg(mac);
    if (keyArgs.length === 0) throw new UsageError('a characteristic UUID or handle is required');
    const keys = keyArgs.map(parseAttributeArg);
    const json = flag(args, 'json');
    return runWithLink(args, ctx, address, async ({ link, services, timeout, jsonExtra }) => {
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
          if (json) out.json({ ...base, value: hexOf(value), text: printable(value) ?? null, ...jsonExtra });
          else rows.push([handleText(target.handle), target.uuid === undefined ? '?' : uuidLabel(target.uuid), ...valueCells(value)]);
        } catch (error) {
          if (!(error instanceof GattError)) throw error;
          failed = true;
          if (json) out.json({ ...base, error: errorJson(error), ...jsonExtra });
          else reportError(out, error, false);
        }
      }
      if (rows.length > 0) out.line(table(['handle', 'attribute', 'value', 'text'], rows));
      return failed ? EXIT.failure : EXIT.ok;
    });
  },
};
