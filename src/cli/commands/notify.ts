import { GattProperty } from '../../bluetooth/gatt.js';
import { BleDisconnectedError, InvalidArgumentError } from '../../errors.js';
import { type Command, durationOption, flag, UsageError } from '../command.js';
import { LINK_OPTIONS, POOL_LINK_HELP, runWithLink } from '../device-session.js';
import { paint } from '../output.js';
import {
  countOption,
  DEVICE_HELP,
  handleText,
  hexOf,
  PROXY_HELP,
  parseAddressArg,
  parseAttributeArg,
  printable,
  resolveAttribute,
  sanitize,
  uuidLabel,
} from '../single-proxy.js';
import { option } from '../vocabulary.js';

type StopReason = 'count' | 'duration' | 'interrupted' | 'linkLost';

/** `esphome-ble notify <MAC> <uuid|handle>`: subscribe and print notifications until a limit or Ctrl-C. */
export const notifyCommand: Command = {
  name: 'notify',
  summary: 'Subscribe to a characteristic of a device through one proxy or the pool and print its notifications',
  usage: 'esphome-ble notify <MAC> <uuid|handle> [--host host[:port] | --proxy host[:port]...] [options]',
  options: {
    ...LINK_OPTIONS,
    count: option('count', { description: 'Stop after this many notifications', default: 'no limit' }),
    duration: option('duration', { default: 'until Ctrl-C' }),
  },
  examples: [
    'esphome-ble notify C0:FF:EE:00:00:01 0x0012 --host 192.168.1.40 --count 3',
    'esphome-ble notify C0:FF:EE:00:00:01 2a37 --duration 30s --json > heart-rate.jsonl',
  ],
  help: [
    'Enables notifications (or indications) on the characteristic, writing its CCCD, and prints each value',
    'as it arrives: local time, seconds since subscribing, hex and printable text. Stops after --count',
    'notifications, after --duration, or on Ctrl-C (all exit 0), then unsubscribes and disconnects;',
    'a lost link is an error (exit 1). --timeout bounds each step (connect, enabling the notifications), not the',
    'wait between notifications: a device that stops sending keeps --count waiting, so bound that wait with',
    '--duration (e.g. --count 3 --duration 30s). --json prints one line per notification:',
    '{"time":"ISO-8601","elapsedMs","mac","handle","uuid","value":"hex","text"|null}.',
    PROXY_HELP,
    DEVICE_HELP,
    POOL_LINK_HELP,
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    const [mac, keyArg, extra] = args.positionals;
    if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`);
    const address = parseAddressArg(mac);
    const key = parseAttributeArg(keyArg);
    const count = countOption(args, 'count');
    const durationMs = durationOption(args, 'duration');
    const json = flag(args, 'json');
    return runWithLink(args, ctx, address, async ({ link, services, via, timeout, jsonExtra }) => {
      const target = resolveAttribute(services, key, link.mac);
      if (target.kind === 'descriptor')
        throw new InvalidArgumentError(`${handleText(target.handle)} is a descriptor, not a characteristic`);
      const properties = target.characteristic?.properties;
      if (properties !== undefined && (properties & (GattProperty.notify | GattProperty.indicate)) === 0) {
        throw new InvalidArgumentError(`${handleText(target.handle)} on ${link.mac} supports neither notify nor indicate`);
      }
      const uuid = target.uuid ?? null;
      let received = 0;
      let started = Date.now();
      let finish: (why: StopReason) => void = () => {};
      const stopped = new Promise<StopReason>((resolve) => {
        finish = resolve;
      });
      const unsubscribe = await link.startNotify(
        target.handle,
        (data) => {
          if (count !== undefined && received >= count) return;
          received++;
          const now = new Date();
          const elapsedMs = now.getTime() - started;
          if (json) {
            out.json({
              time: now.toISOString(),
              elapsedMs,
              mac: link.mac,
              handle: target.handle,
              uuid,
              value: hexOf(data),
              text: printable(data) ?? null,
              ...jsonExtra,
            });
          } else {
            const text = printable(data);
            const seconds = `+${(elapsedMs / 1000).toFixed(3)}s`.padStart(10);
            out.line(`${clock(now)}  ${seconds}  ${hexOf(data)}${text === undefined ? '' : `  ${JSON.stringify(sanitize(text))}`}`);
          }
          if (count !== undefined && received >= count) finish('count');
        },
        { timeout, signal },
      );
      started = Date.now();
      if (!json) {
        const label = uuid === null ? '' : ` (${uuidLabel(uuid)})`;
        out.error(paint(out, 'dim', `Listening to ${handleText(target.handle)}${label} on ${link.mac} via ${sanitize(via)}; Ctrl-C stops`));
      }
      const timer = durationMs === undefined ? undefined : setTimeout(() => finish('duration'), durationMs);
      const onAbort = (): void => finish('interrupted');
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) finish('interrupted');
      const offDisconnect = link.onDisconnect(() => finish('linkLost'));
      const why = await stopped;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      offDisconnect();
      if (why === 'linkLost') {
        const info = await link.closed();
        throw new BleDisconnectedError(
          `Link to ${link.mac} via ${via} ended after ${received} notification${received === 1 ? '' : 's'}: ${info.reasonName} (${info.reason})`,
          link.address,
          info.reason,
        );
      }
      // Unsubscribe before disconnecting so the peripheral's CCCD is left off.
      await unsubscribe().catch(() => {});
      if (!json)
        out.error(
          paint(out, 'dim', `${received} notification${received === 1 ? '' : 's'} in ${((Date.now() - started) / 1000).toFixed(1)} s`),
        );
      return 0;
    });
  },
};

/** Local wall-clock time `HH:MM:SS.mmm`. */
function clock(date: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}
