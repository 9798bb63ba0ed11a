import type { ErrorCode, SubscriptionLossSign } from '../errors.js';
import type { ProxyDiagnostics } from '../pool/proxy-health.js';
import type { SessionDropReason } from '../server/server-events.js';

/** State of a relay's upstream session to one proxy. */
export type UpstreamState = 'connecting' | 'connected' | 'subscriptionLost' | 'disconnected' | 'stopped';

/** Relay life-cycle events (a union tagged by `type`); `proxy` is the upstream's id (`host:port` or its configured name). */
export type RelayStatus =
  | { type: 'listening'; proxy: string; host: string; port: number; name: string; mac: string; encryption: 'noise' | 'plaintext' }
  | { type: 'upstreamConnecting'; proxy: string; attempt: number }
  | { type: 'upstreamUp'; proxy: string; name: string; esphomeVersion: string }
  | { type: 'upstreamDown'; proxy: string; error: string | undefined; retryInMs: number }
  | { type: 'upstreamStopped'; proxy: string; error: string | undefined }
  | { type: 'upstreamSubscriptionLost'; proxy: string; detectedBy: SubscriptionLossSign; endedLinks: string[] }
  | { type: 'upstreamResubscribing'; proxy: string; attempt: number; delay: number }
  | { type: 'upstreamResubscribeFailed'; proxy: string; attempt: number; code: ErrorCode; error: string }
  | { type: 'upstreamResubscribed'; proxy: string; attempt: number; lostForMs: number }
  | { type: 'clientConnected'; proxy: string; client: number; remote: string; clientInfo: string }
  | { type: 'clientDisconnected'; proxy: string; client: number; releasedSlots: string[] }
  /** A `clientPolicy` predicate threw for a client, which is denied what that rule guards. */
  | { type: 'clientPolicyError'; proxy: string; rule: 'scannerMode' | 'unpair' | 'clearCache'; remote: string; error: string }
  /** A connection beyond the listener's `maxClients`, closed at once as the firmware does. */
  | { type: 'clientRefused'; proxy: string; remote: string; limit: number }
  /**
   * The listener closed a client on its own: its backlog passed the bound, it went silent, broke the protocol, did not
   * say Hello in time, or was evicted for a newcomer (`client` is undefined for one that never said Hello: it was never
   * reported). A `clientDisconnected` follows for clients that were reported (`clientConnected`).
   */
  | { type: 'clientDropped'; proxy: string; client: number | undefined; remote: string; reason: SessionDropReason; message: string }
  /** A client read too slowly and advertisements were dropped for it since the last stats tick (the total so far). */
  | { type: 'clientSlow'; proxy: string; client: number; droppedAdvertisements: number }
  | { type: 'slots'; proxy: string; free: number; limit: number; holders: Record<string, string> }
  /** Once per stats interval per proxy, with the upstream's health in the pool's per-proxy record. */
  | { type: 'stats'; proxy: string; adsPerSecond: number; advertisements: number; clients: number; diagnostics: ProxyDiagnostics };

/** One downstream client as the relay reports it. */
export interface RelayClientSnapshot {
  readonly id: number;
  /** `address:port` of the client's socket, IPv6 in brackets (as in `clientDropped`). */
  readonly remote: string;
  /** The client's HelloRequest text ('' before Hello). */
  readonly clientInfo: string;
  readonly apiVersion: string;
  /** Subscribed to advertisements (the firmware's "Bluetooth API connection"). */
  readonly subscribed: boolean;
  /** Receives the legacy parsed advertisements (message 67). */
  readonly legacyAdvertisements: boolean;
  /** Advertisements not sent because the client read too slowly (its socket was backed up). */
  readonly droppedAdvertisements: number;
  /** MACs of the peripherals this client holds a slot for. */
  readonly slots: readonly string[];
}

/** One upstream proxy and its downstream listener. */
export interface RelayProxySnapshot {
  readonly id: string;
  readonly upstream: {
    readonly host: string;
    readonly port: number;
    readonly state: UpstreamState;
    readonly name: string | undefined;
    readonly esphomeVersion: string | undefined;
    readonly encrypted: boolean;
    readonly lastError: string | undefined;
    /** The pool's per-proxy record for the upstream session: state, slots, subscription, ads/s, last errors with codes. */
    readonly diagnostics: ProxyDiagnostics;
  };
  /** Where downstream clients connect (undefined until the upstream's identity is known). */
  readonly listen: { readonly host: string; readonly port: number; readonly encryption: 'noise' | 'plaintext' } | undefined;
  readonly slots: { readonly free: number; readonly limit: number; readonly local: readonly string[] };
  readonly clients: readonly RelayClientSnapshot[];
  /** Advertisements received from the upstream since the relay started. */
  readonly advertisements: number;
  /** Advertisements per second over the last stats interval. */
  readonly adsPerSecond: number;
}
