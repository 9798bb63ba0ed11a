import { type Command, flag, UsageError } from '../command.js';
import { LINK_OPTIONS, POOL_LINK_HELP, runWithLink } from '../device-session.js';
import { EXIT, paint } from '../output.js';
import { DEVICE_HELP, PROXY_HELP, parseAddressArg, sanitize } from '../single-proxy.js';

/** `esphome-ble pair <MAC>`: connect and pair (bond) with a device through one proxy or the pool. */
export const pairCommand: Command = {
  name: 'pair',
  summary: 'Connect to a device through one proxy or the pool and pair (bond) with it',
  usage: 'esphome-ble pair <MAC> [--host host[:port] | --proxy host[:port]...] [options]',
  options: LINK_OPTIONS,
  help: [
    "Connects, asks the proxy to pair with its IO capability (ESPHome's default: Just Works), then disconnects. The",
    "bond lives in that proxy's controller: later links through it are encrypted at once. A device already bonded",
    "answers at once. A refusal is a pairing error with the stack's code (exit 1).",
    '--json: {"mac","paired":true} (with the pool also "proxy" and "attempts").',
    PROXY_HELP,
    DEVICE_HELP,
    POOL_LINK_HELP,
  ].join('\n'),
  examples: ['esphome-ble pair A4:C1:38:00:00:01 --host 192.168.1.40', 'esphome-ble pair A4:C1:38:00:00:01 --proxy 192.168.1.40 --json'],
  async run(args, ctx) {
    const { out, signal } = ctx;
    if (args.positionals.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[1])}`);
    const address = parseAddressArg(args.positionals[0]);
    const json = flag(args, 'json');
    return runWithLink(args, ctx, address, async ({ link, via, timeout, jsonExtra }) => {
      await link.pair({ timeout, signal });
      if (json) out.json({ mac: link.mac, paired: true, ...jsonExtra });
      else out.line(`${paint(out, 'green', 'paired')} ${link.mac} via ${sanitize(via)}`);
      return EXIT.ok;
    });
  },
};
