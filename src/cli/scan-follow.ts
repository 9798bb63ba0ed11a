import { DeviceTracker } from '../bluetooth/advertisement.js';
import type { CommandContext } from './command.js';
import { EXIT, paint, table } from './output.js';
import { matches, type ScanFilter } from './scan-filter.js';
import type { AdvertisementSource } from './scan-source.js';
import { deviceCells, deviceJson, scanWindow, TABLE_HEADERS, viaText } from './scan-view.js';
import { sanitize } from './single-proxy.js';

/** The live table is redrawn at most this often: twice a second reads as live without flicker. */
const REDRAW_MS = 500;
/** Rows of the live table when the terminal does not say how many it has. */
const DEFAULT_ROWS = 24;
/** Lines above and below the table rows (title, headers, rule, status). */
const TABLE_CHROME_LINES = 5;

/**
 * `scan --follow`: every report that passes the filters, until Ctrl-C or `durationMs`. As JSON lines (one per report,
 * the device merged so far) or, on a terminal, as a table of the devices redrawn twice a second.
 */
export async function followScan(
  source: AdvertisementSource,
  ctx: CommandContext,
  options: { filter: ScanFilter; durationMs: number | undefined; json: boolean },
): Promise<number> {
  const { out, signal } = ctx;
  const tracker = new DeviceTracker();
  const counts = new Map<number, number>();
  const lastProxy = new Map<number, string>();
  let reports = 0;
  let shown = 0;
  let redraw: NodeJS.Timeout | undefined;
  const started = Date.now();
  const names = source.names();
  const draw = (): void => {
    redraw = undefined;
    const devices = tracker
      .devices()
      .filter((d) => matches(options.filter, d, d.rssi))
      .sort((a, b) => b.rssi - a.rssi);
    // A pseudo-terminal may report 0 rows: then the common 24.
    const rows = Math.max(1, (process.stdout.rows || DEFAULT_ROWS) - TABLE_CHROME_LINES);
    const pool = source.pool !== undefined;
    const seconds = ((Date.now() - started) / 1000).toFixed(0);
    const title = `esphome-ble scan --follow — ${new Date().toTimeString().slice(0, 8)} (Ctrl-C stops)`;
    out.line(`\u001b[2J\u001b[H${paint(out, 'bold', title)}`);
    out.line(
      table(
        pool ? [...TABLE_HEADERS, 'proxy'] : TABLE_HEADERS,
        devices.slice(0, rows).map((d) => {
          const proxy = lastProxy.get(d.address);
          return [
            ...deviceCells(out, d, d.rssi, counts.get(d.address) ?? 0),
            ...(pool ? [proxy === undefined ? '-' : sanitize(names.get(proxy) ?? proxy)] : []),
          ];
        }),
      ),
    );
    const more = devices.length > rows ? `, ${devices.length - rows} more below` : '';
    const via = pool ? viaText(source.tally()) : source.label;
    out.line(paint(out, 'dim', `${devices.length} devices${more}, ${reports} reports in ${seconds} s via ${via}`));
  };
  const off = source.onAdvertisement((ad, proxy) => {
    reports++;
    const device = tracker.update(ad);
    counts.set(ad.address, (counts.get(ad.address) ?? 0) + 1);
    if (proxy !== undefined) lastProxy.set(ad.address, proxy);
    if (lastProxy.size > 2 * tracker.maxDevices) lastProxy.clear();
    if (!matches(options.filter, device, ad.rssi)) return;
    shown++;
    if (options.json) {
      out.json({
        time: new Date(ad.timestamp).toISOString(),
        ...deviceJson(device, counts.get(ad.address) ?? 0),
        rssi: ad.rssi,
        ...(proxy === undefined ? {} : { proxy }),
      });
      return;
    }
    redraw ??= setTimeout(draw, REDRAW_MS);
  });
  try {
    if (!options.json) draw();
    const ended = new AbortController();
    const lost = await Promise.race([scanWindow(options.durationMs, AbortSignal.any([signal, ended.signal])), source.lost]);
    ended.abort();
    if (lost !== undefined) throw lost;
  } finally {
    off();
    clearTimeout(redraw);
  }
  if (!options.json) draw();
  const tally = source.tally();
  out.error(
    paint(out, 'dim', `${shown} reports shown of ${reports} heard via ${source.pool === undefined ? source.label : viaText(tally)}`),
  );
  for (const reason of tally.failed) out.error(`${paint(out, 'red', 'error')} proxy ${reason}: this run lacks what it hears`);
  return tally.failed.length > 0 ? EXIT.failure : EXIT.ok;
}
