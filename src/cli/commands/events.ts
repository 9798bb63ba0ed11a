import type { ProxyInspection } from '../../inspect/proxy-inspector.js';
import { DEFAULT_WATCH_INTERVAL_MS } from '../../inspect/proxy-inspector.js';
import { formatDuration } from '../../util/duration.js';
import { type Command, durationOption, flag, type OptionSpec, UsageError } from '../command.js';
import { type ConnectionEvent, EventLog } from '../event-log.js';
import { announceHeld, browse, downForGood, offlineExit, openInspection } from '../inspect-options.js';
import { EXIT, type Output, paint } from '../output.js';
import { DEFAULT_DISCOVERY_MS, DEFAULT_POOL_READY_MS, POOL_HELP, POOL_OPTIONS } from '../pool-options.js';
import { sanitize } from '../single-proxy.js';
import { option } from '../vocabulary.js';

const OPTIONS = {
  ...POOL_OPTIONS,
  timeout: option('timeout', {
    description: 'Deadline of the first connect and of each poll; a bare number is milliseconds',
    default: formatDuration(DEFAULT_POOL_READY_MS),
  }),
  interval: option('interval', { default: formatDuration(DEFAULT_WATCH_INTERVAL_MS) }),
  duration: option('duration', { default: 'until Ctrl-C' }),
  subscribe: option('subscribe', {
    description: "Take each proxy's Bluetooth subscription: adds connects, disconnects and failures with their cause",
    default: 'off: take nothing',
  }),
  'keep-trying': option('keep-trying', {
    default: 'off: when every proxy failed for such a reason before any came up, the log stops (exit 3 for a key)',
  }),
} as const satisfies OptionSpec;

/** `esphome-ble events`: the connection event log of every proxy, until Ctrl-C. */
export const eventsCommand: Command = {
  name: 'events',
  summary: 'Log connection events per proxy (slots taken and freed, connects and failures with cause, subscription) live',
  usage: 'esphome-ble events [--proxy host[:port]...] [--subscribe] [options]',
  options: OPTIONS,
  help: [
    "Without --subscribe it takes nothing from the proxies' other clients (Home Assistant keeps its subscription and",
    'links): it asks each proxy for its slots every --interval, which the firmware answers to any client, and logs',
    'proxyUp / proxyDown (with the cause, its failure class and whether retrying can fix it), slotTaken / slotReleased',
    '(the device, how long it held the slot, free/limit after), slots (firmware that lists no devices) and',
    "subscription (who holds the proxy's Bluetooth subscription, as `slots` judges it).",
    'Connection events go only to the subscriber (spec §6.3): --subscribe takes the subscription and adds connected,',
    'disconnected (the reason code and name) and connectFailed (reason and failure class) for every link the proxy',
    'reports, and scannerState. On ESPHome 2026.7+ that takes the subscription from Home Assistant (a note on stderr',
    'says what that costs); on older firmware it gets nothing where Home Assistant holds it. Through a relay it shares.',
    'One line per event: `HH:MM:SS.mmm proxy event details`; --json one JSON line per event:',
    '{"time":"ISO-8601","event","proxy",...fields} (MACs as AA:BB:CC:DD:EE:FF). Exit 0 on Ctrl-C or --duration',
    'once a proxy was up. When none ever came up the exit follows the failure table (3 every key or identity',
    'refused, 4 every connect timed out, else 1); and when every proxy failed for a cause retrying cannot fix (key,',
    'password, another node, not ESPHome) before any came up, the log stops at once unless --keep-trying retries',
    'them with backoff.',
    POOL_HELP,
  ].join('\n'),
  examples: [
    'esphome-ble events --proxy 192.168.1.40 --proxy 192.168.1.41',
    'esphome-ble events --subscribe --json > connections.jsonl',
    'esphome-ble events --interval 500ms --duration 10m',
  ],
  async run(args, ctx) {
    const { out, signal } = ctx;
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const json = flag(args, 'json');
    const subscribe = flag(args, 'subscribe');
    const intervalMs = durationOption(args, 'interval');
    const durationMs = durationOption(args, 'duration');
    const log = new EventLog((event) => print(out, event, json));
    const keepTrying = flag(args, 'keep-trying');
    const cli = await openInspection(args, {
      subscribe,
      clientInfo: 'esphome-ble events',
      tapFor: (proxy) => log.tapFor(proxy),
      keepTrying,
    });
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = durationMs === undefined ? undefined : setTimeout(() => stop.abort(), durationMs);
    try {
      // Events start at once: a proxy that is slow to answer shows up when it does, one that fails with its cause.
      await browse(cli, stop.signal, DEFAULT_DISCOVERY_MS).catch((error: unknown) => {
        if (!stop.signal.aborted) throw error;
      });
      let announced = false;
      let everUp = false;
      let last: readonly ProxyInspection[] = [];
      for await (const snapshot of cli.inspector.watch({ interval: intervalMs, signal: stop.signal, timeout: cli.timeout })) {
        if (subscribe && !announced && snapshot.some((p) => p.inspection !== undefined)) {
          announced = true;
          announceHeld(out, snapshot);
        }
        log.inspect(snapshot);
        last = snapshot;
        everUp ||= snapshot.some((p) => p.online);
        // Nothing this run can log: every proxy refused us for good before any came up.
        if (!everUp && !keepTrying && snapshot.length > 0 && snapshot.every(downForGood)) {
          out.error(
            `${paint(out, 'red', 'error')} no proxy can be used and retrying cannot fix it (--keep-trying retries anyway): ${last
              .map((p) => `${sanitize(p.id)}: ${sanitize(p.error?.message ?? '')}`)
              .join('; ')}`,
          );
          break;
        }
      }
      if (everUp) return EXIT.ok;
      if (last.length === 0) out.error(`${paint(out, 'yellow', 'note')} no proxy was found`);
      return offlineExit(last);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      await cli.close();
    }
  },
};

