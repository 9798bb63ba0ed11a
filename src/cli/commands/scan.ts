import { DeviceTracker } from '../../bluetooth/advertisement.js';
import { type Command, type CommandContext, durationOption, flag, type OptionSpec, UsageError } from '../command.js';
import { SOURCE_HELP, SOURCE_OPTIONS } from '../device-session.js';
import { EXIT, paint, Spinner, table } from '../output.js';
import { isOpen, matches, type ScanFilter, scanFilterOf } from '../scan-filter.js';
import { followScan } from '../scan-follow.js';
import { type AdvertisementSource, withAdvertisementSource } from '../scan-source.js';
import { deviceCells, deviceJson, scanWindow, TABLE_HEADERS, viaText } from '../scan-view.js';
import { sanitize } from '../single-proxy.js';
import { option } from '../vocabulary.js';

/** Listening time without --duration: several advertising intervals of even slow (1-2 s) advertisers. */
const DEFAULT_SCAN_MS = 5_000;

const OPTIONS = {
  ...SOURCE_OPTIONS,
  duration: option('duration', { default: `${DEFAULT_SCAN_MS / 1000}s (--follow: until Ctrl-C)` }),
  follow: option('follow', { default: 'off' }),
  mac: option('mac', { default: 'every device', multiple: true }),
  'name-contains': option('name-contains', { default: 'any' }),
  service: option('service', { default: 'any', multiple: true }),
  'min-rssi': option('min-rssi', { default: 'none' }),
} as const satisfies OptionSpec;

/** `esphome-ble scan`: listen to the advertisements of one proxy (or every proxy of the pool) and print one row per device. */
export const scanCommand: Command = {
  name: 'scan',
  summary: 'Listen to the advertisements one proxy (or the whole pool) hears and list the devices; --follow live',
  usage: 'esphome-ble scan [--host host[:port] | --proxy host[:port]...] [--follow] [filters] [options]',
  options: OPTIONS,
  help: [
    'Merges advertisements and scan responses per address: newest RSSI and address type, names, service UUIDs,',
    'manufacturer and service data; count is the number of reports heard. Sorted by RSSI, strongest first.',
    'Filters (--mac, --name-contains, --service, --min-rssi) all have to match; a repeated --mac or --service matches any.',
    'Ctrl-C stops early and still prints (exit 0). Exit 1 when a proxy of the pool could not be used (the others',
    "still print; the status line counts them, stderr says why), 3 when none could for a key or a node's identity.",
    '--json prints ONE JSON array at the end, one object per device:',
    '{"mac","addressType":"public|random|...","name"|null,"rssi","txPower"|null,"serviceUuids":[...],',
    '"manufacturerIds":["0x004c"],"manufacturerData":{"0x004c":"hex"},"serviceData":{"<uuid>":"hex"},"count","lastSeen":"ISO-8601"}.',
    'With the pool the table gains a "proxies" column (the proxies that heard the device, newest RSSI, strongest',
    'first), rssi is the best of those, and each JSON object gains "proxies":{"<proxy id>":rssi}.',
    '--follow listens until Ctrl-C (or --duration): on a terminal a live table redrawn twice a second; otherwise',
    '(or with --json) one JSON line per report that passes the filters: the object above for the device so far,',
    'with "rssi" of this report, "time" (ISO-8601) and, with the pool, "proxy" (who heard it).',
    SOURCE_HELP,
  ].join('\n'),
  examples: [
    'esphome-ble scan --host 192.168.1.40 --duration 10s',
    'esphome-ble scan --proxy 192.168.1.40 --proxy 192.168.1.41 --json',
    'esphome-ble scan --follow --name-contains thermo --min-rssi -80',
    'esphome-ble scan --host 192.168.1.40 --follow --mac A4:C1:38:00:00:01 > ads.jsonl',
  ],
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const durationMs = durationOption(args, 'duration');
    const filter = scanFilterOf(args);
    const follow = flag(args, 'follow');
    return withAdvertisementSource(args, ctx, (source) =>
      follow
        ? followScan(source, ctx, { filter, durationMs, json: flag(args, 'json') || !ctx.out.isTty })
        : scanOnce(source, ctx, { filter, durationMs: durationMs ?? DEFAULT_SCAN_MS, json: flag(args, 'json') }),
    );
  },
};

