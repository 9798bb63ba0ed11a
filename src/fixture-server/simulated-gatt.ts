import type { PartialMessage } from '@protobuf-ts/runtime';
import { BluetoothProxyFeature } from '../bluetooth/features.js';
import { shortUuidOf, uuidToWords } from '../bluetooth/uuid.js';
import {
  BluetoothDeviceClearCacheResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceUnpairingResponse,
  BluetoothGATTErrorResponse,
  BluetoothGATTGetServicesDoneResponse,
  BluetoothGATTGetServicesResponse,
  type BluetoothGATTNotifyRequest,
  BluetoothGATTNotifyResponse,
  type BluetoothGATTReadDescriptorRequest,
  type BluetoothGATTReadRequest,
  BluetoothGATTReadResponse,
  type BluetoothGATTService,
  type BluetoothGATTWriteDescriptorRequest,
  type BluetoothGATTWriteRequest,
  BluetoothGATTWriteResponse,
  BluetoothSetConnectionParamsResponse,
} from '../gen/api_pb.js';
import type { ApiSession } from '../server/api-server.js';
import type { BluetoothAudience } from './bluetooth-audience.js';
import type { FirmwareProfile } from './firmware.js';
import type { SimulatedLinks } from './simulated-links.js';
import type { SimulatedPeripheral } from './simulated-peripheral.js';
import type { TimerSet } from './timer-set.js';

/** Largest GetServices reply the firmware builds before starting the next one. */
const SERVICES_CHUNK_BYTES = 1360;
/** ESPHome's "not connected" error value. */
const NOT_CONNECTED = -1;

/** What one GATT operation of a peripheral returns. */
type GattResult = { data?: Uint8Array; error?: number; ok?: boolean };

/** What the GATT side needs from the proxy it belongs to. */
export interface SimulatedGattOptions {
  readonly links: SimulatedLinks;
  readonly peripherals: readonly SimulatedPeripheral[];
  readonly audience: BluetoothAudience;
  readonly timers: TimerSet;
  readonly firmware: FirmwareProfile | undefined;
  readonly featureFlags: number;
}

/**
 * The GATT side of the simulated proxy: service discovery, reads, writes and notification registration on an
 * established link, connection parameters, pairing, and removing a bond or the service cache, each answered
 * as the firmware answers it (after the peripheral's response delay).
 */
export class SimulatedGatt {
  readonly #options: SimulatedGattOptions;

  constructor(options: SimulatedGattOptions) {
    this.#options = options;
  }

  /** BluetoothGATTGetServicesRequest: the services in chunks the firmware's size, or only "done" after a cached connect. */
  getServices(address: number, session: ApiSession): void {
    const { links, audience } = this.#options;
    const link = links.connected(address);
    if (link?.peripheral === undefined) {
      audience.send(BluetoothGATTErrorResponse, { address, handle: 0, error: NOT_CONNECTED });
      return;
    }
    if (link.servicesSent) return; // the proxy freed its copy: no answer
    link.servicesSent = true;
    if (link.withCache) {
      audience.send(BluetoothGATTGetServicesDoneResponse, { address });
      return;
    }
    // Compact UUIDs need a client and a firmware of API 1.12 or later.
    const atLeast12 = (v: { major: number; minor: number }): boolean => v.major > 1 || v.minor >= 12;
    const compact = atLeast12(session.clientApiVersion) && atLeast12(session.server.apiVersion);
    const services = link.peripheral.services.map((s) => toProtoService(s, compact));
    let chunk: PartialMessage<BluetoothGATTService>[] = [];
    let size = 0;
    for (const service of services) {
      const bytes = service.size;
      if (chunk.length > 0 && size + bytes > SERVICES_CHUNK_BYTES) {
        audience.send(BluetoothGATTGetServicesResponse, { address, services: chunk });
        chunk = [];
        size = 0;
      }
      chunk.push(service.message);
      size += bytes;
    }
    if (chunk.length > 0) audience.send(BluetoothGATTGetServicesResponse, { address, services: chunk });
    audience.send(BluetoothGATTGetServicesDoneResponse, { address });
  }

  /** BluetoothGATTReadRequest. */
  read(m: BluetoothGATTReadRequest): void {
    this.#gatt(m.address, m.handle, (p) => p.read(m.handle), 'read');
  }

  /** BluetoothGATTWriteRequest: answered only when it asks for a response. */
  write(m: BluetoothGATTWriteRequest): void {
    this.#gatt(m.address, m.handle, (p) => p.write(m.handle, m.data, m.response), m.response ? 'write' : 'silent');
  }

  /** BluetoothGATTReadDescriptorRequest. */
  readDescriptor(m: BluetoothGATTReadDescriptorRequest): void {
    this.#gatt(m.address, m.handle, (p) => p.readDescriptor(m.handle), 'read');
  }

