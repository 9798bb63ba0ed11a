import type { Advertisement } from '../bluetooth/advertisement.js';
import { emptyNobleAdvertisement, foldAdStructures, foldAdvertisementData, type NobleAdvertisement } from './noble-advertisement.js';
import { fromNobleUuid, nobleAddress, nobleId } from './noble-format.js';

/** Weight of a new RSSI sample in a proxy's moving average for a device: settles in ~3 reports, ignores one outlier. */
const RSSI_SMOOTHING = 0.3;
/**
 * Another proxy takes over as a device's reporter only when its smoothed RSSI beats the current one's by this
 * much: the simulated and real per-report jitter is ±3–4 dB, so a smaller margin would flip on noise alone.
 */
export const BEST_PROXY_HYSTERESIS_DB = 3;
/**
 * The reporting proxy counts as gone when it has been silent for three of its own report intervals for the
 * device, but never sooner than this: ESPHome batches reports for up to 100 ms and devices rotate payloads.
 */
export const BEST_PROXY_MIN_STALE_MS = 3_000;
/**
 * Default of how long a connectable device's first report waits for a second one. noble's HCI layer holds it
 * until the scan response or the next report, so the one discover a scan without duplicates gives already
 * carries both halves; ESPHome forwards them as separate reports (and devices that alternate payloads send
 * them an interval apart, typically 1–2 s), so the wait ends with the second report or after this long, which
 * keeps a slow single-payload device from being discovered only a whole (up to 10 s) interval later.
 */
export const SCAN_RESPONSE_TIMEOUT_MS = 2_000;
/** Devices tracked at most (oldest first out): bounds memory under rotating private addresses. */
export const MAX_TRACKED_DEVICES = 10_000;

/** Distinct advertised UUIDs whose filter verdict is remembered. */
const MAX_FILTER_CACHE = 1_024;

/** How one proxy hears one device. */
interface Hearing {
  readonly proxy: string;
  rssi: number;
  lastSeen: number;
  interval: number;
}

/** What the bindings know about one device, across every proxy. */
export interface TrackedDevice {
  readonly address: number;
  /** noble's peripheral id (`c0ffee000001`). */
  readonly id: string;
  /** noble's address text (`c0:ff:ee:00:00:01`). */
  readonly nobleAddress: string;
  /** Address type and RSSI of the last report of the reporting (best) proxy. */
  addressType: number;
  rssi: number;
  /** True when some proxy that hears the device can open connections now (the pool may fail over to it). */
  connectable: boolean;
  /** Accumulated like noble's HCI GAP layer does per address; the same object is reported every time. */
  readonly advertisement: NobleAdvertisement;
  readonly heard: Hearing[];
  best: string | undefined;
  /** Reports of the reporting proxy so far (noble's HCI layer holds a connectable device's first one). */
  reports: number;
  /** The last AD bytes folded in, and whether noble kept that report (an identical repeat gets the same verdict). */
  lastRaw: Uint8Array | undefined;
  lastKept: boolean;
  /** Scan generation in which the device was last reported. */
  scanSeen: number;
  /** When its first report was held back (see SCAN_RESPONSE_TIMEOUT_MS). */
  heldAt: number;
}

/**
 * Turns the pool's advertisement rail into noble `discover` reports: one reporter per device (the proxy that
 * hears it best, with hysteresis), AD fields folded from every proxy, noble's service-UUID filter and the
 * controller-level duplicate filter noble asks for when `allowDuplicates` is false.
 */
export class ScanTracker {
  readonly #holdMs: number;
  readonly #canConnect: (proxy: string) => boolean;
  readonly #onEvict: (device: TrackedDevice) => void;
  readonly #devices = new Map<number, TrackedDevice>();
  readonly #filterCache = new Map<string, boolean>();
  /** Devices whose first report is held, oldest first. */
  readonly #held = new Map<number, TrackedDevice>();
  #filter: ReadonlySet<string> | undefined;
  #allowDuplicates = false;
  #generation = 0;
  #scanning = false;

  /**
   * `scanResponseTimeout`: how long a connectable device's first report waits for a second (default 2 s);
   * `canConnect`: whether a proxy can open connections now (asked at every report, so a proxy that lost its
   * subscription stops making the devices it heard connectable; default: none can); `onEvict`: called for a
   * device dropped to stay within MAX_TRACKED_DEVICES, so state kept per device elsewhere can go with it.
   */
  constructor(
    options: {
      scanResponseTimeout?: number | undefined;
      canConnect?: (proxy: string) => boolean;
      onEvict?: (device: TrackedDevice) => void;
    } = {},
  ) {
    this.#holdMs = options.scanResponseTimeout ?? SCAN_RESPONSE_TIMEOUT_MS;
    this.#canConnect = options.canConnect ?? (() => false);
    this.#onEvict = options.onEvict ?? (() => {});
  }

  /** True between start() and stop(). */
  get scanning(): boolean {
    return this.#scanning;
  }

  /** Starts a scan: `serviceUuids` in any form noble users write (empty = every device). */
  start(serviceUuids: readonly string[] | undefined, allowDuplicates: boolean): void {
    const filter = new Set<string>();
    for (const uuid of serviceUuids ?? []) {
      try {
        filter.add(fromNobleUuid(uuid));
      } catch {
        // noble compares filter strings literally, so a malformed one simply never matches.
      }
    }
    this.#filter = (serviceUuids ?? []).length === 0 ? undefined : filter;
    this.#filterCache.clear();
    this.#allowDuplicates = allowDuplicates;
    this.#generation++;
    this.#scanning = true;
  }

  /** Lets a running scan without duplicates report every device once more (noble forgot them). */
  forgetReported(): void {
    this.#generation++;
  }

