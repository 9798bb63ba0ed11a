// Building blocks for tests, the CLI and tools: stable enough to use, not part of the semver promise.

export { decodeRawAdvertisements } from './bluetooth/raw-advertisements.js';
export {
  type AdvertisementFormat,
  FIRMWARE_GENERATIONS,
  type FirmwareGeneration,
  type FirmwareProfile,
  firmwareProfile,
  type SubscriptionPolicy,
} from './fixture-server/firmware.js';
export {
  leakedSlots,
  nodeListeningInfo,
  SimulatedFleet,
  type SimulatedNode,
  type SimulatedNodeOptions,
  startSimulatedProxy,
} from './fixture-server/fleet.js';
export { MdnsAdvertiser, simulatedProxyTxt } from './fixture-server/mdns-advertiser.js';
export { ReplayPlugin } from './fixture-server/replay.js';
export { type ConnectBehaviour, SimulatedProxy, type SimulatedProxyOptions } from './fixture-server/simulated-proxy.js';
export { formatTranscript, loadTranscript, parseTranscript, type Transcript, type TranscriptEntry } from './fixture-server/transcript.js';
export { decodeById, decodeMessage, encodeMessage, MessageDispatcher, type MessageHandler } from './frame/dispatch.js';
export { allMessageInfos, messageInfoById, messageInfoByName } from './frame/message-types.js';
export { encodePlaintextFrame, PlaintextFrameDecoder } from './frame/plaintext.js';
export * from './index.js';
export {
  ApiServer,
  type ApiServerOptions,
  ApiSession,
  CLOSE_GRACE_MS,
  DEFAULT_MAX_CONNECTIONS,
  SESSION_DIAGNOSTICS_CHANNEL,
  type SessionPlugin,
} from './server/api-server.js';
export { assertListenerAllowed, isLoopbackHost, type ListenerExposure } from './server/listener-policy.js';
export type { ApiServerEvent } from './server/server-events.js';
export { formatDuration, parseDuration } from './util/duration.js';
export { redactSecrets, resolveSecret, type SecretSources } from './util/secrets.js';