  /** BluetoothGATTWriteDescriptorRequest. */
  writeDescriptor(m: BluetoothGATTWriteDescriptorRequest): void {
    this.#gatt(m.address, m.handle, (p) => p.writeDescriptor(m.handle, m.data), 'write');
  }

  /** BluetoothGATTNotifyRequest: (un)registers the handle for notifications. */
  notify(m: BluetoothGATTNotifyRequest): void {
    this.#gatt(m.address, m.handle, (p) => p.registerNotify(m.handle, m.enable), 'notify');
  }

  /** BluetoothSetConnectionParamsRequest: accepted on an established link. */
  setConnectionParams(address: number): void {
    const error = this.#options.links.connected(address) !== undefined ? 0 : NOT_CONNECTED;
    this.#options.audience.send(BluetoothSetConnectionParamsResponse, { address, error });
  }

  /** PAIR: bonds over an established link (firmware without pairing has no handler, and there is no reply without a link). */
  pair(address: number): void {
    const { links, audience, timers, featureFlags } = this.#options;
    if (!(featureFlags & BluetoothProxyFeature.PAIRING)) return;
    const peripheral = links.connected(address)?.peripheral;
    if (peripheral === undefined) return;
    const result = peripheral.pair();
    timers.later(peripheral.responseDelayMs, () =>
      audience.send(BluetoothDevicePairingResponse, { address, paired: result.paired, error: result.error }),
    );
  }

  /** UNPAIR: the firmware deletes the bond (no link needed); since 2023.6 it answers with the pairing message (paired=true: bond removed). */
  unpair(address: number): void {
    const { peripherals, audience, firmware, featureFlags } = this.#options;
    if (!(featureFlags & BluetoothProxyFeature.PAIRING)) return;
    const result = peripherals.find((p) => p.address === address)?.unpair() ?? { success: true, error: 0 };
    if (firmware?.unpairAnswer === 'unpairing') audience.send(BluetoothDeviceUnpairingResponse, { address, ...result });
    else audience.send(BluetoothDevicePairingResponse, { address, paired: result.success, error: result.error });
  }

  /** CLEAR_CACHE: always succeeds where the firmware has it. */
  clearCache(address: number): void {
    if (!(this.#options.featureFlags & BluetoothProxyFeature.CACHE_CLEARING)) return;
    this.#options.audience.send(BluetoothDeviceClearCacheResponse, { address, success: true, error: 0 });
  }

  #gatt(address: number, handle: number, op: (p: SimulatedPeripheral) => GattResult, reply: 'read' | 'write' | 'notify' | 'silent'): void {
    const { links, audience, timers } = this.#options;
    const link = links.connected(address);
    if (link?.peripheral === undefined) {
      audience.send(BluetoothGATTErrorResponse, { address, handle, error: NOT_CONNECTED });
      return;
    }
    const result = op(link.peripheral);
    const send = (): void => {
      if (link.phase !== 'connected') return;
      if (result.error !== undefined && result.error !== 0) {
        if (reply !== 'silent') audience.send(BluetoothGATTErrorResponse, { address, handle, error: result.error });
        return;
      }
      if (reply === 'read') audience.send(BluetoothGATTReadResponse, { address, handle, data: result.data ?? new Uint8Array(0) });
      else if (reply === 'write') audience.send(BluetoothGATTWriteResponse, { address, handle });
      else if (reply === 'notify') audience.send(BluetoothGATTNotifyResponse, { address, handle });
    };
    const delay = link.peripheral.responseDelayMs;
    if (delay > 0) timers.inGroup(link.timers, delay, send);
    else send();
  }
}

/** Builds the protobuf service the way the firmware encodes it for this client's API version. */
function toProtoService(
  service: SimulatedPeripheral['services'][number],
  compact: boolean,
): { message: PartialMessage<BluetoothGATTService>; size: number } {
  const uuidFields = (uuid: string): { uuid: bigint[]; shortUuid: number } => {
    const short = compact ? shortUuidOf(uuid) : undefined;
    return short !== undefined ? { uuid: [], shortUuid: short } : { uuid: [...uuidToWords(uuid)], shortUuid: 0 };
  };
  const message: PartialMessage<BluetoothGATTService> = {
    ...uuidFields(service.uuid),
    handle: service.handle,
    characteristics: service.characteristics.map((c) => ({
      ...uuidFields(c.uuid),
      handle: c.handle,
      properties: c.properties,
      descriptors: c.descriptors.map((d) => ({ ...uuidFields(d.uuid), handle: d.handle })),
    })),
  };
  // Rough wire size: enough to split large tables like the firmware does.
  const size = 24 + service.characteristics.reduce((n, c) => n + 28 + c.descriptors.length * 22, 0);
  return { message, size };
}
