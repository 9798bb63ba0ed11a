import { setMaxListeners } from 'node:events';
import { formatMac, parseMac } from '../bluetooth/address.js';
import type { Advertisement } from '../bluetooth/advertisement.js';
import type { BleConnection } from '../bluetooth/ble-connection.js';
import { BluetoothProxyFeature } from '../bluetooth/features.js';
import type { GattServices } from '../bluetooth/gatt.js';
import type { SlotState } from '../bluetooth/proxy-client.js';
import { GattCache } from '../cache/gatt-cache.js';
import { type AttemptRecord, InvalidArgumentError, NoProxyAvailableError, type RouteDecision } from '../errors.js';
import { type CallOptions, withDeadline } from '../util/abort.js';
import { AsyncQueue, endOnAbort, type QueueOptions } from '../util/async-queue.js';
import { PoolConnector } from './connector.js';
import { GhostLinkGuard, proxyGhostHost } from './ghost-links.js';
import { followDiscovery } from './pool-discovery.js';
import {
  type EstablishOptions,
  type OrphanSlot,
  type PoolStatus,
  type ProxyPoolOptions,
  type ProxySnapshot,
  type ProxySpec,
  parseProxySpec,
} from './pool-options.js';
import { PoolWaits } from './pool-waits.js';
import { PooledConnection } from './pooled-connection.js';
import type { ProxyDiagnostics } from './proxy-health.js';
import { type ProxyChange, type ProxyConfig, ProxyMember, type SharedProxySession } from './proxy-member.js';
import { ProxyPicker } from './proxy-picker.js';
import { unusableError } from './retry-policy.js';
import { bondedProxy, type DeviceRoute, PoolRouter, proxyMatches, type RoutePlan } from './routing.js';
import { DEVICE_STALE_MS, rankProxies, type ScoreBreakdown } from './scoring.js';
import { SlotQueue } from './slot-queue.js';

export { DEFAULT_MAX_ATTEMPTS } from './connector.js';
export { NOT_FOUND_WAIT_MS, SLOT_WAIT_MS } from './proxy-picker.js';

/** How often heard-device tables are pruned of devices gone silent. */
const PRUNE_INTERVAL_MS = 30_000;

export type {
  EstablishOptions,
  OrphanSlot,
  PoolStatus,
  ProxyDiscoverySource,
  ProxyPoolOptions,
  ProxySnapshot,
  ProxySpec,
} from './pool-options.js';
export { parseProxySpec } from './pool-options.js';
export type { ProxyConfig } from './proxy-member.js';

/**
 * A fleet of ESPHome Bluetooth proxies used as one radio: tracks each proxy's slots and the devices
 * it hears, and connects to a device through the best proxy with retries and failover.
 */
export class ProxyPool {
  readonly cache: GattCache;
  readonly #options: ProxyPoolOptions;
  readonly #proxies = new Map<string, ProxyMember>();
  readonly #links = new Map<number, { connection: PooledConnection; proxy: ProxyMember }>();
  readonly #pendingAddresses = new Map<number, number>();
  readonly #slotQueue = new SlotQueue();
  readonly #statusQueues = new Set<AsyncQueue<PoolStatus>>();
  readonly #adListeners = new Set<(ad: Advertisement, proxy: string) => void>();
  /** Connects waiting to hear their device or for a proxy to be able to connect. */
  readonly #waits = new PoolWaits();
  /** Aborted by close(): ends discovery and every establishConnection still waiting. */
  readonly #closing = new AbortController();
  readonly #router: PoolRouter;
  readonly #connector: PoolConnector;
  readonly #ghosts: GhostLinkGuard | undefined;
  #pruneTimer: NodeJS.Timeout | undefined;
  #started = false;
  #closed = false;

