import type { ApiConnection } from '../connection/connection.js';
import { BleConnectError, InvalidArgumentError, NotSubscriberError } from '../errors.js';
import { connectFailureClass } from '../failure-table.js';
import { BluetoothDeviceConnectionResponse, BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../gen/api_pb.js';
import { type CallOptions, pendingReply, withDeadline } from '../util/abort.js';
import { formatMac } from './address.js';
import { BleConnection, type LinkHost } from './ble-connection.js';
import { describeConnectionError } from './codes.js';
import type { GattServices } from './gatt.js';
import type { SlotState, SlotTracker } from './slot-tracker.js';
import { BLE_CONNECT_CLEANUP_TIMEOUT_MS, BLE_CONNECT_TIMEOUT_MS, DEFAULT_MTU } from './timeouts.js';

/** Options of connect(). */
export interface BleConnectOptions extends CallOptions {
  /** Address type from the advertisement (0 public, 1 random); default: the last one heard, else 0. */
  addressType?: number;
  /** Services from an earlier link: connect "with cache" (no discovery on the proxy). */
  cachedServices?: GattServices;
  /** MTU remembered with the cached services (the proxy's value is meaningless on cached connects). */
  cachedMtu?: number;
  /** Wait this long for the proxy to confirm the slot is free after a failed connect (default 5 s). */
  cleanupTimeout?: number;
}

/** What the connect path needs of BluetoothProxy (kept narrow, like LinkHost). */
export interface ConnectHost {
  readonly api: ApiConnection;
  readonly label: string;
  /** The host as its links see it. */
  readonly linkHost: LinkHost;
  readonly slots: SlotTracker;
  /** The proxy's open links by address; an answered attempt adds its link. */
  readonly links: Map<number, BleConnection>;
  /** This session still is the subscriber (answers reach it). */
  readonly subscribed: boolean;
  /** The proxy proved, since the last subscribe, that it sends us Bluetooth data. */
  readonly subscriberConfirmed: boolean;
  addressTypeOf(address: number): number | undefined;
  /** An error to throw instead of connecting (a relay sharing the session refuses devices its clients hold). */
  refuse(address: number): Error | undefined;
}

interface PendingConnect {
  resolve(message: BluetoothDeviceConnectionResponse): void;
  reject(error: Error): void;
  /** Builds the link the moment connected=true arrives, so a connected=false in the same TCP read finds it. */
  createLink(message: BluetoothDeviceConnectionResponse): BleConnection;
}

/**
 * The connect path: BLE connect requests in flight (one per address), their answers, and the release of the slot
 * of an attempt that failed, timed out or was given up (DISCONNECT sent, the proxy's report awaited, bounded).
 */
export class ConnectAttempts {
  readonly #host: ConnectHost;
  readonly #pending = new Map<number, PendingConnect>();

  constructor(host: ConnectHost) {
    this.#host = host;
  }

  /** Addresses with an attempt in flight. */
  get addresses(): readonly number[] {
    return [...this.#pending.keys()];
  }

  /**
   * Opens a BLE link (the caller checked features and subscription). Uses the v3 "with cache" request when
   * `cachedServices` are given, else "without cache". On any failure, timeout or abort the slot is released
   * (DISCONNECT sent, confirmation awaited, bounded) before the error is thrown.
   */
  async connect(address: number, options: BleConnectOptions): Promise<BleConnection> {
    const host = this.#host;
    const mac = formatMac(address);
    const busy = (): InvalidArgumentError => new InvalidArgumentError(`${mac} is already connected or connecting via ${host.label}`);
    if (host.links.has(address) || this.#pending.has(address)) throw busy();
    const refused = host.refuse(address);
    if (refused !== undefined) throw refused;
    const withCache = options.cachedServices !== undefined;
    const addressType = options.addressType ?? host.addressTypeOf(address) ?? 0;
    const cleanupTimeout = options.cleanupTimeout ?? BLE_CONNECT_CLEANUP_TIMEOUT_MS;
    let pending: PendingConnect | undefined;
    let sent = false;
    let created: BleConnection | undefined;
    let answered = false;
    // What a 0x100 means depends on how long the attempt took and on the slots when the answer came (failure-table.ts).
    let sentAt = 0;
    let elapsedMs: number | undefined;
    let slotsAtAnswer: SlotState | undefined;
    try {
      const reply = await withDeadline(`BLE connect to ${mac} via ${host.label}`, options, BLE_CONNECT_TIMEOUT_MS, async (signal) => {
        // The proxy ignores a connect while it still tears down an earlier link to the address, whose late
        // second connected=false would also be taken for the answer: wait until its slot is free.
        await host.slots.released(address, signal);
        if (host.links.has(address) || this.#pending.has(address)) throw busy();
        return pendingReply<BluetoothDeviceConnectionResponse>(
          signal,
          (settle) => {
            pending = {
              createLink: (m) => {
                const mtu = withCache ? (options.cachedMtu ?? DEFAULT_MTU) : m.mtu || DEFAULT_MTU;
                created = new BleConnection(host.linkHost, address, mtu, options.cachedServices, withCache);
                return created;
              },
              resolve: (m) => {
                elapsedMs = performance.now() - sentAt;
                slotsAtAnswer = host.slots.current;
                settle.resolve(m);
              },
              reject: (e) => settle.reject(e),
            };
            this.#pending.set(address, pending);
            sentAt = performance.now();
            host.api.send(BluetoothDeviceRequest, {
              address,
              requestType: withCache
                ? BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE
                : BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
              hasAddressType: true,
              addressType,
            });
            sent = true;
          },
          // Also when the send throws (the session closed, or a relay sharing it refused the connect): nothing went out.
          () => this.#forget(address, pending),
        );
      });
      answered = true;
      if (!reply.connected) {
        // After a failed attempt the proxy sends a second connected=false and only then frees the slot (§6.7).
        host.slots.markReleasing(address);
        await withDeadline(`Slot release of ${mac}`, { timeout: cleanupTimeout, signal: options.signal }, undefined, (signal) =>
          host.slots.released(address, signal),
        ).catch(() => options.signal?.throwIfAborted());
        throw connectError(reply, mac, host.label, elapsedMs, slotsAtAnswer, address);
      }
      return created!;
    } catch (error) {
      this.#forget(address, pending);
      // A caller who gave up (their signal) gets the rejection at once: the DISCONNECT goes out synchronously and the
      // slot's release is tracked, so the next connect to the address waits for it. Our own deadline waits for it here.
      const gaveUp = options.signal?.aborted === true;
      if (!host.subscribed) {
        // No answer would reach us any more; the firmware tears down a subscriber-less proxy's links itself.
        created?.handleLinkDown(0, 'Bluetooth subscription given up');
      } else if (created !== undefined && !answered) {
        // connected=true raced with our abort or deadline: the link exists, so close it and free its slot.
        if (gaveUp) created.release();
        else await created.disconnect({ timeout: cleanupTimeout }).catch(() => {});
      } else if (sent && !answered && !host.api.isClosed) {
        // Timed out or aborted after the request went out: cancel the attempt (and, on a timeout, wait for the slot).
        if (gaveUp) this.releaseSlotNow(address);
        else await this.releaseSlot(address, cleanupTimeout);
      }
      if (!host.subscriberConfirmed && error instanceof Error && error.name === 'TimeoutError') {
        throw new NotSubscriberError(host.label);
      }
      throw error;
    }
  }

  /** Settles the attempt to the report's address, if one waits (true), creating its link on connected=true. */
  answer(message: BluetoothDeviceConnectionResponse): boolean {
    const pending = this.#pending.get(message.address);
    if (pending === undefined) return false;
    this.#pending.delete(message.address);
    if (message.connected) this.#host.links.set(message.address, pending.createLink(message));
    pending.resolve(message);
    return true;
  }

  /** Rejects every attempt in flight: its answer will not come to this session. */
  failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }

  /** Sends DISCONNECT for `address` and waits (bounded) until a slot report no longer lists it; best effort. */
  async releaseSlot(address: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const host = this.#host;
    try {
      await withDeadline(`Slot release of ${formatMac(address)}`, { timeout: timeoutMs, signal }, undefined, async (s) => {
        await host.api.request(
          BluetoothDeviceRequest,
          { address, requestType: BluetoothDeviceRequestType.DISCONNECT },
          BluetoothDeviceConnectionResponse,
          (m) => m.address === address && !m.connected,
          { signal: s },
        );
        host.slots.markReleasing(address);
        await host.slots.released(address, s);
      });
    } catch {
      // Best effort: the proxy may be gone, in which case it dropped the slot itself.
    }
  }

  /** Sends DISCONNECT for `address` without waiting for the answer; the slot's release is tracked as for any ended link. */
  releaseSlotNow(address: number): void {
    try {
      this.#host.api.send(BluetoothDeviceRequest, { address, requestType: BluetoothDeviceRequestType.DISCONNECT });
    } catch {
      return; // session gone: the proxy drops the slot itself
    }
    this.#host.slots.markReleasing(address);
  }

  #forget(address: number, pending: PendingConnect | undefined): void {
    if (pending !== undefined && this.#pending.get(address) === pending) this.#pending.delete(address);
  }
}

/** The error of a connect the proxy answered with connected=false (error 0 right after the request: no free slot). */
function connectError(
  reply: BluetoothDeviceConnectionResponse,
  mac: string,
  label: string,
  elapsedMs: number | undefined,
  slots: SlotState | undefined,
  address: number,
): BleConnectError {
  const described =
    reply.error === 0
      ? { name: 'NO_FREE_SLOT', description: 'the proxy has no free connection slot' }
      : describeConnectionError(reply.error);
  const failure = connectFailureClass(reply.error, { elapsedMs, slots, address });
  const after = elapsedMs === undefined ? '' : ` after ${Math.round(elapsedMs)} ms`;
  return new BleConnectError(
    `Connecting to ${mac} via ${label} failed${after}: ${described.name} (${reply.error}) — ${described.description}`,
    address,
    reply.error,
    described.name,
    failure,
    { elapsedMs },
  );
}
