// `esphome-ble/matter`: the simulated Matter device and what a matter.js process needs to stay on loopback.
// Loading it loads no matter.js (prepareMatterEnvironment must run before matter.js does); the device and the
// loopback network need the optional peers @matter/main and @matter/nodejs (0.15.6).

export type { LoopbackNetwork, LoopbackNetworkOptions } from './loopback-network.js';
export { MatterDevice, type MatterDeviceInfo, type MatterDeviceOptions } from './matter-device.js';
export { type MatterEnvironmentOptions, prepareMatterEnvironment } from './matter-environment.js';
export type { MatterDeviceEvent } from './matter-ipc.js';
export { assertMatterPeers, MATTER_JS_VERSION, MATTER_UUIDS } from './matter-peers.js';