  constructor(proxies: readonly ProxySpec[] = [], options: ProxyPoolOptions = {}) {
    this.#options = options;
    this.cache = options.cache ?? new GattCache();
    this.#router = new PoolRouter(
      {
        proxies: () => [...this.#proxies.values()],
        discovering: options.discovery !== undefined,
        bondOf: (mac) => bondedProxy([...this.#proxies.values()], this.cache.bondOf(mac)),
        rank: (all, address, route) =>
          rankProxies(all, address, {
            require: route.require,
            exclude: route.exclude,
            prefer: route.prefer,
            staleMs: options.deviceStaleMs,
          }),
      },
      options.routes,
      parseMac,
    );
    this.#ghosts =
      options.ghostLinks === false
        ? undefined
        : new GhostLinkGuard(
            proxyGhostHost(
              (id) => this.#proxies.get(id)?.bluetooth,
              (address) => this.#links.has(address) || this.#pendingAddresses.has(address),
              (id, address) => this.#proxies.get(id)?.heldElsewhere(address) ?? false,
            ),
            options.ghostLinks,
          );
    const ghosts = this.#ghosts;
    this.#connector = new PoolConnector({
      router: this.#router,
      picker: new ProxyPicker({
        router: this.#router,
        waits: this.#waits,
        slotQueue: this.#slotQueue,
        proxy: (id) => this.#proxies.get(id),
      }),
      cache: this.cache,
      ghosts,
      pending: this.#pendingAddresses,
      linkTo: (address) => this.#links.get(address)?.connection,
      clearCacheFor: (proxy, address, options) => this.#clearCacheFor(proxy, address, options),
      offerSlots: (proxy) => this.#offerSlots(proxy),
      adopt: (link, services, proxy, timeline, options) => this.#adopt(link, services, proxy, timeline, options),
    });
    for (const spec of proxies) this.addProxy(spec);
  }

  /** The pool's route for a device: pinned proxies with fallback, required or excluded ones. */
  routeOf(target: string | number): DeviceRoute | undefined {
    return this.#router.routeOf(typeof target === 'number' ? target : parseMac(target));
  }

  /** Sets (or with undefined clears) the pool's route for a device; establishConnection's own options win field by field. */
  setRoute(target: string | number, route: DeviceRoute | undefined): void {
    this.#router.setRoute(typeof target === 'number' ? target : parseMac(target), route);
  }

