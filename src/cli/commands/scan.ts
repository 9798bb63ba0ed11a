import { addressTypeName } from '../../bluetooth/address.js';
import { DeviceTracker, type MergedDevice } from '../../bluetooth/advertisement.js';
import { ConnectionClosedError } from '../../errors.js';
import { type Command, type CommandArgs, type CommandContext, flag, UsageError } from '../command.js';
import { openReadyPool, proxyShortNames, SOURCE_HELP, SOURCE_OPTIONS, usesPool } from '../device-session.js';
import { type Output, paint, Spinner, table } from '../output.js';
import { hexOf, runWithProxy, sanitize, secondsOption, shortUuid } from '../single-proxy.js';

/** Listening time without --duration: several advertising intervals of even slow (1-2 s) advertisers. */
const DEFAULT_SCAN_MS = 5_000;

/** `esphome-ble scan`: listen to the advertisements of one proxy (or every proxy of the pool) and print one row per device. */
export const scanCommand: Command = {
  name: 'scan',
  summary: 'Listen to the advertisements one proxy (or the whole pool) hears and list the devices',
  usage:
    'esphome-ble scan (--host H [--port 6053] [--password PW] | [--proxy host[:port]]... [--config FILE]) [--psk B64] [--duration 5] [--timeout ms] [--json]',
  options: { ...SOURCE_OPTIONS, duration: { type: 'string' } },
  help: [
    `Listens for --duration seconds (default ${DEFAULT_SCAN_MS / 1000}; Ctrl-C stops early and still prints) and merges`,
    'advertisements and scan responses per address: newest RSSI and address type, names, service UUIDs,',
    'manufacturer and service data; count is the number of reports heard. Sorted by RSSI, strongest first.',
    '--json prints ONE JSON array at the end (not JSON lines), one object per device:',
    '{"mac","addressType":"public|random|...","name"|null,"rssi","txPower"|null,"serviceUuids":[...],',
    '"manufacturerIds":["0x004c"],"manufacturerData":{"0x004c":"hex"},"serviceData":{"<uuid>":"hex"},"count","lastSeen":"ISO-8601"}.',
    'Without --host the reports of every proxy of the pool are merged: the table gains a "proxies" column (the',
    'proxies that heard the device with their newest RSSI, strongest first), rssi is the best of those, and each',
    'JSON object gains "proxies":{"<proxy id>":rssi}.',
    SOURCE_HELP,
  ].join('\n'),
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const durationMs = secondsOption(args, 'duration') ?? DEFAULT_SCAN_MS;
    return usesPool(args) ? scanPool(args, ctx, durationMs) : scanOneProxy(args, ctx, durationMs);
  },
};

async function scanOneProxy(args: CommandArgs, ctx: CommandContext, durationMs: number): Promise<number> {
  const { out, signal } = ctx;
  const json = flag(args, 'json');
  const spinner = new Spinner(out);
  try {
    return await runWithProxy(args, ctx, async ({ api, proxy }) => {
      const tracker = new DeviceTracker();
      const counts = new Map<number, number>();
      let reports = 0;
      const started = Date.now();
      spinner.update(`scanning via ${proxy.label}`);
      const off = proxy.onAdvertisement((ad) => {
        reports++;
        tracker.update(ad);
        counts.set(ad.address, (counts.get(ad.address) ?? 0) + 1);
        spinner.update(`scanning via ${proxy.label}: ${tracker.size} devices, ${reports} reports`);
      });
      // Ends on the deadline, on Ctrl-C (a normal way to stop a scan), or with the session's end (an error).
      const ended = new AbortController();
      const lost = await Promise.race([
        scanWindow(durationMs, AbortSignal.any([signal, ended.signal])),
        api.closed().then((error) => error ?? new ConnectionClosedError(`API session to ${api.label} closed during the scan`)),
      ]);
      ended.abort();
      off();
      spinner.stop();
      if (lost !== undefined) throw lost;
      const devices = tracker.devices().sort((a, b) => b.rssi - a.rssi);
      if (json) {
        out.json(devices.map((d) => deviceJson(d, counts.get(d.address) ?? 0)));
        return 0;
      }
      out.line(
        table(
          TABLE_HEADERS,
          devices.map((d) => deviceCells(out, d, d.rssi, counts.get(d.address) ?? 0)),
        ),
      );
      out.line(paint(out, 'dim', summary(devices.length, reports, started, sanitize(proxy.label))));
      return 0;
    });
  } finally {
    spinner.stop();
  }
}