function print(out: Output, event: ConnectionEvent, json: boolean): void {
  const time = new Date();
  if (json) {
    out.json({ time: time.toISOString(), ...event });
    return;
  }
  const clock = `${time.toTimeString().slice(0, 8)}.${String(time.getMilliseconds()).padStart(3, '0')}`;
  out.line(`${clock}  ${sanitize(event.proxy)}  ${eventText(out, event)}`);
}

function eventText(out: Output, e: ConnectionEvent): string {
  switch (e.event) {
    case 'proxyUp':
      return paint(out, 'green', `up: ${sanitize(e.name ?? '?')} (ESPHome ${sanitize(e.esphomeVersion ?? '?')})`);
    case 'proxyDown':
      return paint(out, 'red', `down: ${sanitize(e.message)} (${e.failure}${e.permanent ? ': retrying cannot fix it' : ''})`);
    case 'slotTaken':
      return `slot taken by ${e.mac} (${e.free}/${e.limit} free)`;
    case 'slotReleased':
      return `slot released by ${e.mac}${e.heldMs === null ? '' : ` after ${formatDuration(e.heldMs)}`} (${e.free}/${e.limit} free)`;
    case 'slots':
      return `slots: ${e.free}/${e.limit} free`;
    case 'connected':
      return paint(out, 'green', `connected ${e.mac} (MTU ${e.mtu})`);
    case 'disconnected':
      return `disconnected ${e.mac}: 0x${e.reason.toString(16)} ${e.reasonName}`;
    case 'connectFailed':
      return paint(out, 'yellow', `connect to ${e.mac} failed: 0x${e.reason.toString(16)} ${e.reasonName} (${e.failure})`);
    case 'subscription':
      return `subscription: ${e.holder}${e.sure ? '' : '?'} (${sanitize(e.evidence)})`;
    case 'scannerState':
      return `scanner ${e.state} (${e.mode})`;
  }
}
