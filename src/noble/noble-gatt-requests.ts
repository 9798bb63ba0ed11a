import { CCCD_UUID, type GattCharacteristic, type GattDescriptor } from '../bluetooth/gatt.js';
import { BleDisconnectedError, type EspApiError, InvalidArgumentError } from '../errors.js';
import { addressOfNobleId, fromNobleUuid, toNobleUuid } from './noble-format.js';
import { asError, type NobleLink } from './noble-links.js';
import type { NobleEmit } from './noble-scan.js';

/** CCCD bits 0 (notifications) and 1 (indications). */
const CCCD_NOTIFY_BITS = 0x0003;
/** Server Characteristic Configuration descriptor, whose bit 0 turns broadcasting on. */
const SCCD_UUID = '00002903-0000-1000-8000-00805f9b34fb';

/**
 * noble's GATT requests on a link: discovery from the link's service table, reads, writes, notifications and
 * pairing, each reported with the event and argument shapes of noble's HCI bindings (errors in the trailing
 * argument noble's other bindings use).
 */
export class NobleGattRequests {
  readonly #emit: NobleEmit;
  readonly #linkOf: (id: string) => NobleLink | undefined;

  constructor(emit: NobleEmit, linkOf: (id: string) => NobleLink | undefined) {
    this.#emit = emit;
    this.#linkOf = linkOf;
  }

