import type { ApiSession } from '../server/api-server.js';
import { DEFAULT_BACKLOG_LIMITS } from '../server/session-backlog.js';
import type { RelayClientIdentity, RelayPermissions } from './client-policy.js';
import type { GuardedClient } from './request-guard.js';
import { LOCAL, RELEASING, type SlotHolder } from './slot-ledger.js';

/**
 * Reason reported for a client's links when the upstream proxy went away, or stopped serving the relay as its
 * Bluetooth subscriber (ESP_GATT_CONN_TERMINATE_LOCAL_HOST: the proxy side ended the link).
 */
export const UPSTREAM_LOST_REASON = 0x16;
/**
 * A subscriber with more than this queued on its socket gets no advertisements until it has caught up, as the
 * firmware drops advertisements for a client whose send buffer is full; nothing else is dropped (the session's
 * backlog bounds, `DEFAULT_BACKLOG_LIMITS`, stop reading and then close a client that reads nothing at all).
 */
export const CLIENT_AD_BACKLOG_LIMIT_BYTES = DEFAULT_BACKLOG_LIMITS.dropAt;

/** Clients below API 1.12 get GATT UUIDs as two words, never `short_uuid` (spec §6.8). */
const COMPACT_UUID_MIN_MINOR = 12;

/** One downstream API client of the relay: its session, who it is for quotas and policy, and what it subscribed to. */
export class DownstreamClient implements GuardedClient {
  readonly id: number;
  readonly session: ApiSession;
  readonly plaintext: boolean;
  readonly remote: string;
  /** Who the client is for its quota and policy: its remote IP address (every session from it shares the quota). */
  readonly identity: string;
  /** Its configured slot quota (undefined: the default, which follows the proxy's limit). */
  readonly quota: number | undefined;
  readonly permissions: RelayPermissions;
  subscribed = false;
  legacy = false;
  /** Asked for the slots (80) before subscribing: it got the proxy's counts, and gets its own view once it subscribes. */
  askedSlotsUnsubscribed = false;
  reported = false;
  /** The frame the session just handled sent something upstream (only such a client is held while the upstream is behind). */
  sentUpstream = false;
  /** Advertisements dropped for the client at the last stats tick. */
  droppedAtTick = 0;

  constructor(id: number, session: ApiSession, identity: RelayClientIdentity, quota: number | undefined, permissions: RelayPermissions) {
    this.id = id;
    this.session = session;
    this.plaintext = session.server.psk === undefined;
    this.remote = session.remote;
    this.identity = identity.address;
    this.quota = quota;
    this.permissions = permissions;
  }

  /** Advertisements not sent because the client's socket was backed up. */
  get droppedAdvertisements(): number {
    return this.session.droppedAdvertisements;
  }

  /** True while the client's socket holds more than it may queue for advertisements; counts `reports` as dropped then. */
  backedUp(reports: number): boolean {
    return this.session.shed(reports);
  }

  /** True for clients below API 1.12, which expect 128-bit UUID words in service lists. */
  get wantsFullUuids(): boolean {
    const { major, minor } = this.session.clientApiVersion;
    return major <= 1 && minor < COMPACT_UUID_MIN_MINOR;
  }
}

/** How a slot's holder is shown in `slots` events. */
export function holderLabel(holder: SlotHolder): string {
  if (holder === LOCAL) return 'local';
  if (holder === RELEASING) return 'releasing';
  return holder instanceof DownstreamClient ? `client ${holder.id}` : 'unknown';
}
