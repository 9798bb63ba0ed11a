import type { CallOptions } from '../util/abort.js';
import { withDeadline } from '../util/abort.js';
import { type GattCharacteristic, GattProperty, type GattServices } from './gatt.js';
import { formatHandle } from './gatt-operations.js';
import { BLE_NOTIFY_TIMEOUT_MS } from './timeouts.js';

const CCCD_NOTIFY = Uint8Array.of(0x01, 0x00);
const CCCD_INDICATE = Uint8Array.of(0x02, 0x00);
const CCCD_OFF = Uint8Array.of(0x00, 0x00);

/** The part of BleConnection its notify subscriptions use. */
export interface NotifyLink {
  readonly mac: string;
  readonly isConnected: boolean;
  readonly services: GattServices | undefined;
  writeDescriptor(handle: number, data: Uint8Array, options?: CallOptions): Promise<void>;
}

/** Sends the proxy's notify registration (or its removal) for `handle` and waits for the acknowledgement. */
export type NotifyRegistration = (handle: number, enable: boolean, options: CallOptions) => Promise<unknown>;

/**
 * The notify subscriptions of one link: per handle, the listeners, the proxy's registration and the CCCD we write
 * ourselves (proxies never write it on v3 connections). The first listener of a handle enables, the last disables.
 */
export class NotifySubscriptions {
  readonly #host: NotifyLink;
  readonly #register: NotifyRegistration;
  readonly #listeners = new Map<number, Set<(data: Uint8Array) => void>>();

  constructor(link: NotifyLink, register: NotifyRegistration) {
    this.#host = link;
    this.#register = register;
  }

  /** Adds `listener` to `handle` (enabling it on the proxy and the peripheral first); returns the unsubscribe function. */
  async start(
    characteristic: GattCharacteristic | undefined,
    handle: number,
    listener: (data: Uint8Array) => void,
    options: CallOptions,
  ): Promise<() => Promise<void>> {
    const host = this.#host;
    let listeners = this.#listeners.get(handle);
    if (listeners !== undefined) {
      listeners.add(listener);
      return () => this.#remove(handle, listener);
    }
    listeners = new Set([listener]);
    this.#listeners.set(handle, listeners);
    try {
      await withDeadline(
        `Notify subscribe on handle ${formatHandle(handle)} of ${host.mac}`,
        options,
        BLE_NOTIFY_TIMEOUT_MS,
        async (signal) => {
          await this.#register(handle, true, { signal });
          const cccd = characteristic === undefined ? undefined : host.services?.cccd(characteristic);
          if (cccd !== undefined && characteristic !== undefined) {
            const useIndicate =
              (characteristic.properties & GattProperty.notify) === 0 && (characteristic.properties & GattProperty.indicate) !== 0;
            try {
              await host.writeDescriptor(cccd.handle, useIndicate ? CCCD_INDICATE : CCCD_NOTIFY, { signal });
            } catch (error) {
              // Roll back the proxy registration so no half-enabled subscription is left behind.
              await this.#register(handle, false, {}).catch(() => {});
              throw error;
            }
          }
        },
      );
    } catch (error) {
      this.#listeners.delete(handle);
      throw error;
    }
    return () => this.#remove(handle, listener);
  }

  /** A notification or indication for `handle`. */
  deliver(handle: number, data: Uint8Array): void {
    const listeners = this.#listeners.get(handle);
    if (listeners !== undefined) for (const listener of listeners) listener(data);
  }

  /** The link ended: nothing is subscribed any more. */
  clear(): void {
    this.#listeners.clear();
  }

  async #remove(handle: number, listener: (data: Uint8Array) => void): Promise<void> {
    const host = this.#host;
    const listeners = this.#listeners.get(handle);
    if (listeners === undefined || !listeners.delete(listener) || listeners.size > 0) return;
    this.#listeners.delete(handle);
    if (!host.isConnected) return;
    await this.#register(handle, false, {});
    const characteristic = host.services?.find(handle);
    const cccd = characteristic === undefined ? undefined : host.services?.cccd(characteristic);
    if (cccd !== undefined && host.isConnected) await host.writeDescriptor(cccd.handle, CCCD_OFF);
  }
}
