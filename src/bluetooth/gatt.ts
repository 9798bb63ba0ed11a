import { CharacteristicNotFoundError } from '../errors.js';
import type { BluetoothGATTService } from '../gen/api_pb.js';
import { normalizeUuid, uuidFromProto } from './uuid.js';

/** GATT characteristic property bits (Core spec Vol 3 Part G 3.3.1.1). */
export const GattProperty = {
  broadcast: 0x01,
  read: 0x02,
  writeWithoutResponse: 0x04,
  write: 0x08,
  notify: 0x10,
  indicate: 0x20,
  authenticatedSignedWrites: 0x40,
  extendedProperties: 0x80,
} as const;

/** UUID of the Client Characteristic Configuration Descriptor. */
export const CCCD_UUID = '00002902-0000-1000-8000-00805f9b34fb';

/** A GATT descriptor. */
export interface GattDescriptor {
  readonly uuid: string;
  readonly handle: number;
}

/** A GATT characteristic; `handle` is the value handle used for read/write/notify. */
export interface GattCharacteristic {
  readonly uuid: string;
  readonly handle: number;
  readonly properties: number;
  readonly descriptors: readonly GattDescriptor[];
}

/** A primary service. */
export interface GattService {
  readonly uuid: string;
  readonly handle: number;
  readonly characteristics: readonly GattCharacteristic[];
}

/** Names of the property bits set in `properties`. */
export function propertyNames(properties: number): string[] {
  return Object.entries(GattProperty)
    .filter(([, bit]) => (properties & bit) !== 0)
    .map(([name]) => name);
}

/** Converts the proxy's protobuf services (16/32-bit short UUIDs or 128-bit word pairs) to models. */
export function servicesFromProto(services: readonly BluetoothGATTService[]): GattService[] {
  return services.map((service) => ({
    uuid: uuidFromProto(service.uuid, service.shortUuid),
    handle: service.handle,
    characteristics: service.characteristics.map((c) => ({
      uuid: uuidFromProto(c.uuid, c.shortUuid),
      handle: c.handle,
      properties: c.properties,
      descriptors: c.descriptors.map((d) => ({ uuid: uuidFromProto(d.uuid, d.shortUuid), handle: d.handle })),
    })),
  }));
}

/** A peripheral's service table with lookups by UUID or handle. JSON-serialisable via `services`. */
export class GattServices {
  readonly services: readonly GattService[];
  readonly #byHandle = new Map<number, GattCharacteristic>();
  readonly #byUuid = new Map<string, GattCharacteristic>();
  readonly #descriptorByHandle = new Map<number, { descriptor: GattDescriptor; characteristic: GattCharacteristic }>();

  constructor(services: readonly GattService[]) {
    this.services = services;
    for (const service of services) {
      for (const characteristic of service.characteristics) {
        this.#byHandle.set(characteristic.handle, characteristic);
        if (!this.#byUuid.has(characteristic.uuid)) this.#byUuid.set(characteristic.uuid, characteristic);
        for (const descriptor of characteristic.descriptors)
          this.#descriptorByHandle.set(descriptor.handle, { descriptor, characteristic });
      }
    }
  }

  /** Every characteristic, in table order. */
  characteristics(): GattCharacteristic[] {
    return this.services.flatMap((s) => [...s.characteristics]);
  }

  /** The service with this UUID, if any. */
  service(uuid: string): GattService | undefined {
    const wanted = normalizeUuid(uuid);
    return this.services.find((s) => s.uuid === wanted);
  }

  /** Finds a characteristic by value handle or UUID (first match); undefined if absent. */
  find(key: number | string): GattCharacteristic | undefined {
    if (typeof key === 'number') return this.#byHandle.get(key);
    return this.#byUuid.get(normalizeUuid(key));
  }

  /** Like find() but throws CharacteristicNotFoundError naming `device`. */
  get(key: number | string, device: string): GattCharacteristic {
    const found = this.find(key);
    if (found === undefined) throw new CharacteristicNotFoundError(device, typeof key === 'number' ? `handle ${key}` : key);
    return found;
  }

  /** The descriptor with this handle and its characteristic. */
  descriptor(handle: number): { descriptor: GattDescriptor; characteristic: GattCharacteristic } | undefined {
    return this.#descriptorByHandle.get(handle);
  }

  /** The CCCD of a characteristic, if it has one. */
  cccd(characteristic: GattCharacteristic): GattDescriptor | undefined {
    return characteristic.descriptors.find((d) => d.uuid === CCCD_UUID);
  }
}
