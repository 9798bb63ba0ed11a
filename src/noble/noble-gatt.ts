import type { GattCharacteristic, GattDescriptor, GattService, GattServices } from '../bluetooth/gatt.js';
import { CharacteristicNotFoundError } from '../errors.js';
import { fromNobleUuid, toNobleUuid } from './noble-format.js';

/** noble's characteristic property names, in the order its HCI GATT layer lists them (bit 0x01 … 0x80). */
const PROPERTY_NAMES = [
  'broadcast',
  'read',
  'writeWithoutResponse',
  'write',
  'notify',
  'indicate',
  'authenticatedSignedWrites',
  'extendedProperties',
] as const;

/** A service as noble's `servicesDiscovered` event lists it. */
export interface NobleServiceEntry {
  uuid: string;
  startHandle: number;
  endHandle: number;
}

/** A characteristic as noble's `characteristicsDiscovered` event lists it (the HCI layer's internal record). */
export interface NobleCharacteristicEntry {
  uuid: string;
  startHandle: number;
  properties: number;
  valueHandle: number;
  endHandle: number;
  propsDecoded: string[];
  rawProps: number;
}

/** noble's property names of a property mask. */
export function nobleProperties(mask: number): string[] {
  return PROPERTY_NAMES.filter((_, bit) => (mask & (1 << bit)) !== 0);
}

/** One link's service table addressed the way noble addresses it: by service, characteristic and descriptor UUID in noble's text. */
export class NobleGattTable {
  readonly #services: GattServices;
  readonly #device: string;
  readonly #entries: NobleServiceEntry[];
  readonly #byUuid = new Map<string, { service: GattService; entry: NobleServiceEntry }>();

  constructor(services: GattServices, device: string) {
    this.#services = services;
    this.#device = device;
    const sorted = [...services.services].sort((a, b) => a.handle - b.handle);
    this.#entries = sorted.map((service, i) => ({
      uuid: toNobleUuid(service.uuid),
      startHandle: service.handle,
      endHandle: (sorted[i + 1]?.handle ?? 0x10000) - 1,
    }));
    sorted.forEach((service, i) => {
      const entry = this.#entries[i]!;
      // Like noble, which keys services by UUID, a second service with the same UUID is not addressable.
      if (!this.#byUuid.has(entry.uuid)) this.#byUuid.set(entry.uuid, { service, entry });
    });
  }

  /** Every service, in handle order. */
  services(): NobleServiceEntry[] {
    return this.#entries.map((e) => ({ ...e }));
  }

  /** The service's characteristics as noble's HCI layer records them, in handle order. */
  characteristicEntries(serviceUuid: string): NobleCharacteristicEntry[] {
    const { service, entry } = this.#service(serviceUuid);
    const sorted = [...service.characteristics].sort((a, b) => a.handle - b.handle);
    return sorted.map((c, i) => {
      const next = sorted[i + 1];
      const names = nobleProperties(c.properties);
      return {
        uuid: toNobleUuid(c.uuid),
        startHandle: c.handle - 1,
        properties: c.properties,
        valueHandle: c.handle,
        endHandle: next === undefined ? entry.endHandle : next.handle - 2,
        propsDecoded: names,
        rawProps: c.properties,
      };
    });
  }

  /** The characteristic `characteristicUuid` of service `serviceUuid`; throws CharacteristicNotFoundError. */
  characteristic(serviceUuid: string, characteristicUuid: string): GattCharacteristic {
    const { service } = this.#service(serviceUuid);
    const wanted = canonical(characteristicUuid);
    const found = service.characteristics.find((c) => c.uuid === wanted);
    if (found === undefined) throw new CharacteristicNotFoundError(this.#device, `${characteristicUuid} in service ${serviceUuid}`);
    return found;
  }

  /** A descriptor of a characteristic by UUID; throws CharacteristicNotFoundError. */
  descriptor(serviceUuid: string, characteristicUuid: string, descriptorUuid: string): GattDescriptor {
    const characteristic = this.characteristic(serviceUuid, characteristicUuid);
    const wanted = canonical(descriptorUuid);
    const found = characteristic.descriptors.find((d) => d.uuid === wanted);
    if (found === undefined) {
      throw new CharacteristicNotFoundError(
        this.#device,
        `descriptor ${descriptorUuid} of ${characteristicUuid} in service ${serviceUuid}`,
      );
    }
    return found;
  }

  /** The descriptor at `handle` and the characteristic owning it, if `handle` is a descriptor's. */
  descriptorAt(handle: number): { descriptor: GattDescriptor; characteristic: GattCharacteristic } | undefined {
    return this.#services.descriptor(handle);
  }

  #service(serviceUuid: string): { service: GattService; entry: NobleServiceEntry } {
    const found = this.#byUuid.get(toNobleUuid(canonical(serviceUuid)));
    if (found === undefined) throw new CharacteristicNotFoundError(this.#device, `service ${serviceUuid}`);
    return found;
  }
}

/** Our canonical UUID for noble's text; a malformed one matches nothing. */
function canonical(uuid: string): string {
  try {
    return fromNobleUuid(uuid);
  } catch {
    return uuid;
  }
}
