import { formatMac } from '../bluetooth/address.js';
import type { ProxyDiagnostics } from '../pool/proxy-health.js';
import { proxyDiscovery } from './ha-discovery.js';
import type { GatewayTopics } from './topics.js';

/** Publishes retained topics; false when the message could not go out now. */
export type RetainedPublish = (topic: string, payload: string) => boolean;

/**
 * The fleet on the broker, retained per proxy: `online` (online/offline), `slots` ({free, limit, allocated}),
 * `subscription` (our Bluetooth subscription's state) and `stats` ({adsPerSecond, devicesHeard, state, since}).
 * Only changed payloads are sent; reset() after a reconnect sends everything again.
 */
export class FleetPublisher {
  readonly #topics: GatewayTopics;
  readonly #publish: RetainedPublish;
  readonly #discovery: { prefix: string; gateway: string } | undefined;
  readonly #last = new Map<string, string>();
  readonly #discovered = new Set<string>();

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

  /** Sends what changed since the last call. */
  refresh(proxies: readonly ProxyDiagnostics[]): void {
    for (const proxy of proxies) {
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

  #send(topic: string, payload: string): void {
    if (this.#last.get(topic) === payload) return;
    if (this.#publish(topic, payload)) this.#last.set(topic, payload);
  }
}
