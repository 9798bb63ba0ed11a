import type { MessageType } from '@protobuf-ts/runtime';
import { formatMac } from '../bluetooth/address.js';
import { type AttachOptions, BluetoothProxy, type BluetoothProxyStatus } from '../bluetooth/proxy-client.js';
import type { ApiConnection } from '../connection/connection.js';
import { type ProxyConfig, type ProxySessionOptions, proxySession } from '../connection/proxy-session.js';
import type { ReconnectingConnection } from '../connection/reconnect.js';
import { encodeMessage } from '../frame/dispatch.js';
import { messageId } from '../frame/message-types.js';
import { BluetoothDeviceRequest, BluetoothDeviceRequestType, DeviceInfoRequest, DeviceInfoResponse } from '../gen/api_pb.js';
import { ProxyHealth } from '../pool/proxy-health.js';
import type { RelayStatus, UpstreamState } from './relay-status.js';
import type { UpstreamSlotsState } from './slot-arbiter.js';

/** What the upstream life-cycle tells its relay, and asks of it, at each step of a session. */
export interface RelayUpstreamHost {
  readonly id: string;
  emit(status: RelayStatus): void;
  /** True once the relay is closing (a stop is then no news). */
  closing(): boolean;
  /** The DeviceInfo of the device the listener speaks as, once known. */
  identity(): DeviceInfoResponse | undefined;
  /** Throws when the session reached another device than the one the listener speaks as. */
  check(info: DeviceInfoResponse): void;
  /** Routes the new session's replies to the clients (before the attach: its first reports count); returns the offs. */
  bind(api: ApiConnection): Array<() => void>;
  /** The attach failed: reports seen meanwhile belong to a session that is going away. */
  attachFailed(): void;
  /** The session is the relay's Bluetooth subscriber now (before the relay follows its subscription). */
  attached(info: DeviceInfoResponse, api: ApiConnection, bluetooth: BluetoothProxy): void;
  /** Then: the relay follows its subscription; others (an in-process pool) learn of the new Bluetooth client. */
  announce(bluetooth: BluetoothProxy): void;
  /** The session ended: every client loses its links. */
  lost(): void;
  /** Another client took the subscription: every client loses its links (freed upstream); returns their addresses. */
  subscriptionLost(): number[];
  /** The subscription is back. */
  resubscribed(): void;
}

/** The upstream session's construction options, beside the attach options of its Bluetooth client. */
export type RelayUpstreamOptions = Omit<ProxySessionOptions, 'onConnect'> & {
  [K in 'subscriberCheckTimeout' | 'watchdog' | 'resubscribe']?: AttachOptions[K] | undefined;
};

/**
 * The life-cycle of a relay's upstream session: reconnecting with backoff, attaching the Bluetooth client that
 * proves the relay is the proxy's subscriber, following the session's and the subscription's events into the
 * relay's state and status events, and the relay's own sends upstream.
 */
export class RelayUpstream {
  readonly session: ReconnectingConnection;
  readonly health: ProxyHealth;
  #bluetooth: BluetoothProxy | undefined;
  #state: UpstreamState = 'connecting';
  readonly #host: RelayUpstreamHost;
  #forwarding = false;
  #sends = 0;