/** Listens for the duration, then prints every device that passed the filters. */
async function scanOnce(
  source: AdvertisementSource,
  ctx: CommandContext,
  options: { filter: ScanFilter; durationMs: number; json: boolean },
): Promise<number> {
  const { out, signal } = ctx;
  const spinner = new Spinner(out);
  const tracker = new DeviceTracker();
  const counts = new Map<number, number>();
  /** Newest RSSI per device, per proxy id (the pool only). */
  const heard = new Map<number, Map<string, number>>();
  let reports = 0;
  const started = Date.now();
  spinner.update(`scanning via ${source.label}`);
  const off = source.onAdvertisement((ad, proxy) => {
    reports++;
    tracker.update(ad);
    counts.set(ad.address, (counts.get(ad.address) ?? 0) + 1);
    if (proxy !== undefined) {
      let byProxy = heard.get(ad.address);
      if (byProxy === undefined) {
        byProxy = new Map();
        heard.set(ad.address, byProxy);
        // The tracker evicts its least recently heard devices; keep this table as bounded as it is.
        if (heard.size > 2 * tracker.maxDevices) forgetEvicted(heard, counts, tracker);
      }
      byProxy.set(proxy, ad.rssi);
    }
    spinner.update(`scanning via ${source.label}: ${tracker.size} devices, ${reports} reports`);
  });
  try {
    // Ends on the deadline, on Ctrl-C (a normal way to stop a scan), or with the one proxy's session (an error).
    const ended = new AbortController();
    const lost = await Promise.race([scanWindow(options.durationMs, AbortSignal.any([signal, ended.signal])), source.lost]);
    ended.abort();
    if (lost !== undefined) throw lost;
  } finally {
    off();
    spinner.stop();
  }
  const names = source.names();
  const devices = tracker
    .devices()
    .map((device) => {
      const proxies = [...(heard.get(device.address) ?? new Map<string, number>())].sort((a, b) => b[1] - a[1]);
      return { device, proxies, rssi: proxies[0]?.[1] ?? device.rssi };
    })
    .filter(({ device, rssi }) => matches(options.filter, device, rssi))
    .sort((a, b) => b.rssi - a.rssi);
  const pool = source.pool !== undefined;
  const tally = source.tally();
  if (options.json) {
    out.json(
      devices.map(({ device, proxies, rssi }) => ({
        ...deviceJson(device, counts.get(device.address) ?? 0),
        rssi,
        ...(pool ? { proxies: Object.fromEntries(proxies) } : {}),
      })),
    );
  } else {
    out.line(
      table(
        pool ? [...TABLE_HEADERS, 'proxies'] : TABLE_HEADERS,
        devices.map(({ device, proxies, rssi }) => [
          ...deviceCells(out, device, rssi, counts.get(device.address) ?? 0),
          ...(pool ? [proxies.map(([id, value]) => `${sanitize(names.get(id) ?? id)} ${value}`).join(', ')] : []),
        ]),
      ),
    );
    const via = pool ? viaText(tally) : source.label;
    out.line(paint(out, 'dim', summary(devices.length, reports, started, via, isOpen(options.filter) ? undefined : tracker.size)));
  }
  for (const reason of tally.failed) out.error(`${paint(out, 'red', 'error')} proxy ${reason}: this scan lacks what it hears`);
  return tally.failed.length > 0 ? EXIT.failure : EXIT.ok;
}

function forgetEvicted(heard: Map<number, unknown>, counts: Map<number, number>, tracker: DeviceTracker): void {
  const kept = new Set(tracker.devices().map((d) => d.address));
  for (const address of heard.keys()) {
    if (kept.has(address)) continue;
    heard.delete(address);
    counts.delete(address);
  }
}

/** `12 devices, 340 reports in 5.0 s via 2 of 3 proxies (1 not in use, see below)`: what really happened. */
function summary(devices: number, reports: number, started: number, via: string, heardInAll: number | undefined): string {
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const filtered = heardInAll === undefined ? '' : ` (of ${heardInAll} heard; filters applied)`;
  return `${devices} device${devices === 1 ? '' : 's'}${filtered}, ${reports} reports in ${seconds} s via ${via}`;
}
