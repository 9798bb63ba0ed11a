import type { ResubscribePolicy, WatchdogOptions } from '../bluetooth/subscription-watchdog.js';
import type { ProxyConfig } from '../connection/proxy-session.js';
import type { BackoffOptions, ReconnectOptions } from '../connection/reconnect.js';
import type { BacklogLimits } from '../server/session-backlog.js';
import type { RelayClientIdentity, RelayPermissions } from './client-policy.js';
import type { RelayStatus } from './relay-status.js';

/** How to reach one upstream proxy: the same fields as a pool's proxy (`name` is the expected node name and the id). */
export type RelayUpstreamConfig = ProxyConfig;

/** Options shared by every upstream of a relay. */
export interface RelayProxyOptions {
  listenHost: string;
  listenPort: number;
  /** Base64 Noise key downstream clients must use; absent = plaintext listener. */
  downstreamPsk?: string | undefined;
  clientInfo: string;
  backoff?: BackoffOptions | undefined;
  /** What a permanent upstream failure does (ReconnectOptions.permanentErrors). */
  permanentErrors?: 'stop' | 'retry' | undefined;
  /** A fresh message tap per upstream session (recordings, the CLI's --verbose trace), beside the relay's own. */
  tapFor?: ReconnectOptions['tapFor'];
  connectTimeout?: number | undefined;
  keepaliveInterval?: number | undefined;
  /** How long the ping behind a client's connect may go unanswered before the upstream is taken for dead (default 90 s). */
  connectPingTimeout?: number | undefined;
  /** How long an upstream attach waits for the scanner state that proves the relay is the subscriber. */
  subscriberCheckTimeout?: number | undefined;
  /** The upstream subscription watchdog (on by default); false switches it off. */
  watchdog?: false | WatchdogOptions | undefined;
  /** Resubscribe after the upstream subscription was lost (default backoff 10 s, 30 s, then every 60 s). */
  resubscribe?: ResubscribePolicy | undefined;
  /** Silence after which a client is pinged (it is dropped after 2.5 times this), as the firmware does: 60 s. */
  clientKeepaliveInterval: number;
  /** Clients each listener serves at once; a connection beyond is closed at once, as the firmware does. */
  maxClients: number;
  /** At the limit a newcomer takes the place of the oldest client not authenticated yet (ApiServer's `evictUnauthenticated`). */
  evictUnauthenticated: boolean;
  /** Listen beyond loopback without `downstreamPsk` (refused otherwise). */
  allowPlaintext?: boolean | undefined;
  /** What may wait to be written to one client (bytes; defaults: DEFAULT_BACKLOG_LIMITS). */
  clientBacklog?: Partial<BacklogLimits> | undefined;
  /** Time a client has from accept to a processed HelloRequest (ApiServer's handshake deadline; default 60 s, as the firmware). */
  clientHandshakeTimeout?: number | undefined;
  /** 'auto': flags=0 subscribers get message 67 only when the upstream firmware predates 2025.8; 'flags': always. */
  legacyAdvertisements: 'auto' | 'flags';
  /** Slots the in-process pool may hold; default all but one of the proxy's (at least one). */
  slotsPerClient?: number | undefined;
  /** The configured quota of a client address, over all its sessions (undefined: the default). */
  slotsOf: (client: RelayClientIdentity) => number | undefined;
  /** What each client may do that changes what the others see (the compiled `RelayServerOptions.clientPolicy`). */
  permissionsOf: (client: RelayClientIdentity) => RelayPermissions;
  emit: (status: RelayStatus) => void;
}
