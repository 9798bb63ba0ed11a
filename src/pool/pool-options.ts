import type { LinkClosed } from '../bluetooth/ble-connection.js';
import type { AttachOptions, BluetoothProxyStatus, SlotState } from '../bluetooth/proxy-client.js';
import type { GattCache } from '../cache/gatt-cache.js';
import type { BackoffOptions, ReconnectOptions } from '../connection/reconnect.js';
import type { ProxyCause } from '../errors.js';
import type { CallOptions } from '../util/abort.js';
import type { GhostLinkOptions } from './ghost-links.js';
import type { PooledConnection } from './pooled-connection.js';
import type { ProxyConfig } from './proxy-member.js';
import type { DeviceRoute } from './routing.js';

// The types of ProxyPool's public surface (re-exported by proxy-pool.ts), kept apart from its logic.

/** A proxy as a string `host[:port]` or a full config. */
export type ProxySpec = string | ProxyConfig;

/** A source of proxies found on the network (e.g. MdnsDiscovery). */
export interface ProxyDiscoverySource {
  events(options?: { signal?: AbortSignal }): AsyncIterable<
    | {
        type: 'up' | 'update';
        proxy: {
          name: string;
          addresses: readonly string[];
          port: number;
          txt?: { mac?: string | undefined; encryption?: 'required' | 'supported' | 'none' } | undefined;
        };
      }
    | { type: 'down'; name: string }
  >;
}

/** Options of a ProxyPool. */
export interface ProxyPoolOptions {
  /** Sent in HelloRequest. */
  clientInfo?: string;
  /** Reconnect backoff of the per-proxy sessions. */
  backoff?: BackoffOptions;
  /** Deadline of each API connect attempt. */
  connectTimeout?: number;
  /** GATT cache shared by all connections (default: in-memory LRU). */
  cache?: GattCache;
  /** Proxies found by discovery are added (and reconnected at once when they reappear). */
  discovery?: ProxyDiscoverySource;
  /** Noise keys of discovered proxies by node name or MAC (12 hex digits); `*` goes to every proxy that announces it requires encryption. */
  keys?: Readonly<Record<string, string>>;
  /** A device silent this long is treated as gone (default 2 min). */
  deviceStaleMs?: number;
  /** A message tap per proxy session (the CLI records sessions with it). */
  tapFor?: ReconnectOptions['tapFor'];
  /** How each proxy session subscribes: the subscription watchdog and resubscribe policy (BluetoothProxy.attach). */
  attach?: Pick<AttachOptions, 'subscriberCheckTimeout' | 'requireSubscriber' | 'watchdog' | 'resubscribe'>;
  /** Routes per device MAC (any spelling): pinned proxies with fallback, required or excluded ones (`pool.setRoute`). */
  routes?: Readonly<Record<string, DeviceRoute>>;
  /** The ghost-link guard (on by default): DISCONNECT a link the proxy never finished tearing down; false switches it off. */
  ghostLinks?: false | GhostLinkOptions;
}

/** Options of establishConnection (bleak-retry-connector's, plus ours). */
export interface EstablishOptions extends CallOptions {
  /** Device name for messages. */
  name?: string;
  /** Called once if the link drops after it was established. */
  disconnectedCallback?: (connection: PooledConnection, info: LinkClosed) => void;
  maxAttempts?: number;
  /** Use and fill the GATT cache (v3 connect with cache). Default true. */
  useServicesCache?: boolean;
  /** Characteristics that must exist; if one is missing on a cached connect the cache is cleared and the connect retried once without it. */
  requiredCharacteristics?: readonly string[];
  /**
   * Proxies to try first whenever they can take the connect, in this order (pin with fallback); each field
   * replaces the pool's route for the device (`exclude` adds to it). A proxy is named by its pool id, node name,
   * host, host:port or MAC; a name that matches no proxy is an InvalidArgumentError once every proxy is known.
   */
  prefer?: readonly string[];
  /** Only these proxies. */
  require?: readonly string[];
  /** Never these proxies. */
  exclude?: readonly string[];
  /** Deadline of each BLE connect attempt (default 25 s: above ESPHome's own 20 s connect timeout, so its verdict arrives first). */
  attemptTimeout?: number;
  /** Pair after connecting. */
  pair?: boolean;
  /** Wait for a slot this long per attempt when all proxies are full (default 2 s). */
  slotWait?: number;
  /** Wait this long per attempt for some proxy to hear the device (default 2 s). */
  notFoundWait?: number;
}

/** What the pool reports about one proxy. */
export interface ProxySnapshot {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly online: boolean;
  readonly name: string | undefined;
  readonly esphomeVersion: string | undefined;
  readonly features: number;
  readonly slots: SlotState | undefined;
  /** Allocated addresses that are links of this pool. */
  readonly owned: readonly number[];
  readonly inFlight: number;
  readonly devicesHeard: number;
  readonly scannerMode: string | undefined;
  readonly failureScore: number;
  readonly lastError: string | undefined;
  /** Why the proxy cannot be used, when retrying cannot fix it (wrong key, another device at the address...). */
  readonly problem: ProxyCause | undefined;
}

/** Pool life-cycle events (a union tagged by `type`). */
export type PoolStatus =
  | { type: 'proxyUp'; proxy: string }
  | { type: 'subscription'; proxy: string; status: BluetoothProxyStatus }
  | { type: 'proxyDown'; proxy: string; error: Error | undefined }
  | { type: 'slots'; proxy: string; slots: SlotState }
  | { type: 'deviceSeen'; proxy: string; address: number; mac: string; rssi: number }
  | { type: 'deviceLost'; proxy: string; address: number; mac: string }
  | { type: 'connectionOpened'; proxy: string; address: number; mac: string; attempts: number }
  | { type: 'connectionClosed'; proxy: string; address: number; mac: string; reason: number; reasonName: string };

/** An allocated slot no link of ours accounts for. */
export interface OrphanSlot {
  readonly proxy: string;
  readonly address: number;
  readonly mac: string;
  readonly released: boolean;
}

/** Parses `host`, `host:port` or `[v6]:port`. */
export function parseProxySpec(spec: string): ProxyConfig {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(spec);
  if (v6) return { host: v6[1]!, ...(v6[2] ? { port: Number(v6[2]) } : {}) };
  const parts = spec.split(':');
  if (parts.length === 2 && /^\d+$/.test(parts[1]!)) return { host: parts[0]!, port: Number(parts[1]) };
  if (parts.length > 2) return { host: spec };
  return { host: spec };
}
