import { GattProperty, propertyNames } from '../../bluetooth/gatt.js';
import { GattError } from '../../errors.js';
import type { CallOptions } from '../../util/abort.js';
import { type Command, flag, UsageError } from '../command.js';
import { LINK_OPTIONS, POOL_LINK_HELP, runWithLink } from '../device-session.js';
import { paint, Spinner, table } from '../output.js';
import {
  DEVICE_HELP,
  errorJson,
  errorText,
  handleText,
  hexOf,
  PROXY_HELP,
  parseAddressArg,
  printable,
  sanitize,
  uuidLabel,
  valueCells,
} from '../single-proxy.js';

/** A value read from an attribute, or the GATT error that answered instead. */
type ReadOutcome = { value: Uint8Array } | { error: unknown } | undefined;

/** `esphome-ble gatt <MAC>`: connect, print the service tree and every readable value, disconnect. */
export const gattCommand: Command = {
  name: 'gatt',
  summary: 'Connect to a device through one proxy or the pool and print its GATT services with every readable value',
  usage: 'esphome-ble gatt <MAC> [--host host[:port] | --proxy host[:port]...] [options]',
  options: LINK_OPTIONS,
  examples: [
    'esphome-ble gatt C0:FF:EE:00:00:01 --host 192.168.1.40',
    'esphome-ble gatt C0:FF:EE:00:00:01 --proxy 192.168.1.40 --proxy 192.168.1.41 --json',
  ],
  help: [
    'Connects (with --host without cache: the proxy discovers the services), reads every characteristic with',
    'the read property and every descriptor, then disconnects. A GATT error on one attribute is shown in its row',
    '(--json: an "error" object with status and statusName) and does not stop the walk.',
    '--json prints one object: {"mac","proxy","mtu","services":[{"uuid","handle","characteristics":[{"uuid","handle",',
    '"properties":[...],"value":"hex","text"|null,"descriptors":[{"uuid","handle","value","text"}]}]}]}.',
    PROXY_HELP,
    DEVICE_HELP,
    POOL_LINK_HELP,
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    if (args.positionals.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[1])}`);
    const address = parseAddressArg(args.positionals[0]);
    const json = flag(args, 'json');
    const spinner = new Spinner(out);
    try {
      return await runWithLink(args, ctx, address, async ({ link, services, via, timeout, jsonExtra }) => {
        const ops: CallOptions = { timeout, signal };
        const tree = [];
        for (const service of services.services) {
          const characteristics = [];
          for (const characteristic of service.characteristics) {
            spinner.update(`reading ${handleText(characteristic.handle)}`);
            const readable = (characteristic.properties & GattProperty.read) !== 0;
            const value = readable ? await attempt(() => link.read(characteristic.handle, ops)) : undefined;
            const descriptors = [];
            for (const descriptor of characteristic.descriptors) {
              descriptors.push({ ...descriptor, outcome: await attempt(() => link.readDescriptor(descriptor.handle, ops)) });
            }
            characteristics.push({ ...characteristic, outcome: value, descriptors });
          }
          tree.push({ ...service, characteristics });
        }
        spinner.stop();
        if (json) {
          out.json({
            mac: link.mac,
            proxy: via,
            ...jsonExtra,
            mtu: link.mtu,
            services: tree.map((s) => ({
              uuid: s.uuid,
              handle: s.handle,
              characteristics: s.characteristics.map((c) => ({
                uuid: c.uuid,
                handle: c.handle,
                properties: propertyNames(c.properties),
                ...outcomeJson(c.outcome),
                descriptors: c.descriptors.map((d) => ({ uuid: d.uuid, handle: d.handle, ...outcomeJson(d.outcome) })),
              })),
            })),
          });
          return 0;
        }
        const rows: string[][] = [];
        let count = 0;
        for (const s of tree) {
          rows.push([handleText(s.handle), `service ${uuidLabel(s.uuid)}`, '', '', '']);
          for (const c of s.characteristics) {
            count++;
            rows.push([
              handleText(c.handle),
              `  ${uuidLabel(c.uuid)}`,
              propertyNames(c.properties).join(','),
              ...outcomeCells(ctx.out, c.outcome),
            ]);
            for (const d of c.descriptors)
              rows.push([handleText(d.handle), `    ${uuidLabel(d.uuid)}`, '', ...outcomeCells(ctx.out, d.outcome)]);
          }
        }
        out.line(`${link.mac} via ${sanitize(via)}: MTU ${link.mtu}, ${tree.length} services, ${count} characteristics`);
        out.line();
        out.line(table(['handle', 'attribute', 'properties', 'value', 'text'], rows));
        return 0;
      });
    } finally {
      spinner.stop();
    }
  },
};

/** Runs one read; a GATT status is the outcome, anything else (link lost, timeout) ends the command. */
async function attempt(read: () => Promise<Uint8Array>): Promise<ReadOutcome> {
  try {
    return { value: await read() };
  } catch (error) {
    if (error instanceof GattError) return { error };
    throw error;
  }
}

function outcomeJson(outcome: ReadOutcome): Record<string, unknown> {
  if (outcome === undefined) return {};
  if ('error' in outcome) return { error: errorJson(outcome.error) };
  return { value: hexOf(outcome.value), text: printable(outcome.value) ?? null };
}

function outcomeCells(out: Parameters<typeof paint>[0], outcome: ReadOutcome): [string, string] {
  if (outcome === undefined) return ['', ''];
  if ('error' in outcome) return [paint(out, 'red', `error ${errorText(outcome.error)}`), ''];
  return valueCells(outcome.value);
}
