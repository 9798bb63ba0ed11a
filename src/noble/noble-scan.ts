import type { Advertisement } from '../bluetooth/advertisement.js';
import { EspApiError } from '../errors.js';
import { addressOfNobleId, nobleAddress, nobleAddressType } from './noble-format.js';
import { MAX_TRACKED_DEVICES, ScanTracker, type TrackedDevice } from './scan-tracker.js';

/** Emits one of noble's bindings events (the bindings' own `emit`). */
export type NobleEmit = (event: string, ...args: unknown[]) => void;

/** What noble passes to a connect (its HCI layer reads the address type of an id it never heard from it). */
export type ConnectParameters = { addressType?: 'public' | 'random' } | null | undefined;

/** RSSI noble's HCI layer reports for a peripheral it never heard (the HCI "not available" value). */
const RSSI_UNAVAILABLE = 127;
/**
 * Ids the bindings remember announcing: every tracked device (its id leaves with it when the scan tracker drops
 * it) plus as many again that only a connect named, so rotating private addresses cannot grow the set forever.
 */
const MAX_ANNOUNCED = 2 * MAX_TRACKED_DEVICES;

/** Options of the bindings' scan. */
export interface NobleScanOptions {
  /** How long a connectable device's first report waits for its scan response or next report. */
  readonly scanResponseTimeout: number | undefined;
  /** Whether the pool can connect through `proxy` now. */
  readonly canConnect: (proxy: string) => boolean;
}

/**
 * What noble hears: the pool's advertisements as `discover` events (through the scan tracker, holding a
 * connectable device's first report until its scan response), RSSI updates, and the ids noble has had a
 * `discover` for, with the one noble's HCI layer makes up for a peripheral it connects to unheard.
 */
export class NobleScan {
  readonly #emit: NobleEmit;
  readonly #tracker: ScanTracker;
  /** Peripheral ids noble has had a `discover` for (a connect to any other needs a synthetic one first, as in noble's HCI layer). */
  readonly #announced = new Set<string>();
  #heldTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(emit: NobleEmit, options: NobleScanOptions) {
    this.#emit = emit;
    this.#tracker = new ScanTracker({
      scanResponseTimeout: options.scanResponseTimeout,
      canConnect: options.canConnect,
      onEvict: (device) => this.#announced.delete(device.id),
    });
  }

  /** Starts reporting `discover`; `serviceUuids` filters on advertised service UUIDs and service data. */
  start(serviceUuids: readonly string[], allowDuplicates: boolean): void {
    this.#tracker.start(serviceUuids, allowDuplicates);
  }

  /** Stops reporting `discover`. */
  stop(): void {
    this.#tracker.stop();
    this.#clearHeldTimer();
  }

  /** Stops for good: no `discover` from now on. */
  close(): void {
    this.#closed = true;
    this.stop();
  }

  /** One advertisement the pool heard through `proxy`. */
  ingest(ad: Advertisement, proxy: string): void {
    const device = this.#tracker.ingest(ad, proxy);
    if (device !== undefined) this.#discover(device);
    else if (this.#heldTimer === undefined) this.#scheduleHeld();
  }

  /** Reports the RSSI of the device's latest advertisement from its best proxy (`rssiUpdate`). */
  updateRssi(id: string): void {
    let device: TrackedDevice | undefined;
    try {
      device = this.#tracker.get(addressOfNobleId(id));
    } catch {
      device = undefined;
    }
    queueMicrotask(() => {
      if (device !== undefined) this.#emit('rssiUpdate', id, device.rssi);
      else this.#emit('rssiUpdate', id, RSSI_UNAVAILABLE, new EspApiError('ESPAPI_ERR_DEVICE_NOT_FOUND', `No proxy has heard ${id}`));
    });
  }

  /** The `discover` noble's HCI layer makes up for a peripheral it connects to without having heard it. */
  announce(id: string, address: number, parameters: ConnectParameters): void {
    if (this.#announced.has(id)) return;
    this.#markAnnounced(id);
    const heard = this.#tracker.get(address);
    const addressType = heard !== undefined ? nobleAddressType(heard.addressType) : (parameters?.addressType ?? 'random');
    // The address in noble's lower-case text whatever the id's spelling, as its HCI layer reports addresses.
    this.#emit('discover', id, nobleAddress(address), addressType, true, { serviceUuids: [], serviceData: [] }, RSSI_UNAVAILABLE, false);
  }

  /** The adapter left poweredOn and noble dropped its peripherals: announce every device afresh when it is back. */
  forgetAnnounced(): void {
    this.#announced.clear();
    this.#tracker.forgetReported();
  }

  #scheduleHeld(): void {
    const due = this.#tracker.nextHeldDue();
    if (due === undefined || this.#closed) return;
    this.#heldTimer = setTimeout(
      () => {
        this.#heldTimer = undefined;
        for (const device of this.#tracker.releaseHeld(Date.now())) this.#discover(device);
        this.#scheduleHeld();
      },
      Math.max(0, due - Date.now()),
    );
  }

  #clearHeldTimer(): void {
    clearTimeout(this.#heldTimer);
    this.#heldTimer = undefined;
  }

  #discover(device: TrackedDevice): void {
    this.#markAnnounced(device.id);
    this.#emit(
      'discover',
      device.id,
      device.nobleAddress,
      nobleAddressType(device.addressType),
      device.connectable,
      device.advertisement,
      device.rssi,
      false,
    );
  }

  #markAnnounced(id: string): void {
    if (this.#announced.has(id)) return;
    if (this.#announced.size >= MAX_ANNOUNCED) this.#announced.delete(this.#announced.values().next().value!);
    this.#announced.add(id);
  }
}
