// `esphome-ble/noble`: noble's bindings interface over ESPHome Bluetooth proxies. Needs the optional peer @stoprocent/noble
// only for createNoble(); createNobleBindings() works with any noble that takes a bindings object.

export { createNoble, installNobleBindings } from './create-noble.js';
export {
  emptyNobleAdvertisement,
  foldAdStructures,
  type NobleAdvertisement,
  type NobleServiceData,
} from './noble-advertisement.js';
export {
  createNobleBindings,
  type NobleAdapterState,
  NobleBindings,
  type NobleBindingsOptions,
  type NobleBindingsSource,
} from './noble-bindings.js';
export { nobleAddress, nobleId, toNobleUuid } from './noble-format.js';
