import { formatMac } from '../bluetooth/address.js';
import type { BleConnection } from '../bluetooth/ble-connection.js';
import { GattServices } from '../bluetooth/gatt.js';
import { BLE_CONNECT_TIMEOUT_MS } from '../bluetooth/timeouts.js';
import type { GattCache } from '../cache/gatt-cache.js';
import { type AttemptRecord, ConnectFailedError, EspApiError, NoProxyAvailableError, type RouteDecision } from '../errors.js';
import { abortPromise, type CallOptions, sleep } from '../util/abort.js';
import type { GhostLinkGuard } from './ghost-links.js';
import type { EstablishOptions } from './pool-options.js';
import type { PooledConnection } from './pooled-connection.js';
import type { ProxyMember } from './proxy-member.js';
import type { ProxyPicker } from './proxy-picker.js';
import { type AttemptFailure, backsOffProxy, classifyAttemptError, type FailurePolicy, finalError } from './retry-policy.js';
import type { PoolRouter, ResolvedRoute } from './routing.js';

/** bleak-retry-connector's default number of attempts. */
export const DEFAULT_MAX_ATTEMPTS = 4;

/** What the connector uses of its pool: routing, the picker, the caches, and the pool's own links. */
export interface ConnectorHost {
  readonly router: PoolRouter;
  readonly picker: ProxyPicker;
  readonly cache: GattCache;
  readonly ghosts: GhostLinkGuard | undefined;
  /** Connects in flight per device address (the orphan reaper leaves their slots alone). */
  readonly pending: Map<number, number>;
  /** The pool's open link to `address`, if any. */
  linkTo(address: number): PooledConnection | undefined;
  /** Forgets the device's services here and, best effort, in the proxy's cache. */
  clearCacheFor(proxy: ProxyMember, address: number, options?: CallOptions): Promise<void>;
  /** Hands the proxy's free slots to connects waiting in the fair queue. */
  offerSlots(proxy: ProxyMember): void;
  /** Makes a connected link one of the pool's (events, cache, bond), as the pool's connection. */
  adopt(
    link: BleConnection,
    services: GattServices,
    proxy: ProxyMember,
    timeline: AttemptRecord[],
    options: EstablishOptions,
  ): PooledConnection;
}

/**
 * The attempts of one establishConnection: each goes through the proxy the picker chooses, with the GATT cache,
 * the failure table's backoff and failover, and the pool's ghost-link healing first; the last error, typed, when
 * every attempt failed.
 */
export class PoolConnector {
  readonly #host: ConnectorHost;

  constructor(host: ConnectorHost) {
    this.#host = host;
  }