  /** Stops the scan (RSSI tracking goes on, AD bytes are no longer parsed). */
  stop(): void {
    this.#scanning = false;
    this.#held.clear();
  }

  /** When the oldest held first report is due, if any is held. */
  nextHeldDue(): number | undefined {
    const oldest = this.#held.values().next().value;
    return oldest === undefined ? undefined : oldest.heldAt + this.#holdMs;
  }

  /** The held devices whose wait is over at `now` and that noble should get a `discover` for. */
  releaseHeld(now: number): TrackedDevice[] {
    const due: TrackedDevice[] = [];
    for (const device of this.#held.values()) {
      if (device.heldAt + this.#holdMs > now) break;
      this.#held.delete(device.address);
      if (this.#scanning && this.#reportable(device)) due.push(device);
    }
    return due;
  }

  /** The device with this address, if any proxy heard it. */
  get(address: number): TrackedDevice | undefined {
    return this.#devices.get(address);
  }

  /** Folds one report in; returns the device when noble should get a `discover` for it now. */
  ingest(ad: Advertisement, proxy: string): TrackedDevice | undefined {
    const device = this.#device(ad.address);
    const now = ad.timestamp;
    const isBest = this.#hear(device, proxy, ad.rssi, now);
    if (isBest) {
      device.rssi = ad.rssi;
      device.addressType = ad.addressType;
      let any = false;
      for (const h of device.heard) any ||= this.#canConnect(h.proxy);
      device.connectable = any;
    }
    if (!this.#scanning) return undefined;
    if (!this.#fold(device, ad)) return undefined;
    if (!isBest) return undefined;
    device.reports++;
    // noble's HCI layer waits for a connectable device's scan response (or second report) before its first discover.
    if (device.connectable && device.reports === 1) {
      device.heldAt = now;
      this.#held.set(device.address, device);
      return undefined;
    }
    this.#held.delete(device.address);
    return this.#reportable(device) ? device : undefined;
  }

  /** Applies noble's service-UUID filter and, without duplicates, reports a device once per scan. */
  #reportable(device: TrackedDevice): boolean {
    if (this.#filter !== undefined && !this.#matches(device.advertisement)) return false;
    if (!this.#allowDuplicates && device.scanSeen === this.#generation) return false;
    device.scanSeen = this.#generation;
    return true;
  }

  #device(address: number): TrackedDevice {
    let device = this.#devices.get(address);
    if (device !== undefined) return device;
    if (this.#devices.size >= MAX_TRACKED_DEVICES) {
      const oldest = this.#devices.values().next().value;
      if (oldest !== undefined) {
        this.#devices.delete(oldest.address);
        this.#held.delete(oldest.address);
        this.#onEvict(oldest);
      }
    }
    device = {
      address,
      id: nobleId(address),
      nobleAddress: nobleAddress(address),
      addressType: 0,
      rssi: 127,
      connectable: false,
      advertisement: emptyNobleAdvertisement(),
      heard: [],
      best: undefined,
      reports: 0,
      lastRaw: undefined,
      lastKept: true,
      scanSeen: 0,
      heldAt: 0,
    };
    this.#devices.set(address, device);
    return device;
  }

  /** Updates the proxy's view of the device; true when that proxy is (now) the device's reporter. */
  #hear(device: TrackedDevice, proxy: string, rssi: number, now: number): boolean {
    let hearing: Hearing | undefined;
    for (const h of device.heard) if (h.proxy === proxy) hearing = h;
    if (hearing === undefined) {
      hearing = { proxy, rssi, lastSeen: now, interval: 0 };
      device.heard.push(hearing);
    } else {
      hearing.interval = now - hearing.lastSeen;
      hearing.rssi += RSSI_SMOOTHING * (rssi - hearing.rssi);
      hearing.lastSeen = now;
    }
    if (device.best === undefined || device.best === proxy) {
      device.best = proxy;
      return true;
    }
    let current: Hearing | undefined;
    for (const h of device.heard) if (h.proxy === device.best) current = h;
    const stale = current === undefined || now - current.lastSeen > Math.max(BEST_PROXY_MIN_STALE_MS, 3 * current.interval);
    if (stale || hearing.rssi > (current?.rssi ?? Number.NEGATIVE_INFINITY) + BEST_PROXY_HYSTERESIS_DB) {
      device.best = proxy;
      return true;
    }
    return false;
  }

  /** Folds the report's fields into the device's advertisement; false when noble would drop the report. */
  #fold(device: TrackedDevice, ad: Advertisement): boolean {
    const raw = ad.raw;
    if (raw.length === 0) {
      foldAdvertisementData(device.advertisement, ad);
      return true;
    }
    // Most reports repeat the previous payload; folding identical bytes changes nothing, so skip the parse.
    if (device.lastRaw !== undefined && sameBytes(device.lastRaw, raw)) return device.lastKept;
    device.lastRaw = raw.slice();
    device.lastKept = foldAdStructures(device.advertisement, raw);
    return device.lastKept;
  }

  #matches(advertisement: NobleAdvertisement): boolean {
    for (const uuid of advertisement.serviceUuids) if (this.#inFilter(uuid)) return true;
    for (const entry of advertisement.serviceData) if (this.#inFilter(entry.uuid)) return true;
    return false;
  }

  #inFilter(uuid: string): boolean {
    let hit = this.#filterCache.get(uuid);
    if (hit === undefined) {
      try {
        hit = this.#filter?.has(fromNobleUuid(uuid)) ?? false;
      } catch {
        hit = false;
      }
      // Bounded: random 128-bit UUIDs must not grow the cache without limit.
      if (this.#filterCache.size >= MAX_FILTER_CACHE) this.#filterCache.clear();
      this.#filterCache.set(uuid, hit);
    }
    return hit;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