  /**
   * Where establishConnection would try `target` now and why: the ranking in the order it would be tried (pinned
   * and bonded proxies first, require/exclude applied) and the routing decisions, ghost links included.
   */
  route(target: string | number, selection: DeviceRoute = {}): RoutePlan & { ghosts: RouteDecision[] } {
    const address = typeof target === 'number' ? target : parseMac(target);
    const plan = this.#router.plan(address, formatMac(address), this.#router.resolve(address, selection));
    const ghosts = [...(this.#ghosts?.recent(address) ?? []), ...(this.#ghosts?.pending(address) ?? [])];
    return { ...plan, ghosts };
  }

  /** Adds a proxy (connects at once when the pool is started). Returns its id. */
  addProxy(spec: ProxySpec): string {
    return this.#add(typeof spec === 'string' ? parseProxySpec(spec) : spec);
  }

  /**
   * Uses a proxy session someone else keeps, e.g. one upstream of a RelayServer in this process: no second
   * connection and no loopback hop. The pool never closes it. Returns the proxy's id.
   */
  addSession(shared: SharedProxySession): string {
    return this.#add(shared);
  }

  #add(config: ProxyConfig | SharedProxySession): string {
    const proxy = new ProxyMember(
      config,
      {
        clientInfo: this.#options.clientInfo ?? 'esphome-ble pool',
        ...(this.#options.backoff ? { backoff: this.#options.backoff } : {}),
        ...(this.#options.connectTimeout ? { connectTimeout: this.#options.connectTimeout } : {}),
        ...(this.#options.tapFor ? { tapFor: this.#options.tapFor } : {}),
        ...(this.#options.attach ? { attach: this.#options.attach } : {}),
      },
      (p, what, address) => this.#onProxyChange(p, what, address),
      (p, ad) => this.#onAdvertisement(p, ad),
    );
    if (this.#proxies.has(proxy.id)) {
      void proxy.close();
      throw new InvalidArgumentError(`Proxy ${proxy.id} is already in the pool`);
    }
    this.#proxies.set(proxy.id, proxy);
    if (this.#started) proxy.session.start();
    this.#waits.changed();
    return proxy.id;
  }

  /** Removes a proxy, closing its session. */
  async removeProxy(id: string): Promise<void> {
    const proxy = this.#proxies.get(id);
    if (proxy === undefined) return;
    this.#proxies.delete(id);
    this.#waits.changed();
    await proxy.close();
  }

  /** Connects every proxy session (idempotent; establishConnection calls it too). */
  start(): this {
    if (this.#started || this.#closed) return this;
    this.#started = true;
    for (const proxy of this.#proxies.values()) proxy.session.start();
    this.#pruneTimer = setInterval(() => this.#prune(), PRUNE_INTERVAL_MS);
    const discovery = this.#options.discovery;
    if (discovery !== undefined) {
      void followDiscovery(discovery, this.#closing.signal, this.#options.keys ?? {}, {
        get: (name) => this.#proxies.get(name),
        remove: (name) => this.removeProxy(name),
        add: (config) => this.addProxy(config),
      });
    }
    return this;
  }

  /**
   * Waits until every proxy has connected, or `options.timeout` passes: resolves with every proxy's snapshot (those
   * still offline included). Rejects with the signal's reason when it aborts, and with NoProxyAvailableError naming
   * each proxy's cause when every proxy is unusable for a reason retrying cannot fix (wrong key or password,
   * another node at the address...), since nothing would ever connect.
   */
  async ready(options: CallOptions = {}): Promise<ProxySnapshot[]> {
    this.start();
    // Every proxy's wait listens on the signal: a dependent one of ours, so the caller's gets none however many proxies.
    options.signal?.throwIfAborted();
    const signal = options.signal === undefined ? undefined : AbortSignal.any([options.signal]);
    if (signal !== undefined) setMaxListeners(0, signal);
    await Promise.allSettled([...this.#proxies.values()].map((p) => p.session.waitConnected({ signal, timeout: options.timeout })));
    options.signal?.throwIfAborted();
    const snapshots = this.proxies();
    // Nothing will ever connect: say why now, per proxy, instead of letting the first connect wait to hear its device.
    const causes = snapshots.map((s) => s.problem);
    if (causes.length > 0 && causes.every((c) => c !== undefined)) throw unusableError('The pool cannot start', causes);
    return snapshots;
  }

  /** Connects waiting in the fair slot queue now (every proxy that hears their device is full). */
  get slotQueueLength(): number {
    return this.#slotQueue.length;
  }

  /** Snapshot of every proxy. */
  proxies(): ProxySnapshot[] {
    return [...this.#proxies.values()].map((proxy) => proxy.snapshot(this.#ownedBy(proxy)));
  }

  /** Health of every proxy: state, slots, subscription, advertisement rate and recent errors. */
  diagnostics(now = Date.now()): ProxyDiagnostics[] {
    return [...this.#proxies.values()].map((proxy) => proxy.diagnostics(this.#ownedBy(proxy), now));
  }

  /** Every device heard by some proxy, with the RSSI per proxy. */
  devices(): Array<{ address: number; mac: string; name: string | undefined; proxies: Record<string, number> }> {
    const byAddress = new Map<number, { address: number; mac: string; name: string | undefined; proxies: Record<string, number> }>();
    for (const proxy of this.#proxies.values()) {
      for (const [address, heard] of proxy.heard) {
        let entry = byAddress.get(address);
        if (entry === undefined) {
          entry = { address, mac: formatMac(address), name: heard.name, proxies: {} };
          byAddress.set(address, entry);
        }
        entry.name ??= heard.name;
        entry.proxies[proxy.id] = Math.round(heard.rssi);
      }
    }
    return [...byAddress.values()];
  }

  /** The proxies that hear `target` with their score breakdown, in the order establishConnection would try them. */
  explain(target: string | number, selection: DeviceRoute = {}): ScoreBreakdown[] {
    return this.route(target, selection).ranking;
  }

  /** Calls `listener` for every advertisement heard by any proxy. */
  onAdvertisement(listener: (ad: Advertisement, proxy: string) => void): () => void {
    this.#adListeners.add(listener);
    return () => this.#adListeners.delete(listener);
  }

  /** Advertisements from every proxy as a bounded stream. */
  advertisements(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<{ ad: Advertisement; proxy: string }> {
    const queue: AsyncQueue<{ ad: Advertisement; proxy: string }> = new AsyncQueue(options, () => off());
    const off = this.onAdvertisement((ad, proxy) => queue.push({ ad, proxy }));
    endOnAbort(queue, options.signal);
    return queue;
  }

  /** Pool events. */
  status(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<PoolStatus> {
    const queue: AsyncQueue<PoolStatus> = new AsyncQueue(options, () => this.#statusQueues.delete(queue));
    this.#statusQueues.add(queue);
    endOnAbort(queue, options.signal);
    return queue;
  }

  /**
   * Connects to a device through the best proxy: ranks proxies by smoothed RSSI, free slots and
   * decaying failure history; fails over at once to another proxy when one is out of slots; waits
   * fairly for a slot when all are full; retries with per-class backoff; uses the GATT cache.
   */
  async establishConnection(target: string | number, options: EstablishOptions = {}): Promise<PooledConnection> {
    if (this.#closed) throw new NoProxyAvailableError('The pool is closed');
    const address = typeof target === 'number' ? target : parseMac(target);
    if (this.#proxies.size === 0 && this.#options.discovery === undefined) {
      throw new NoProxyAvailableError('The pool has no proxies: pass host[:port] strings or configs, or a discovery source');
    }
    this.start();
    const label = options.name ? `${options.name} (${formatMac(address)})` : formatMac(address);
    // close() ends the call too (its reason: the pool was closed), so no wait of it outlives the pool.
    const signal = AbortSignal.any(options.signal === undefined ? [this.#closing.signal] : [options.signal, this.#closing.signal]);
    return withDeadline(`Connecting to ${label}`, { signal, timeout: options.timeout }, undefined, (inner) =>
      this.#connector.establish(address, label, options, inner),
    );
  }

  /**
   * Deletes the bond of `target` in the controller of the proxy that holds it (`options.proxy` names another: pool
   * id, node name, host, host:port or MAC) and forgets it, so connects no longer go there first. Works without a
   * link. InvalidArgumentError when no bond is known and no proxy is named.
   */
  async unpair(target: string | number, options: CallOptions & { proxy?: string } = {}): Promise<void> {
    const address = typeof target === 'number' ? target : parseMac(target);
    const proxies = [...this.#proxies.values()];
    const id = options.proxy === undefined ? bondedProxy(proxies, this.cache.bondOf(formatMac(address))) : undefined;
    const proxy = options.proxy === undefined ? this.#proxies.get(id ?? '') : proxies.find((p) => proxyMatches(p, options.proxy!));
    if (proxy === undefined) {
      throw new InvalidArgumentError(
        options.proxy === undefined
          ? `No bond of ${formatMac(address)} is known${id === undefined ? '' : ` (it was made through ${id}, no longer in the pool)`}: name the proxy to unpair it on`
          : `No proxy of the pool is named ${JSON.stringify(options.proxy)}`,
      );
    }
    await this.#unpairVia(proxy, address, options);
  }

  /** Links of this pool (by device address). */
  connections(): PooledConnection[] {
    return [...this.#links.values()].map((l) => l.connection);
  }

  /**
   * Finds allocated slots that no link of ours accounts for (e.g. left over after a crash) and,
   * unless `dryRun`, asks the proxy to release them. On a session shared with a relay, the slots its clients hold
   * (or that it is releasing) are theirs, not orphans: never listed, never released.
   */
  async reapOrphans(options: CallOptions & { dryRun?: boolean } = {}): Promise<OrphanSlot[]> {
    const found: OrphanSlot[] = [];
    for (const proxy of this.#proxies.values()) {
      const bluetooth = proxy.bluetooth;
      const slots = proxy.slots;
      // Without the subscription the proxy would answer our releases to someone else.
      if (bluetooth === undefined || slots === undefined || bluetooth.subscription.state !== 'subscribed') continue;
      for (const address of slots.allocated) {
        const ours = this.#links.get(address)?.proxy === proxy || this.#pendingAddresses.has(address);
        if (ours || proxy.heldElsewhere(address)) continue;
        let released = false;
        if (!options.dryRun) {
          await bluetooth.releaseSlot(address, options);
          released = !(proxy.slots?.allocated.includes(address) ?? false);
        }
        found.push({ proxy: proxy.id, address, mac: formatMac(address), released });
      }
    }
    return found;
  }

  /** Disconnects every link, closes every proxy session and waits for the cache's file writes. Idempotent. */
  async close(options: CallOptions = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new NoProxyAvailableError('The pool was closed'));
    clearInterval(this.#pruneTimer);
    this.#ghosts?.close();
    await Promise.allSettled([...this.#links.values()].map((l) => l.connection.disconnect({ timeout: 2_000, ...options })));
    await Promise.allSettled([...this.#proxies.values()].map((p) => p.close()));
    for (const queue of this.#statusQueues) queue.end();
    this.#statusQueues.clear();
    // The cache's file writes of this pool's connects: done when close() is (a program may exit right after).
    await this.cache.flush().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #adopt(
    link: BleConnection,
    services: GattServices,
    proxy: ProxyMember,
    timeline: AttemptRecord[],
    options: EstablishOptions,
  ): PooledConnection {
    const connection = new PooledConnection(link, services, proxy.id, timeline, {
      clearCache: (c, options) => this.#clearCacheFor(proxy, c.address, options),
      invalidateCache: (c) => this.cache.delete(c.mac, proxy.id),
      paired: (c) => this.cache.setBond(c.mac, proxy.id, proxy.identity.bluetoothMac),
      unpair: (c, options) => this.#unpairVia(proxy, c.address, options),
    });
    this.#links.set(link.address, { connection, proxy });
    const adoptedAt = Date.now();
    this.#emit({ type: 'connectionOpened', proxy: proxy.id, address: link.address, mac: link.mac, attempts: timeline.length });
    link.onDisconnect((info) => {
      if (this.#links.get(link.address)?.connection === connection) this.#links.delete(link.address);
      this.#ghosts?.linkEnded(proxy.id, link.address, adoptedAt);
      this.#emit({
        type: 'connectionClosed',
        proxy: proxy.id,
        address: link.address,
        mac: link.mac,
        reason: info.reason,
        reasonName: info.reasonName,
      });
      if (!info.requested) options.disconnectedCallback?.(connection, info);
    });
    return connection;
  }

  async #unpairVia(proxy: ProxyMember, address: number, options: CallOptions): Promise<void> {
    const bluetooth = proxy.bluetooth;
    if (bluetooth === undefined)
      throw new NoProxyAvailableError(`Proxy ${proxy.id} is offline: cannot unpair ${formatMac(address)} there now`);
    await bluetooth.unpair(address, options);
    // The bond is gone from that controller: stop routing there first (a bond through another proxy is left alone).
    if (bondedProxy([...this.#proxies.values()], this.cache.bondOf(formatMac(address))) === proxy.id)
      this.cache.deleteBond(formatMac(address));
  }

  async #clearCacheFor(proxy: ProxyMember, address: number, options: CallOptions = {}): Promise<void> {
    this.cache.delete(formatMac(address));
    const bluetooth = proxy.bluetooth;
    // The proxy's own cache is best effort: ours is already gone, and the next connect rediscovers anyway.
    if (bluetooth?.hasFeature(BluetoothProxyFeature.CACHE_CLEARING))
      await bluetooth.clearCache(address, { timeout: 5_000, ...options }).catch(() => {});
  }

  /** Addresses of our links through `proxy`. */
  #ownedBy(proxy: ProxyMember): number[] {
    return [...this.#links.values()].filter((l) => l.proxy === proxy).map((l) => l.connection.address);
  }

  #offerSlots(proxy: ProxyMember): void {
    if (proxy.canConnect && proxy.available > 0) this.#slotQueue.release(proxy.id, proxy.available);
  }

  #onProxyChange(proxy: ProxyMember, what: ProxyChange, address?: number): void {
    switch (what) {
      case 'subscription': {
        const status = proxy.lastSubscriptionStatus;
        if (status === undefined) return;
        this.#emit({ type: 'subscription', proxy: proxy.id, status });
        if (status.type === 'resubscribed') this.#offerSlots(proxy);
        this.#waits.changed();
        return;
      }
      case 'up':
        this.#emit({ type: 'proxyUp', proxy: proxy.id });
        this.#offerSlots(proxy);
        this.#waits.changed();
        return;
      case 'down':
        this.#emit({ type: 'proxyDown', proxy: proxy.id, error: proxy.session.lastError });
        this.#waits.changed();
        return;
      case 'sessionFailed':
        this.#waits.changed();
        return;
      case 'connected':
        if (address !== undefined) this.#ghosts?.connected(proxy.id, address);
        return;
      case 'disconnected':
        if (address !== undefined) this.#ghosts?.down(proxy.id, address);
        return;
      case 'slots': {
        const slots = proxy.slots;
        if (slots === undefined) return;
        this.#reconcile(proxy, slots);
        this.#emit({ type: 'slots', proxy: proxy.id, slots });
        this.#offerSlots(proxy);
        this.#ghosts?.slots(proxy.id, slots);
        return;
      }
      case 'device': {
        const heard = address === undefined ? undefined : proxy.heard.get(address);
        if (address !== undefined && heard !== undefined) {
          this.#emit({ type: 'deviceSeen', proxy: proxy.id, address, mac: formatMac(address), rssi: heard.lastRssi });
        }
        return;
      }
    }
  }

  /** Links the proxy no longer lists as allocated are gone: close them locally (their callback fires). */
  #reconcile(proxy: ProxyMember, slots: SlotState): void {
    // Firmware before 2025 sends no `allocated` list: an empty list then says nothing unless every slot is free.
    if (slots.allocated.length === 0 && slots.free < slots.limit) return;
    for (const { connection, proxy: owner } of this.#links.values()) {
      if (owner !== proxy || slots.allocated.includes(connection.address)) continue;
      connection.link.handleLinkDown(0x16, 'slot released by the proxy');
    }
  }

  #onAdvertisement(proxy: ProxyMember, ad: Advertisement): void {
    this.#ghosts?.heard(ad.address);
    this.#waits.advertised(ad.address, proxy.id);
    for (const listener of this.#adListeners) listener(ad, proxy.id);
  }

  #prune(): void {
    const now = Date.now();
    const staleMs = this.#options.deviceStaleMs ?? DEVICE_STALE_MS;
    for (const proxy of this.#proxies.values()) {
      for (const [address, heard] of proxy.heard) {
        if (now - heard.lastSeen <= staleMs) continue;
        proxy.heard.delete(address);
        this.#emit({ type: 'deviceLost', proxy: proxy.id, address, mac: formatMac(address) });
      }
    }
  }

  #emit(status: PoolStatus): void {
    for (const queue of this.#statusQueues) queue.push(status);
  }
}
