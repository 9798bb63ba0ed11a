import { formatMac } from '../bluetooth/address.js';
import type { ProxyDiagnostics } from '../pool/proxy-health.js';
import { proxyDiscovery, proxyDiscoveryTopics } from './ha-discovery.js';
import type { GatewayTopics } from './topics.js';

/** Publishes retained topics; false when the message could not go out now. */
export type RetainedPublish = (topic: string, payload: string) => boolean;

/**
 * The fleet on the broker, retained per proxy: `online` (online/offline), `slots` ({free, limit, allocated}),
 * `subscription` (our Bluetooth subscription's state) and `stats` ({adsPerSecond, devicesHeard, state, since}).
 * Only changed payloads are sent; reset() after a reconnect sends everything again. A proxy that leaves the pool
 * has its topics cleared; goodbye() marks every proxy offline before the gateway's own `offline`.
 */
export class FleetPublisher {
  readonly #topics: GatewayTopics;
  readonly #publish: RetainedPublish;
  readonly #discovery: { prefix: string; gateway: string } | undefined;
  readonly #last = new Map<string, string>();
  readonly #discovered = new Set<string>();
  /** Proxies whose topics we have published (and so must clear when they leave the pool). */
  readonly #known = new Set<string>();

  constructor(topics: GatewayTopics, publish: RetainedPublish, discovery?: { prefix: string; gateway: string }) {
    this.#topics = topics;
    this.#publish = publish;
    this.#discovery = discovery;
  }

  /** Forgets what was sent (the broker may have lost it, or a new session must see it). */
  reset(): void {
    this.#last.clear();
    this.#discovered.clear();
  }

  /** Sends what changed since the last call, and clears the topics of proxies no longer in the pool. */
  refresh(proxies: readonly ProxyDiagnostics[]): void {
    const present = new Set(proxies.map((p) => p.id));
    for (const id of this.#known) if (!present.has(id)) this.#clear(id);
    for (const proxy of proxies) {
      this.#known.add(proxy.id);
      if (this.#discovery !== undefined && !this.#discovered.has(proxy.id)) {
        const messages = proxyDiscovery(this.#discovery.prefix, this.#discovery.gateway, this.#topics, proxy);
        if (messages.every((m) => this.#publish(m.topic, m.payload))) this.#discovered.add(proxy.id);
      }
      const online = proxy.state === 'online';
      const slots = online && proxy.slots !== undefined ? proxy.slots : undefined;
      this.#send(this.#topics.proxy(proxy.id, 'online'), online ? 'online' : 'offline');
      this.#send(
        this.#topics.proxy(proxy.id, 'slots'),
        // While the proxy is away nothing can be connected through it: 0 free of 0, as the relay shows it.
        JSON.stringify({ free: slots?.free ?? 0, limit: slots?.limit ?? 0, allocated: (slots?.allocated ?? []).map(formatMac) }),
      );
      this.#send(this.#topics.proxy(proxy.id, 'subscription'), proxy.subscription.state);
      this.#send(
        this.#topics.proxy(proxy.id, 'stats'),
        JSON.stringify({
          adsPerSecond: proxy.adsPerSecond,
          devicesHeard: proxy.devicesHeard ?? 0,
          state: proxy.state,
          since: new Date(proxy.since).toISOString(),
          ...(proxy.name === undefined ? {} : { name: proxy.name }),
        }),
      );
    }
  }

  /**
   * Every proxy as the gateway leaves: offline, no slots, no subscription (retained, so that nothing claims a proxy
   * is online while the gateway that watched it is gone).
   */
  goodbye(): void {
    const now = new Date().toISOString();
    for (const id of this.#known) {
      this.#send(this.#topics.proxy(id, 'online'), 'offline');
      this.#send(this.#topics.proxy(id, 'slots'), JSON.stringify({ free: 0, limit: 0, allocated: [] }));
      this.#send(this.#topics.proxy(id, 'subscription'), 'none');
      this.#send(this.#topics.proxy(id, 'stats'), JSON.stringify({ adsPerSecond: 0, devicesHeard: 0, state: 'stopped', since: now }));
    }
  }

  /** Removes a proxy's retained topics from the broker (an empty retained payload deletes one). */
  #clear(id: string): void {
    const topics = (['online', 'slots', 'subscription', 'stats'] as const).map((leaf) => this.#topics.proxy(id, leaf));
    if (this.#discovery !== undefined) topics.push(...proxyDiscoveryTopics(this.#discovery.prefix, this.#discovery.gateway, id));
    if (!topics.every((topic) => this.#publish(topic, ''))) return;
    for (const topic of topics) this.#last.delete(topic);
    this.#known.delete(id);
    this.#discovered.delete(id);
  }

  #send(topic: string, payload: string): void {
    if (this.#last.get(topic) === payload) return;
    if (this.#publish(topic, payload)) this.#last.set(topic, payload);
  }
}
