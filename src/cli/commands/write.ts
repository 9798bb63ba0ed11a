import { GattProperty } from '../../bluetooth/gatt.js';
import { InvalidArgumentError } from '../../errors.js';
import { type Command, flag, UsageError } from '../command.js';
import { LINK_OPTIONS, POOL_LINK_HELP, runWithLink } from '../device-session.js';
import { paint } from '../output.js';
import {
  DEVICE_HELP,
  handleText,
  hexOf,
  PROXY_HELP,
  parseAddressArg,
  parseAttributeArg,
  parseHexArg,
  resolveAttribute,
  uuidLabel,
} from '../single-proxy.js';
import { option } from '../vocabulary.js';

/** `esphome-ble write <MAC> <uuid|handle> <hex>`: write one characteristic (or descriptor) value. */
export const writeCommand: Command = {
  name: 'write',
  summary: 'Write a characteristic or descriptor value of a device through one proxy or the pool',
  usage: 'esphome-ble write <MAC> <uuid|handle> <hex> [--host host[:port] | --proxy host[:port]...] [options]',
  options: { ...LINK_OPTIONS, 'no-response': option('no-response', { default: 'off: acknowledged write' }) },
  examples: [
    'esphome-ble write C0:FF:EE:00:00:01 0x000e 68656c6c6f --host 192.168.1.40',
    'esphome-ble write C0:FF:EE:00:00:01 cba20002-224d-11e6-9fb8-0002a5d5c51b 570100 --no-response',
  ],
  help: [
    'Hex bytes may contain spaces, colons or dashes (01:02:ff) and a leading 0x. By default the write is',
    'acknowledged by the peripheral (ATT Write Request; a refusal is a GATT error, exit 1). --no-response',
    'sends an ATT Write Command (no acknowledgement; for characteristics with write-without-response).',
    'A handle of a descriptor writes the descriptor (always acknowledged).',
    '--json prints {"mac","handle","uuid","kind","value":"hex","bytes","withResponse"}.',
    PROXY_HELP,
    DEVICE_HELP,
    POOL_LINK_HELP,
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    const [mac, keyArg, hexArg, extra] = args.positionals;
    if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`);
    const address = parseAddressArg(mac);
    const key = parseAttributeArg(keyArg);
    const data = parseHexArg(hexArg);
    const withResponse = !flag(args, 'no-response');
    return runWithLink(args, ctx, address, async ({ link, services, timeout, jsonExtra }) => {
      const target = resolveAttribute(services, key, link.mac);
      if (target.kind === 'descriptor') {
        if (!withResponse) throw new InvalidArgumentError('descriptor writes are always acknowledged: drop --no-response');
        await link.writeDescriptor(target.handle, data, { timeout, signal });
      } else {
        const properties = target.characteristic?.properties;
        if (!withResponse && properties !== undefined && (properties & GattProperty.writeWithoutResponse) === 0) {
          // Nothing acknowledges a write command, so this warning is the only hint that it went nowhere.
          out.error(
            `${paint(out, 'yellow', 'warning')} ${handleText(target.handle)} has no write-without-response property; the peripheral will probably ignore the write`,
          );
        }
        await link.write(target.handle, data, { withResponse, timeout, signal });
      }
      if (flag(args, 'json')) {
        out.json({
          mac: link.mac,
          handle: target.handle,
          uuid: target.uuid ?? null,
          kind: target.kind,
          value: hexOf(data),
          bytes: data.length,
          withResponse,
          ...jsonExtra,
        });
      } else {
        const label = target.uuid === undefined ? '' : ` (${uuidLabel(target.uuid)})`;
        out.line(
          `Wrote ${data.length} byte${data.length === 1 ? '' : 's'} to ${handleText(target.handle)}${label} on ${link.mac}` +
            (withResponse ? ' (acknowledged)' : ' (without response)'),
        );
      }
      return 0;
    });
  },
};