  /** Reports `servicesDiscovered` (every service with its handle range) and `servicesDiscover` (the UUIDs asked for). */
  discoverServices(peripheralUuid: string, uuids?: readonly string[] | null): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.table.services(),
      (id, services, error) => {
        if (error !== undefined) {
          this.#emit('servicesDiscover', id, [], error);
          return;
        }
        const wanted = new Set((uuids ?? []).map(asNobleUuid));
        const selected: string[] = [];
        for (const s of services ?? []) if ((wanted.size === 0 || wanted.has(s.uuid)) && !selected.includes(s.uuid)) selected.push(s.uuid);
        this.#emit('servicesDiscovered', id, services ?? []);
        this.#emit('servicesDiscover', id, selected);
      },
    );
  }

  /** ESPHome proxies do not report included services: always an empty list, as noble's D-Bus bindings do. */
  discoverIncludedServices(peripheralUuid: string, serviceUuid: string): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.table.characteristicEntries(serviceUuid),
      (id, _entries, error) => this.#emit('includedServicesDiscover', id, serviceUuid, [], ...(error ? [error] : [])),
    );
  }

  /** Reports `characteristicsDiscovered` (records with handles) and `characteristicsDiscover` ({uuid, properties} asked for). */
  discoverCharacteristics(peripheralUuid: string, serviceUuid: string, characteristicUuids?: readonly string[] | null): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const entries = link.table.characteristicEntries(serviceUuid);
        // noble's HCI layer records every characteristic of the service, also those the filter leaves out.
        for (const e of entries) link.known.set(e.valueHandle, { serviceUuid, characteristicUuid: e.uuid });
        return entries;
      },
      (id, entries, error) => {
        if (error !== undefined) {
          this.#emit('characteristicsDiscover', id, serviceUuid, [], error);
          return;
        }
        const wanted = new Set((characteristicUuids ?? []).map(asNobleUuid));
        const selected = (entries ?? [])
          .filter((e) => wanted.size === 0 || wanted.has(e.uuid))
          .map((e) => ({ properties: [...e.propsDecoded], uuid: e.uuid }));
        this.#emit('characteristicsDiscovered', id, serviceUuid, entries ?? []);
        this.#emit('characteristicsDiscover', id, serviceUuid, selected);
      },
    );
  }

  /** Reads a characteristic: `read` (id, service, characteristic, data, false[, error]). */
  read(peripheralUuid: string, serviceUuid: string, characteristicUuid: string): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.connection.read(link.table.characteristic(serviceUuid, characteristicUuid).handle),
      (id, data, error) => this.#emit('read', id, serviceUuid, characteristicUuid, toBuffer(data), false, ...(error ? [error] : [])),
    );
  }

  /** Writes a characteristic, with or without response: `write` (id, service, characteristic[, error]). */
  write(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, data: Uint8Array, withoutResponse?: boolean): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const handle = link.table.characteristic(serviceUuid, characteristicUuid).handle;
        await link.connection.write(handle, bytesOf(data), { withResponse: withoutResponse !== true });
      },
      (id, _none, error) => this.#emit('write', id, serviceUuid, characteristicUuid, ...(error ? [error] : [])),
    );
  }

  /** Sets or clears the broadcast bit of the Server Characteristic Configuration descriptor, as noble's HCI layer does. */
  broadcast(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, broadcast: boolean): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const descriptor = link.table.descriptor(serviceUuid, characteristicUuid, SCCD_UUID);
        const current = await link.connection.readDescriptor(descriptor.handle);
        const value = (((current[0] ?? 0) | ((current[1] ?? 0) << 8)) & 0xfffe) | (broadcast ? 1 : 0);
        await link.connection.writeDescriptor(descriptor.handle, Uint8Array.of(value & 0xff, value >> 8));
      },
      (id, _none, error) => this.#emit('broadcast', id, serviceUuid, characteristicUuid, error ?? broadcast),
    );
  }

  /** Turns notifications (or indications) on or off: `notify` (id, service, characteristic, state[, error]). */
  notify(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, notify: boolean): void {
    let state = false;
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const characteristic = link.table.characteristic(serviceUuid, characteristicUuid);
        link.known.set(characteristic.handle, { serviceUuid, characteristicUuid });
        if (notify) await this.#subscribe(link, characteristic);
        else await this.#unsubscribe(link, characteristic.handle);
        state = link.subscriptions.has(characteristic.handle);
      },
      (id, _none, failure) => {
        // An unsubscribe whose link is gone, before it ran or while it did, has what it asked for: no
        // subscription is left (the proxy drops a link's registrations with it). noble's HCI layer never
        // fails one either; reporting it made commissioners that unsubscribe before they disconnect log errors.
        const error = !notify && failure !== undefined && linkGone(failure) ? undefined : failure;
        this.#emit('notify', id, serviceUuid, characteristicUuid, error ? state : notify, ...(error ? [error] : []));
      },
    );
  }

  /** Reports `descriptorsDiscover` (id, service, characteristic, descriptor UUIDs). */
  discoverDescriptors(peripheralUuid: string, serviceUuid: string, characteristicUuid: string): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.table.characteristic(serviceUuid, characteristicUuid).descriptors.map((d) => toNobleUuid(d.uuid)),
      (id, uuids, error) => this.#emit('descriptorsDiscover', id, serviceUuid, characteristicUuid, uuids ?? [], ...(error ? [error] : [])),
    );
  }

  /** Reads a descriptor: `valueRead` (id, service, characteristic, descriptor, data[, error]). */
  readValue(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.connection.readDescriptor(link.table.descriptor(serviceUuid, characteristicUuid, descriptorUuid).handle),
      (id, data, error) =>
        this.#emit('valueRead', id, serviceUuid, characteristicUuid, descriptorUuid, toBuffer(data), ...(error ? [error] : [])),
    );
  }

  /** Writes a descriptor: `valueWrite` (id, service, characteristic, descriptor[, error]); a CCCD also (un)registers the handle. */
  writeValue(peripheralUuid: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string, data: Uint8Array): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const descriptor = link.table.descriptor(serviceUuid, characteristicUuid, descriptorUuid);
        const characteristic = link.table.characteristic(serviceUuid, characteristicUuid);
        link.known.set(characteristic.handle, { serviceUuid, characteristicUuid });
        await this.#writeDescriptor(link, characteristic, descriptor, bytesOf(data));
      },
      (id, _none, error) => this.#emit('valueWrite', id, serviceUuid, characteristicUuid, descriptorUuid, ...(error ? [error] : [])),
    );
  }

  /** Reads an attribute by handle (characteristic value or descriptor): `handleRead` (id, handle, data[, error]). */
  readHandle(peripheralUuid: string, handle: number): void {
    this.#gatt(
      peripheralUuid,
      async (link) =>
        link.table.descriptorAt(handle) !== undefined ? link.connection.readDescriptor(handle) : link.connection.read(handle),
      (id, data, error) => this.#emit('handleRead', id, handle, toBuffer(data), ...(error ? [error] : [])),
    );
  }

  /** Writes an attribute by handle: `handleWrite` (id, handle[, error]); a CCCD turns notifications on or off as in writeValue(). */
  writeHandle(peripheralUuid: string, handle: number, data: Uint8Array, withoutResponse?: boolean): void {
    this.#gatt(
      peripheralUuid,
      async (link) => {
        const bytes = bytesOf(data);
        const at = link.table.descriptorAt(handle);
        if (at !== undefined) await this.#writeDescriptor(link, at.characteristic, at.descriptor, bytes);
        else await link.connection.write(handle, bytes, { withResponse: withoutResponse !== true });
      },
      (id, _none, error) => this.#emit('handleWrite', id, handle, ...(error ? [error] : [])),
    );
  }

  /** Pairs (bonds) through the proxy with its IO capability: `pair` (id, paired[, error]). */
  pair(peripheralUuid: string): void {
    this.#gatt(
      peripheralUuid,
      async (link) => link.connection.pair(),
      (id, _none, error) => this.#emit('pair', id, error === undefined, ...(error ? [error] : [])),
    );
  }

  /**
   * Writes a descriptor. A 2-byte CCCD value also registers (any notify/indicate bit) or unregisters its
   * characteristic with the proxy first: ESPHome forwards notifications only for registered handles (§6.11),
   * while noble's HCI layer receives them once the CCCD is set.
   */
  async #writeDescriptor(
    link: NobleLink,
    characteristic: GattCharacteristic,
    descriptor: GattDescriptor,
    bytes: Uint8Array,
  ): Promise<void> {
    if (descriptor.uuid === CCCD_UUID && bytes.length === 2) {
      if ((bytes[0]! & CCCD_NOTIFY_BITS) !== 0) await this.#subscribe(link, characteristic);
      else await this.#unsubscribe(link, characteristic.handle);
    }
    await link.connection.writeDescriptor(descriptor.handle, bytes);
  }

  /** Registers notifications of `c` with the proxy (which also writes its CCCD); data arrives as noble's HCI layer reports it. */
  async #subscribe(link: NobleLink, c: GattCharacteristic): Promise<void> {
    if (link.subscriptions.has(c.handle)) return;
    const stop = await link.connection.startNotify(c.handle, (data) => {
      const buffer = Buffer.from(data);
      // noble's HCI layer gets each packet in its own I/O callback, so a write's callback (and what its caller does
      // next) has run before a notification that followed the write response. Here both can come in one TCP read,
      // and the write's outcome reaches noble through promise callbacks: without a turn of the event loop the
      // notification would overtake it (node-switchbot then misses the answer to its command).
      setImmediate(() => {
        // noble's HCI GATT layer: handleNotify always, then a notification for the characteristic it knows at that handle.
        this.#emit('handleNotify', link.id, c.handle, buffer);
        const known = link.known.get(c.handle);
        if (known !== undefined) this.#emit('read', link.id, known.serviceUuid, known.characteristicUuid, buffer, true);
      });
    });
    link.subscriptions.set(c.handle, stop);
  }

  async #unsubscribe(link: NobleLink, handle: number): Promise<void> {
    const stop = link.subscriptions.get(handle);
    if (stop === undefined) return;
    link.subscriptions.delete(handle);
    await stop();
  }

  /** Runs one GATT request of noble on the peripheral's link and reports its outcome through `report`. */
  #gatt<T>(
    peripheralUuid: string,
    run: (link: NobleLink) => Promise<T>,
    report: (id: string, value: T | undefined, error?: Error) => void,
  ): void {
    const id = String(peripheralUuid);
    const link = this.#linkOf(id);
    const operation =
      link === undefined
        ? Promise.reject(new BleDisconnectedError(`Peripheral ${id} is not connected through these bindings`, addressOrZero(id), 0))
        : run(link);
    void operation.then(
      (value) => report(id, value),
      (error: unknown) => report(id, undefined, asError(error)),
    );
  }
}

/** A UUID a noble user passed, in noble's spelling (noble compares them as strings; we accept any spelling). */
function asNobleUuid(uuid: string): string {
  try {
    return toNobleUuid(fromNobleUuid(uuid));
  } catch {
    return uuid;
  }
}

function addressOrZero(id: string): number {
  try {
    return addressOfNobleId(id);
  } catch {
    return 0;
  }
}

function toBuffer(data: Uint8Array | undefined): Buffer {
  return data === undefined ? Buffer.alloc(0) : Buffer.from(data.buffer, data.byteOffset, data.length);
}

/** The bytes of what noble passes as data (Buffer, Uint8Array, Uint16Array, Uint32Array). */
function bytesOf(data: ArrayBufferView): Uint8Array {
  if (!ArrayBuffer.isView(data)) throw new InvalidArgumentError('data must be a Buffer or a typed array');
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The link (or the proxy session carrying it) ended: what a request on it fails with then. */
function linkGone(error: Error): boolean {
  const code = (error as Partial<EspApiError>).code;
  return code === 'ESPAPI_ERR_BLE_DISCONNECTED' || code === 'ESPAPI_ERR_CONNECTION_CLOSED';
}
