import type { ApiConnection } from '../connection/connection.js';
import { InvalidArgumentError } from '../errors.js';
import { BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../gen/api_pb.js';
import { type CallOptions, pendingReply, type Settler, withDeadline } from '../util/abort.js';
import { formatMac } from './address.js';
import { BLE_OPERATION_TIMEOUT_MS } from './timeouts.js';

/** A device request that needs no link: deleting a bond, clearing the proxy's GATT cache. */
export type DeviceOpKind = 'unpair' | 'clear';

/** How the proxy answered a device request. */
export interface DeviceOpResult {
  readonly success: boolean;
  readonly error: number;
}

const REQUEST_TYPES: Record<DeviceOpKind, BluetoothDeviceRequestType> = {
  unpair: BluetoothDeviceRequestType.UNPAIR,
  clear: BluetoothDeviceRequestType.CLEAR_CACHE,
};

/** The unpair and clear-cache requests in flight, one per kind and address, settled by the proxy's answers. */
export class DeviceOps {
  readonly #api: ApiConnection;
  readonly #pending = new Map<string, Settler<DeviceOpResult>>();

  constructor(api: ApiConnection) {
    this.#api = api;
  }

  /** Sends the request and waits for its answer (BLE_OPERATION_TIMEOUT_MS unless `options.timeout`). */
  run(address: number, kind: DeviceOpKind, label: string, options: CallOptions): Promise<DeviceOpResult> {
    const key = `${kind}:${address}`;
    if (this.#pending.has(key)) throw new InvalidArgumentError(`A ${kind} of ${formatMac(address)} is already running`);
    return withDeadline(
      `${kind === 'unpair' ? 'Unpair' : 'Clear cache'} of ${formatMac(address)} via ${label}`,
      options,
      BLE_OPERATION_TIMEOUT_MS,
      (signal) =>
        pendingReply<DeviceOpResult>(
          signal,
          (settle) => {
            this.#pending.set(key, settle);
            this.#api.send(BluetoothDeviceRequest, { address, requestType: REQUEST_TYPES[kind] });
          },
          () => this.#pending.delete(key),
        ),
    );
  }

  /** Settles the pending request of `kind` for `address`; false when none was waiting. */
  settle(kind: DeviceOpKind, address: number, result: DeviceOpResult): boolean {
    const key = `${kind}:${address}`;
    const pending = this.#pending.get(key);
    if (pending === undefined) return false;
    this.#pending.delete(key);
    pending.resolve(result);
    return true;
  }

  /** Rejects every pending request: its answer will not come to this session. */
  failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}
