import type { GattCharacteristicProfile, GattDescriptorProfile, GattServiceProfile } from './profile.js';

/** Whatever sits at an ATT handle of the simulated database. */
export type GattAttribute =
  | { readonly kind: 'service'; readonly service: GattServiceProfile }
  | { readonly kind: 'declaration'; readonly service: GattServiceProfile; readonly characteristic: GattCharacteristicProfile }
  | { readonly kind: 'characteristic'; readonly service: GattServiceProfile; readonly characteristic: GattCharacteristicProfile }
  | {
      readonly kind: 'descriptor';
      readonly service: GattServiceProfile;
      readonly characteristic: GattCharacteristicProfile;
      readonly descriptor: GattDescriptorProfile;
    };

/** A service table with every handle moved up by `shift`, and each ATT handle mapped to what sits there. */
export function buildGattTable(
  profileServices: readonly GattServiceProfile[],
  shift: number,
): { services: readonly GattServiceProfile[]; attributes: Map<number, GattAttribute> } {
  const services = profileServices.map((service) => ({
    ...service,
    handle: service.handle + shift,
    characteristics: service.characteristics.map((c) => ({
      ...c,
      handle: c.handle + shift,
      descriptors: c.descriptors.map((d) => ({ ...d, handle: d.handle + shift })),
      ...(c.echoTo === undefined ? {} : { echoTo: c.echoTo + shift }),
    })),
  }));
  const attributes = new Map<number, GattAttribute>();
  for (const service of services) {
    attributes.set(service.handle, { kind: 'service', service });
    for (const characteristic of service.characteristics) {
      attributes.set(characteristic.handle - 1, { kind: 'declaration', service, characteristic });
      attributes.set(characteristic.handle, { kind: 'characteristic', service, characteristic });
      for (const descriptor of characteristic.descriptors)
        attributes.set(descriptor.handle, { kind: 'descriptor', service, characteristic, descriptor });
    }
  }
  return { services, attributes };
}

const BASE_UUID_SUFFIX = '-0000-1000-8000-00805f9b34fb';

/** A UUID as ATT sends it: little-endian, 2 bytes when it sits on the Bluetooth base UUID. */
export function uuidBytes(uuid: string): Uint8Array {
  if (uuid.startsWith('0000') && uuid.endsWith(BASE_UUID_SUFFIX)) return Uint8Array.from(Buffer.from(uuid.slice(4, 8), 'hex').reverse());
  return Uint8Array.from(Buffer.from(uuid.replaceAll('-', ''), 'hex').reverse());
}
