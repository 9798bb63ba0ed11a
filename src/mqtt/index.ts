// `esphome-ble/mqtt`: the MQTT gateway, a subpath of its own so that the main entry does not load MQTT.js and aedes
// (about 250 ms of module loading on this project's VM) for users who never touch MQTT.

export { type BtAdvertisementJson, estimateDistance } from './ad-payload.js';
export type { ThrottleOptions } from './ad-throttle.js';
export type { BrokerOptions } from './broker-connection.js';
export { COMMAND_DEFAULTS, type CommandPolicyOptions } from './command-policy.js';
export type { CommandEvent } from './command-runner.js';
export type { GattCommand, ValueType } from './commands.js';
export { EMBEDDED_BROKER_DEFAULTS, EmbeddedBroker, type EmbeddedBrokerOptions } from './embedded-broker.js';
export { type GatewayConfig, loadGatewayConfig, parseGatewayConfig } from './gateway-config.js';
export { type AdvertisementPublishOptions, MqttGateway, type MqttGatewayOptions } from './mqtt-gateway.js';
export type { MqttGatewayStats, MqttGatewayStatus } from './mqtt-status.js';
export { type GatewayTopics, gatewayTopics } from './topics.js';
