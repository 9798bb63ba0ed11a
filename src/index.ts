// Public API of esphome-ble. Protobuf types are deliberately not exported: models are plain objects.

export { formatMac, parseMac } from './bluetooth/address.js';
export type { Advertisement, AdvertisementData } from './bluetooth/advertisement.js';
export { parseAdvertisementData } from './bluetooth/advertisement.js';
export { BleConnection, type ConnectionParams, type LinkClosed } from './bluetooth/ble-connection.js';
export { BluetoothProxyFeature, featureNames, isAdvertisementOnly } from './bluetooth/features.js';
export {
  CCCD_UUID,
  type GattCharacteristic,
  type GattDescriptor,
  GattProperty,
  type GattService,
  GattServices,
  propertyNames,
} from './bluetooth/gatt.js';
export {
  type AttachOptions,
  type BleConnectOptions,
  BluetoothProxy,
  type BluetoothProxyStatus,
  type ConnectionStateChange,
  type ScannerState,
  type SlotState,
  SUBSCRIPTION_PROBE_ADDRESS,
  type SubscriptionInfo,
  type SubscriptionState,
  type WatchdogOptions,
} from './bluetooth/proxy-client.js';
export { normalizeUuid } from './bluetooth/uuid.js';
export { type BondEntry, GattCache, type GattCacheEntry, type GattCacheOptions } from './cache/gatt-cache.js';
export { ApiConnection, type ConnectionStatus, type ConnectOptions, DEFAULT_API_PORT, type SendGuard } from './connection/connection.js';
export type { DeviceInfo, HelloInfo } from './connection/device-info.js';
export { ReconnectingConnection, type ReconnectOptions, type ReconnectStatus, reconnectDelay } from './connection/reconnect.js';
export { type DiscoveredProxy, type DiscoveryEvent, discoverProxies, MdnsDiscovery, type MdnsOptions } from './discovery/mdns.js';
export { looksLikeBluetoothProxy, type ProxyTxt, parseProxyTxt } from './discovery/txt.js';
export * from './errors.js';
export {
  CONTROLLER_REFUSAL_MAX_MS,
  connectCancelClass,
  type ExitClass,
  exitClassOf,
  FAILURE_TABLE,
  type FailureClass,
  type FailureRule,
  failureRule,
  isPermanentFailure,
} from './failure-table.js';
export { type OrphanSign, type SlotHolding, slotHoldings } from './inspect/orphan-slots.js';
export {
  DEFAULT_WATCH_INTERVAL_MS,
  type InspectTarget,
  inspectProxies,
  type ProxyInspection,
  ProxyInspector,
  type ProxyInspectorOptions,
} from './inspect/proxy-inspector.js';
export {
  type SlotAllocation,
  type SlotInspection,
  SlotInspector,
  type SlotInspectorOptions,
  type SlotReport,
} from './inspect/slot-inspector.js';
export { HOLD_EVIDENCE_MS, SURE_HOLD_MS, type SubscriberVerdict, type SubscriptionHolder } from './inspect/subscriber-verdict.js';
export type { GhostLinkOptions } from './pool/ghost-links.js';
export { PooledConnection } from './pool/pooled-connection.js';
export type { ProxyDiagnostics, ProxyErrorRecord, ProxyState } from './pool/proxy-health.js';
export type { ProxyConfig, SharedProxySession } from './pool/proxy-member.js';
export {
  type EstablishOptions,
  type OrphanSlot,
  type PoolStatus,
  type ProxyDiscoverySource,
  ProxyPool,
  type ProxyPoolOptions,
  type ProxySnapshot,
  type ProxySpec,
} from './pool/proxy-pool.js';
export type { DeviceRoute, RoutePlan } from './pool/routing.js';
export type { ScoreBreakdown } from './pool/scoring.js';
export type { RelayClientIdentity, RelayClientPolicy, RelayClientRule, RelaySlotRule } from './relay/client-policy.js';
export { RELAY_OUT_OF_SLOTS_ERROR, RelayProxy, type RelayUpstreamConfig, UPSTREAM_HOLD_BYTES } from './relay/relay-proxy.js';
export {
  DEFAULT_RELAY_MAX_CLIENTS,
  type RelayListening,
  RelayServer,
  type RelayServerOptions,
  type RelaySnapshot,
} from './relay/relay-server.js';
export type { RelayClientSnapshot, RelayProxySnapshot, RelayStatus, UpstreamState } from './relay/relay-status.js';
export type { SessionDropReason } from './server/server-events.js';
export { type BacklogLimits, DEFAULT_BACKLOG_LIMITS } from './server/session-backlog.js';
export type { CallOptions } from './util/abort.js';
export type { OverflowPolicy, QueueOptions } from './util/async-queue.js';
