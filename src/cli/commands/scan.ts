import { addressTypeName } from '../../bluetooth/address.js';
import { DeviceTracker, type MergedDevice } from '../../bluetooth/advertisement.js';
import { ConnectionClosedError } from '../../errors.js';
import { type Command, flag, PROXY_OPTIONS, UsageError } from '../command.js';
import { paint, Spinner, table } from '../output.js';
import { hexOf, PROXY_HELP, runWithProxy, sanitize, secondsOption, shortUuid } from '../single-proxy.js';

/** Listening time without --duration: several advertising intervals of even slow (1-2 s) advertisers. */
const DEFAULT_SCAN_MS = 5_000;

/** `esphome-ble scan`: listen to one proxy's advertisements and print one row per device. */
export const scanCommand: Command = {
  name: 'scan',
  summary: 'Listen to the advertisements one proxy hears and list the devices',
  usage: 'esphome-ble scan --host H [--port 6053] [--psk B64] [--password PW] [--duration 5] [--timeout ms] [--json]',
  options: { ...PROXY_OPTIONS, duration: { type: 'string' } },
  help: [
    `Listens for --duration seconds (default ${DEFAULT_SCAN_MS / 1000}; Ctrl-C stops early and still prints) and merges`,
    'advertisements and scan responses per address: newest RSSI and address type, names, service UUIDs,',
    'manufacturer and service data; count is the number of reports heard. Sorted by RSSI, strongest first.',
    '--json prints ONE JSON array at the end (not JSON lines), one object per device:',
    '{"mac","addressType":"public|random|...","name"|null,"rssi","txPower"|null,"serviceUuids":[...],',
    '"manufacturerIds":["0x004c"],"manufacturerData":{"0x004c":"hex"},"serviceData":{"<uuid>":"hex"},"count","lastSeen":"ISO-8601"}.',
    PROXY_HELP,
  ].join('\n'),
  async run(args, ctx) {
    const { out, signal } = ctx;
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const durationMs = secondsOption(args, 'duration') ?? DEFAULT_SCAN_MS;
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
        let timer: NodeJS.Timeout | undefined;
        let onAbort = (): void => {};
        const lost = await Promise.race([
          new Promise<undefined>((resolve) => {
            timer = setTimeout(() => resolve(undefined), durationMs);
            onAbort = () => resolve(undefined);
            signal.addEventListener('abort', onAbort, { once: true });
          }),
          api.closed().then((error) => error ?? new ConnectionClosedError(`API session to ${api.label} closed during the scan`)),
        ]);
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
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
            ['mac', 'type', 'rssi', 'name', 'services', 'manufacturer', 'count'],
            devices.map((d) => [
              d.mac,
              addressTypeName(d.addressType),
              String(d.rssi),
              d.localName === undefined ? paint(out, 'dim', '-') : sanitize(d.localName),
              d.serviceUuids.map(shortUuid).join(',') || '-',
              [...d.manufacturerData.keys()].map(companyId).join(',') || '-',
              String(counts.get(d.address) ?? 0),
            ]),
          ),
        );
        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        out.line(
          paint(
            out,
            'dim',
            `${devices.length} device${devices.length === 1 ? '' : 's'}, ${reports} reports in ${seconds} s via ${sanitize(proxy.label)}`,
          ),
        );
        return 0;
      });
    } finally {
      spinner.stop();
    }
  },
};

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