  /** Connects to `address` within `signal` (the pool's deadline and close included); see ProxyPool.establishConnection. */
  async establish(address: number, label: string, options: EstablishOptions, signal: AbortSignal): Promise<PooledConnection> {
    const maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
    const useCache = options.useServicesCache ?? true;
    // A call's own require/exclude naming no proxy of a fully known pool fails here, at once.
    let route = this.#host.router.resolve(address, options);
    const timeline: AttemptRecord[] = [];
    let lastError: unknown;
    let lastFailure: AttemptFailure = 'notFound';
    let cacheRetried = false;
    await this.#closeStaleLinks(address, signal);
    // A link of ours that a proxy never finished tearing down keeps the device from advertising: free it first.
    let ghostDecisions = await this.#healGhosts(address, signal);
    this.#host.pending.set(address, (this.#host.pending.get(address) ?? 0) + 1);
    try {
      for (let attempt = 1; attempt <= maxAttempts; attempt++) {
        signal.throwIfAborted();
        const started = performance.now();
        const picked = await this.#host.picker.pick(address, label, options, signal, attempt === 1);
        route = picked.route;
        const decisions = [...ghostDecisions, ...picked.decisions];
        ghostDecisions = [];
        const record = (fields: Pick<AttemptRecord, 'proxy' | 'rssi' | 'score' | 'code' | 'reason' | 'failure'>): void => {
          timeline.push({ attempt, ...fields, ms: Math.round(performance.now() - started), route: decisions });
        };
        if (!('proxy' in picked)) {
          lastFailure = picked.failure;
          lastError = picked.error;
          record({
            proxy: undefined,
            rssi: undefined,
            score: undefined,
            code: picked.error.code,
            reason: undefined,
            failure: picked.failure,
          });
          continue;
        }
        const { proxy, ranking } = picked;
        let link: BleConnection | undefined;
        let attemptAt = Date.now();
        try {
          const bluetooth = proxy.bluetooth!;
          attemptAt = Date.now();
          const cached = useCache ? this.#host.cache.get(formatMac(address), proxy.id) : undefined;
          const heard = proxy.heard.get(address);
          link = await bluetooth.connect(address, {
            signal,
            timeout: options.attemptTimeout ?? BLE_CONNECT_TIMEOUT_MS,
            ...(heard ? { addressType: heard.addressType } : {}),
            ...(cached ? { cachedServices: new GattServices(cached.services), cachedMtu: cached.mtu } : {}),
          });
          const services = link.services ?? (await link.getServices({ signal }));
          const missing = (options.requiredCharacteristics ?? []).filter((uuid) => services.find(uuid) === undefined);
          if (missing.length > 0) {
            if (link.usedCache && !cacheRetried) {
              // The seed's pattern: a stale cache hides characteristics; forget it and connect once more without.
              cacheRetried = true;
              await this.#host.clearCacheFor(proxy, address, { signal });
              await link.disconnect({ timeout: 5_000, signal }).catch(() => signal.throwIfAborted());
              attempt--;
              continue;
            }
            await link.disconnect({ timeout: 5_000, signal }).catch(() => signal.throwIfAborted());
            throw new ConnectFailedError(`${label} lacks required characteristics ${missing.join(', ')}`, {
              attempts: attempt,
              advice: 'The device does not offer the characteristics you asked for: check the UUIDs and the device firmware.',
              timeline,
            });
          }
          if (useCache && !link.usedCache) this.#host.cache.set(formatMac(address), proxy.id, services.services, link.mtu);
          if (options.pair) {
            await link.pair({ signal });
            this.#host.cache.setBond(formatMac(address), proxy.id, proxy.identity.bluetoothMac);
          }
          proxy.recordSuccess();
          record({ proxy: proxy.id, rssi: ranking?.rssi, score: ranking?.score, code: undefined, reason: undefined, failure: undefined });
          return this.#host.adopt(link, services, proxy, timeline, options);
        } catch (error) {
          if (error instanceof ConnectFailedError) throw error;
          // A caller who gave up is answered at once: the DISCONNECT goes out, the proxy frees the slot behind us.
          if (signal.aborted) {
            link?.release();
            this.#host.ghosts?.linkEnded(proxy.id, address, attemptAt);
            throw signal.reason;
          }
          if (link?.isConnected) await link.disconnect({ timeout: 5_000, signal }).catch(() => {});
          if (signal.aborted) {
            link?.release();
            throw signal.reason;
          }
          const policy = classifyAttemptError(error);
          proxy.health.recordError(error);
          lastError = error;
          lastFailure = policy.failure;
          // An attempt we cancelled on our deadline may leave the proxy holding the device: watch for a ghost.
          if (policy.failure === 'timeout') this.#host.ghosts?.linkEnded(proxy.id, address, attemptAt);
          if (link?.usedCache) this.#host.cache.delete(formatMac(address), proxy.id);
          this.#applyFailure(proxy, address, policy);
          record({
            proxy: proxy.id,
            rssi: ranking?.rssi,
            score: ranking?.score,
            code: error instanceof EspApiError ? error.code : undefined,
            reason: typeof (error as { reason?: unknown }).reason === 'number' ? (error as { reason: number }).reason : undefined,
            failure: policy.failure,
          });
          // Failover to another proxy is immediate; only a retry through this same proxy waits out the backoff.
          if (
            attempt < maxAttempts &&
            !this.#hasEligible(address, route, proxy) &&
            policy.backoffMs > 0 &&
            !backsOffProxy(policy.failure)
          ) {
            await sleep(policy.backoffMs, signal);
          }
        } finally {
          proxy.unlease(address);
          this.#host.offerSlots(proxy);
        }
      }
    } finally {
      const pending = (this.#host.pending.get(address) ?? 1) - 1;
      if (pending <= 0) this.#host.pending.delete(address);
      else this.#host.pending.set(address, pending);
    }
    // The last attempt found no proxy able to take it (offline, another client's subscription): that is the news.
    if (lastError instanceof NoProxyAvailableError) {
      throw new NoProxyAvailableError(lastError.message, { proxies: lastError.proxies, cause: lastError.cause, timeline });
    }
    throw finalError(label, lastFailure, lastError, timeline, this.#host.router.unusableAmong(route));
  }

  /** Releases the ghost links of a device before connecting to it; returns what was done (since its last connect), for the timeline. */
  async #healGhosts(address: number, signal: AbortSignal): Promise<RouteDecision[]> {
    if (this.#host.ghosts === undefined) return [];
    const { promise, cleanup } = abortPromise(signal);
    try {
      await Promise.race([this.#host.ghosts.heal(address), promise]);
    } finally {
      cleanup();
    }
    return this.#host.ghosts.takeRecent(address);
  }

  #applyFailure(proxy: ProxyMember, address: number, policy: FailurePolicy): void {
    if (policy.pathFailure) proxy.recordFailure();
    if (backsOffProxy(policy.failure)) proxy.backoffUntil.set(address, Date.now() + policy.backoffMs);
  }

  #hasEligible(address: number, route: ResolvedRoute, other: ProxyMember): boolean {
    return this.#host.router.plan(address, formatMac(address), route).ranking.some((r) => r.eligible && r.proxy !== other.id);
  }

  /** bleak-retry-connector's close_stale_connections: drop our links to this device before connecting again. */
  async #closeStaleLinks(address: number, signal: AbortSignal): Promise<void> {
    const existing = this.#host.linkTo(address);
    if (existing === undefined) return;
    await existing.disconnect({ timeout: 5_000, signal }).catch(() => signal.throwIfAborted());
  }
}
