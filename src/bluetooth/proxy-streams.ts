import type { BluetoothDeviceConnectionResponse, BluetoothLEAdvertisementResponse, BluetoothScannerStateResponse } from '../gen/api_pb.js';
import type { QueueOptions } from '../util/async-queue.js';
import { ByteSlab } from '../util/bytes.js';
import { Channel } from '../util/channel.js';
import { formatMac } from './address.js';
import { AddressTypeCache } from './address-types.js';
import { type Advertisement, fromLegacyAdvertisement, parseRawAdvertisement } from './advertisement.js';
import { describeConnectionError } from './codes.js';
import { decodeRawAdvertisements } from './raw-advertisements.js';

/** One connection-state report from the proxy. */
export interface ConnectionStateChange {
  readonly address: number;
  readonly mac: string;
  readonly connected: boolean;
  readonly mtu: number;
  /** ESP-IDF status/reason (0 = none; right after a connect request, 0 with connected=false means no free slot). */
  readonly error: number;
  readonly reasonName: string;
}

/** Scanner state as the proxy reports it. */
export interface ScannerState {
  readonly state: 'idle' | 'starting' | 'running' | 'failed' | 'stopping' | 'stopped';
  readonly mode: 'passive' | 'active';
  readonly configuredMode: 'passive' | 'active';
}

const SCANNER_STATES = ['idle', 'starting', 'running', 'failed', 'stopping', 'stopped'] as const;
const SCANNER_MODES = ['passive', 'active'] as const;

/**
 * What the proxy reports about its radio, turned into models and handed to listeners and streams: advertisements
 * (raw batches and legacy), scanner states and connection-state reports; remembers each address's type on the way.
 */
export class ProxyStreams {
  /** Advertisements, synchronously on the hot path. */
  readonly advertisements = new Channel<Advertisement>();
  /** Every connection-state report of any peripheral (peer-initiated drops included). */
  readonly connectionStates = new Channel<ConnectionStateChange>();
  /** Scanner state reports. */
  readonly scannerStates = new Channel<ScannerState>();
  #scanner: ScannerState | undefined;
  readonly #addressTypes = new AddressTypeCache();
  readonly #adBytes = new ByteSlab();

  /** The last scanner state (proxies with FEATURE_STATE_AND_MODE). */
  get scanner(): ScannerState | undefined {
    return this.#scanner;
  }

  /** Last address type heard for `address` in advertisements. */
  addressTypeOf(address: number): number | undefined {
    return this.#addressTypes.get(address);
  }

  /** A BluetoothLERawAdvertisementsResponse payload (decoded here: the hot path). */
  rawAdvertisements(payload: Uint8Array): void {
    if (this.advertisements.idle) {
      decodeRawAdvertisements(payload, (address, _rssi, addressType) => this.#addressTypes.set(address, addressType));
      return;
    }
    const now = Date.now();
    // One copy per batch: the payload aliases the socket's reusable read buffer, which the advertisements'
    // `raw` views must not see overwritten; a slab copy avoids an ArrayBuffer per batch (~1 µs each).
    const owned = this.#adBytes.copy(payload);
    decodeRawAdvertisements(owned, (address, rssi, addressType, batch, start, end) => {
      this.#addressTypes.set(address, addressType);
      this.advertisements.emit(parseRawAdvertisement(address, rssi, addressType, batch, now, start, end));
    });
  }

  /** A legacy (one device per message) advertisement. */
  legacyAdvertisement(message: BluetoothLEAdvertisementResponse): void {
    this.#addressTypes.set(message.address, message.addressType);
    this.advertisements.emit(fromLegacyAdvertisement(message, Date.now()));
  }

  /** A scanner state report. */
  scannerState(message: BluetoothScannerStateResponse): void {
    const state: ScannerState = {
      state: SCANNER_STATES[message.state] ?? 'idle',
      mode: SCANNER_MODES[message.mode] ?? 'passive',
      configuredMode: SCANNER_MODES[message.configuredMode] ?? 'passive',
    };
    this.#scanner = state;
    this.scannerStates.emit(state);
  }

  /** A connection-state report (the model is built only when someone listens). */
  connectionState(message: BluetoothDeviceConnectionResponse): void {
    if (this.connectionStates.idle) return;
    this.connectionStates.emit({
      address: message.address,
      mac: formatMac(message.address),
      connected: message.connected,
      mtu: message.mtu,
      error: message.error,
      reasonName: message.connected || message.error === 0 ? 'OK' : describeConnectionError(message.error).name,
    });
  }

  /** Advertisements as a stream; `dropped` counts what its overflow policy dropped (with the caller's own onDrop). */
  advertisementStream(options: { signal?: AbortSignal } & QueueOptions, dropped: () => void): AsyncIterableIterator<Advertisement> {
    return this.advertisements.stream({
      ...options,
      onDrop: (n) => {
        dropped();
        options.onDrop?.(n);
      },
    });
  }

  /** The session ended: every stream ends. */
  end(): void {
    this.advertisements.end();
    this.connectionStates.end();
    this.scannerStates.end();
  }
}