  constructor(config: ProxyConfig, options: RelayUpstreamOptions, host: RelayUpstreamHost) {
    this.#host = host;
    const { subscriberCheckTimeout, watchdog, resubscribe, ...sessionOptions } = options;
    const attach = {
      ...(subscriberCheckTimeout === undefined ? {} : { subscriberCheckTimeout }),
      ...(watchdog === undefined ? {} : { watchdog }),
      ...(resubscribe === undefined ? {} : { resubscribe }),
    };
    this.session = proxySession(config, { ...sessionOptions, onConnect: (api) => this.#onConnect(api, attach) });
    this.health = new ProxyHealth(this.session, () => this.#bluetooth);
    void this.#follow();
  }

  /** The Bluetooth client of the live session. */
  get bluetooth(): BluetoothProxy | undefined {
    return this.#bluetooth;
  }

  get state(): UpstreamState {
    return this.#state;
  }

  /** Where the upstream stands for slot decisions: no session, a session whose subscription is another client's, or ready. */
  get slotsState(): UpstreamSlotsState {
    const bluetooth = this.#bluetooth;
    if (bluetooth === undefined) return 'down';
    return bluetooth.subscription.state === 'subscribed' ? 'ready' : 'subscriptionLost';
  }

  /** True while the relay itself is sending (its sends pass the shared session's guard and tap as they are). */
  get forwarding(): boolean {
    return this.#forwarding;
  }

  /** Messages the relay itself sent upstream (tells whether a client's frame went upstream). */
  get sends(): number {
    return this.#sends;
  }

  /** Encodes a decoded request again and sends it upstream: what the guard checked is what the proxy decodes. */
  forward<T extends object>(type: MessageType<T>, message: T): boolean {
    const api = this.#bluetooth?.api;
    if (api === undefined || api.isClosed) return false;
    this.#forwarding = true;
    try {
      api.sendRaw(messageId(type), encodeMessage(type, message));
      this.#sends++;
      return true;
    } catch {
      return false;
    } finally {
      this.#forwarding = false;
    }
  }

  /** Sends a DISCONNECT for `address` (the firmware executes one from any client). */
  disconnect(address: number): void {
    this.forward(BluetoothDeviceRequest, BluetoothDeviceRequest.create({ address, requestType: BluetoothDeviceRequestType.DISCONNECT }));
  }

  async #onConnect(api: ApiConnection, attach: Pick<AttachOptions, 'subscriberCheckTimeout' | 'watchdog' | 'resubscribe'>): Promise<void> {
    const host = this.#host;
    const info = await api.request(DeviceInfoRequest, {}, DeviceInfoResponse);
    // The listener speaks as the first device it relayed; another one at the same address must not inherit that identity.
    host.check(info);
    const offs = host.bind(api);
    let bluetooth: BluetoothProxy;
    try {
      bluetooth = await BluetoothProxy.attach(api, attach);
    } catch (error) {
      for (const off of offs) off();
      host.attachFailed();
      throw error;
    }
    host.attached(info, api, bluetooth);
    this.#bluetooth = bluetooth;
    offs.push(bluetooth.onStatus((status) => this.#onStatus(bluetooth, status)));
    void api.closed().then(() => {
      for (const off of offs) off();
      if (this.#bluetooth !== bluetooth) return;
      this.#bluetooth = undefined;
      host.lost();
    });
    host.announce(bluetooth);
  }

  async #follow(): Promise<void> {
    const { id: proxy } = this.#host;
    for await (const event of this.session.status()) {
      this.health.onSessionStatus(event);
      switch (event.type) {
        case 'connecting':
          if (this.#state !== 'connected') this.#state = 'connecting';
          this.#host.emit({ type: 'upstreamConnecting', proxy, attempt: event.attempt });
          break;
        case 'connected': {
          this.#state = 'connected';
          const info = this.#host.identity();
          this.#host.emit({ type: 'upstreamUp', proxy, name: info?.name ?? '', esphomeVersion: info?.esphomeVersion ?? '' });
          break;
        }
        case 'disconnected':
          this.#state = 'disconnected';
          this.#host.emit({ type: 'upstreamDown', proxy, error: event.error?.message, retryInMs: event.retryInMs });
          break;
        case 'stopped':
          this.#state = 'stopped';
          if (!this.#host.closing()) this.#host.emit({ type: 'upstreamStopped', proxy, error: event.error?.message });
          break;
      }
    }
  }

  /**
   * What the firmware does for its subscriber's clients when the relay loses the subscription: their links end
   * (the proxy now reports them to the new subscriber, so the relay frees them upstream), ads pause; on the
   * resubscribe the slots and scanner state come back. Downstream sessions stay open throughout.
   */
  #onStatus(bluetooth: BluetoothProxy, status: BluetoothProxyStatus): void {
    if (this.#bluetooth !== bluetooth) return;
    this.health.onSubscriptionStatus(status);
    const { id: proxy } = this.#host;
    switch (status.type) {
      case 'subscriptionLost': {
        this.#state = 'subscriptionLost';
        const ended = this.#host.subscriptionLost();
        this.#host.emit({ type: 'upstreamSubscriptionLost', proxy, detectedBy: status.detectedBy, endedLinks: ended.map(formatMac) });
        return;
      }
      case 'resubscribing':
        this.#host.emit({ type: 'upstreamResubscribing', proxy, attempt: status.attempt, delay: status.delay });
        return;
      case 'resubscribeFailed':
        this.#host.emit({
          type: 'upstreamResubscribeFailed',
          proxy,
          attempt: status.attempt,
          code: status.code,
          error: status.error.message,
        });
        return;
      case 'resubscribed':
        if (this.#state === 'subscriptionLost') this.#state = 'connected';
        this.#host.resubscribed();
        this.#host.emit({ type: 'upstreamResubscribed', proxy, attempt: status.attempt, lostForMs: status.lostFor });
        return;
      default:
        return;
    }
  }
}
