import type { PartialMessage } from '@protobuf-ts/runtime';
import { BluetoothProxyFeature } from '../bluetooth/features.js';
import {
  BluetoothLEAdvertisementResponse,
  BluetoothLERawAdvertisementsResponse,
  BluetoothScannerMode,
  BluetoothScannerState,
  BluetoothScannerStateResponse,
} from '../gen/api_pb.js';
import type { BluetoothAudience } from './bluetooth-audience.js';
import { type FirmwareProfile, legacyAdvertisement } from './firmware.js';
import type { SimulatedPeripheral } from './simulated-peripheral.js';
import type { TimerSet } from './timer-set.js';

/** SubscribeBluetoothLEAdvertisementsRequest flag SUBSCRIPTION_RAW_ADVERTISEMENTS (the schema has no enum for it). */
const SUBSCRIPTION_RAW_ADVERTISEMENTS = 1;

/** The firmware flushes its advertisement queue at 16 reports (one Wi-Fi MTU) ... */
export const ADVERTISEMENT_BATCH_SIZE = 16;
/** ... or every 100 ms, whichever comes first. */
export const ADVERTISEMENT_FLUSH_MS = 100;

/** What the advertiser needs from the proxy it belongs to. */
export interface SimulatedAdvertiserOptions {
  readonly peripherals: readonly SimulatedPeripheral[];
  readonly audience: BluetoothAudience;
  readonly timers: TimerSet;
  readonly firmware: FirmwareProfile | undefined;
  readonly featureFlags: number;
  /** Advertise at all (benchmarks switch it off and blast batches instead). */
  readonly advertise: boolean;
  /** Added to every peripheral's RSSI. */
  readonly rssiOffset: number;
  readonly scannerMode: 'active' | 'passive';
  /** Whether the device at `address` holds an established link (a connected peripheral usually stops advertising). */
  readonly isConnected: (address: number) => boolean;
}

/**
 * The simulated proxy's scanner: each peripheral's advertisements at its interval, queued and flushed to the
 * subscriber in raw batches (or one parsed message per report, as older firmware sends them), and the scanner
 * state and mode.
 */
export class SimulatedAdvertiser {
  readonly #options: SimulatedAdvertiserOptions;
  readonly #configuredMode: BluetoothScannerMode;
  #mode: BluetoothScannerMode;
  /** The subscriber set SUBSCRIPTION_RAW_ADVERTISEMENTS (firmware before 2025.8 sends parsed ones otherwise). */
  #rawRequested = true;
  #timer: NodeJS.Timeout | undefined;
  #queue: Array<{ address: number; rssi: number; addressType: number; data: Uint8Array }> = [];
  readonly #nextAdAt = new Map<SimulatedPeripheral, number>();

  constructor(options: SimulatedAdvertiserOptions) {
    this.#options = options;
    this.#configuredMode = options.scannerMode === 'passive' ? BluetoothScannerMode.PASSIVE : BluetoothScannerMode.ACTIVE;
    this.#mode = this.#configuredMode;
  }

  /** A client subscribed with `flags`: report the scanner running and start advertising to the audience. */
  start(flags: number): void {
    const options = this.#options;
    this.#rawRequested = (flags & SUBSCRIPTION_RAW_ADVERTISEMENTS) !== 0;
    if (options.featureFlags & BluetoothProxyFeature.FEATURE_STATE_AND_MODE) this.#sendScannerState(BluetoothScannerState.RUNNING);
    if (options.advertise && this.#timer === undefined && options.peripherals.length > 0) {
      this.#timer = setInterval(() => this.#tick(), ADVERTISEMENT_FLUSH_MS);
    }
  }

  /** Nobody is subscribed any more: stop advertising and drop what was queued. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
  }

  /** BluetoothScannerSetModeRequest: the scanner stops and starts again in the new mode. */
  setMode(mode: BluetoothScannerMode): void {
    if (mode === this.#mode) return;
    this.#mode = mode;
    const timers = this.#options.timers;
    this.#sendScannerState(BluetoothScannerState.STOPPING);
    timers.later(5, () => this.#sendScannerState(BluetoothScannerState.STOPPED));
    timers.later(10, () => this.#sendScannerState(BluetoothScannerState.STARTING));
    timers.later(15, () => this.#sendScannerState(BluetoothScannerState.RUNNING));
  }

  /** Sends prepared advertisement batches straight to the subscriber (benchmarks); dropped for a subscriber that is behind. */
  sendRawBatch(batch: PartialMessage<BluetoothLERawAdvertisementsResponse>): void {
    this.#options.audience.sendAdvertisements(BluetoothLERawAdvertisementsResponse, batch, batch.advertisements?.length ?? 1);
  }

  #sendScannerState(state: BluetoothScannerState): void {
    this.#options.audience.send(BluetoothScannerStateResponse, { state, mode: this.#mode, configuredMode: this.#configuredMode });
  }

  #tick(): void {
    const { peripherals, audience, firmware, rssiOffset, isConnected } = this.#options;
    const now = Date.now();
    for (const peripheral of peripherals) {
      const due = this.#nextAdAt.get(peripheral) ?? 0;
      if (now < due) continue;
      this.#nextAdAt.set(peripheral, now + peripheral.advertisingIntervalMs);
      // A connected peripheral usually stops advertising; a device may also switch its advertising off.
      if (isConnected(peripheral.address) || !peripheral.advertisingEnabled) continue;
      const ad = peripheral.nextAdvertisement(now);
      this.#queue.push({ ...ad, rssi: ad.rssi + rssiOffset });
    }
    const format = firmware?.advertisements ?? 'raw';
    if (format === 'legacy' || (format === 'raw-if-requested' && !this.#rawRequested)) {
      // Parsed advertisements: one message per report.
      for (const ad of this.#queue.splice(0)) {
        audience.sendAdvertisements(BluetoothLEAdvertisementResponse, legacyAdvertisement(ad.address, ad.rssi, ad.addressType, ad.data), 1);
      }
      return;
    }
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, ADVERTISEMENT_BATCH_SIZE);
      audience.sendAdvertisements(BluetoothLERawAdvertisementsResponse, { advertisements: batch }, batch.length);
    }
  }
}