/** Merges the advertisements of every proxy of the pool per device, remembering who heard it how loud. */
async function scanPool(args: CommandArgs, ctx: CommandContext, durationMs: number): Promise<number> {
  const { out, signal } = ctx;
  const json = flag(args, 'json');
  const spinner = new Spinner(out);
  const cli = await openReadyPool(args, ctx, spinner);
  try {
    const { pool } = cli;
    const tracker = new DeviceTracker();
    const counts = new Map<number, number>();
    /** Newest RSSI per device, per proxy id. */
    const heard = new Map<number, Map<string, number>>();
    let reports = 0;
    const started = Date.now();
    const count = pool.proxies().length;
    const via = `${count} prox${count === 1 ? 'y' : 'ies'}`;
    spinner.update(`scanning via ${via}`);
    const off = pool.onAdvertisement((ad, proxy) => {
      reports++;
      tracker.update(ad);
      counts.set(ad.address, (counts.get(ad.address) ?? 0) + 1);
      let byProxy = heard.get(ad.address);
      if (byProxy === undefined) {
        byProxy = new Map();
        heard.set(ad.address, byProxy);
        // The tracker evicts its least recently heard devices; keep this table as bounded as it is.
        if (heard.size > 2 * tracker.maxDevices) forgetEvicted(heard, counts, tracker);
      }
      byProxy.set(proxy, ad.rssi);
      spinner.update(`scanning via ${via}: ${tracker.size} devices, ${reports} reports`);
    });
    // Proxies that drop out reconnect on their own: only the deadline or Ctrl-C ends a pool scan.
    await scanWindow(durationMs, signal);
    off();
    spinner.stop();
    const names = proxyShortNames(pool);
    const devices = tracker
      .devices()
      .map((device) => {
        const proxies = [...(heard.get(device.address) ?? new Map<string, number>())].sort((a, b) => b[1] - a[1]);
        return { device, proxies, rssi: proxies[0]?.[1] ?? device.rssi };
      })
      .sort((a, b) => b.rssi - a.rssi);
    if (json) {
      out.json(
        devices.map(({ device, proxies, rssi }) => ({
          ...deviceJson(device, counts.get(device.address) ?? 0),
          rssi,
          proxies: Object.fromEntries(proxies),
        })),
      );
      return 0;
    }
    out.line(
      table(
        [...TABLE_HEADERS, 'proxies'],
        devices.map(({ device, proxies, rssi }) => [
          ...deviceCells(out, device, rssi, counts.get(device.address) ?? 0),
          proxies.map(([id, value]) => `${sanitize(names.get(id) ?? id)} ${value}`).join(', '),
        ]),
      ),
    );
    out.line(paint(out, 'dim', summary(devices.length, reports, started, via)));
    return 0;
  } finally {
    spinner.stop();
    await cli.close();
  }
}

/** Resolves after `ms` or on Ctrl-C (a normal way to stop a scan), whichever comes first. */
async function scanWindow(ms: number, signal: AbortSignal): Promise<undefined> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort = (): void => {};
  try {
    return await new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
      onAbort = () => resolve(undefined);
      if (signal.aborted) resolve(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

function forgetEvicted(heard: Map<number, unknown>, counts: Map<number, number>, tracker: DeviceTracker): void {
  const kept = new Set(tracker.devices().map((d) => d.address));
  for (const address of heard.keys()) {
    if (kept.has(address)) continue;
    heard.delete(address);
    counts.delete(address);
  }
}

const TABLE_HEADERS = ['mac', 'type', 'rssi', 'name', 'services', 'manufacturer', 'count'];

function deviceCells(out: Output, d: MergedDevice, rssi: number, count: number): string[] {
  return [
    d.mac,
    addressTypeName(d.addressType),
    String(rssi),
    d.localName === undefined ? paint(out, 'dim', '-') : sanitize(d.localName),
    d.serviceUuids.map(shortUuid).join(',') || '-',
    [...d.manufacturerData.keys()].map(companyId).join(',') || '-',
    String(count),
  ];
}

function summary(devices: number, reports: number, started: number, via: string): string {
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  return `${devices} device${devices === 1 ? '' : 's'}, ${reports} reports in ${seconds} s via ${via}`;
}

function deviceJson(d: MergedDevice, count: number): Record<string, unknown> {
  return {
    mac: d.mac,
    addressType: addressTypeName(d.addressType),
    name: d.localName ?? null,
    rssi: d.rssi,
    txPower: d.txPower ?? null,
    serviceUuids: d.serviceUuids,
    manufacturerIds: [...d.manufacturerData.keys()].map(companyId),
    manufacturerData: Object.fromEntries([...d.manufacturerData].map(([id, data]) => [companyId(id), hexOf(data)])),
    serviceData: Object.fromEntries([...d.serviceData].map(([uuid, data]) => [uuid, hexOf(data)])),
    count,
    lastSeen: new Date(d.timestamp).toISOString(),
  };
}

/** `0x004c` form of a Bluetooth SIG company identifier. */
function companyId(id: number): string {
  return `0x${id.toString(16).padStart(4, '0')}`;
}
