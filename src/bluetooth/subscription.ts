import type { ApiConnection } from '../connection/connection.js';
import { NotSubscriberError, type SubscriptionLossSign, SubscriptionLostError } from '../errors.js';
import {
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  SubscribeBluetoothLEAdvertisementsRequest,
  UnsubscribeBluetoothLEAdvertisementsRequest,
} from '../gen/api_pb.js';
import { type CallOptions, withDeadline } from '../util/abort.js';
import { Channel } from '../util/channel.js';
import { BluetoothProxyFeature } from './features.js';
import { mayLoseSubscription } from './firmware-release.js';
import {
  type BluetoothProxyStatus,
  type ResubscribePolicy,
  SubscriptionWatchdog,
  type WatchdogHost,
  type WatchdogOptions,
} from './subscription-watchdog.js';
import { SUBSCRIBER_CHECK_TIMEOUT_MS } from './timeouts.js';

/**
 * Address of the subscriber probe: a DISCONNECT for an address without a slot is answered with
 * connected=false and a slot report, sent to the Bluetooth subscriber only (firmware since 2023.6; older
 * firmware sends every Bluetooth answer to every API client, which then all count as subscribers).
 * FF:FF:FF:FF:FF:FF is no valid device address (a static random address may not be all ones).
 */
export const SUBSCRIPTION_PROBE_ADDRESS = 0xffff_ffff_ffff;

/** Whether this session holds the proxy's single Bluetooth subscription ('lost': the proxy stopped treating it as subscriber). */
export type SubscriptionState = 'subscribed' | 'lost' | 'unsubscribed';

/** The subscription as this session knows it. */
export interface SubscriptionInfo {
  readonly state: SubscriptionState;
  /** When the state last changed (ms since the epoch). */
  readonly since: number;
  /** True once the proxy proved, since the last subscribe, that it sends us Bluetooth data. */
  readonly confirmed: boolean;
}

/** Options of BluetoothProxy.attach(). */
export interface AttachOptions extends CallOptions {
  /** How long to wait for the scanner state that proves we are the subscriber (default 2 s). */
  subscriberCheckTimeout?: number;
  /**
   * When another client keeps the subscription: true (default) throws NotSubscriberError; false
   * resolves anyway with `subscription.state` 'lost' and resubscribes with backoff (the session stays
   * open), as Home Assistant's client does when a stale connection still holds the proxy.
   */
  requireSubscriber?: boolean;
  /** The subscription watchdog (on by default); false switches it off. */
  watchdog?: false | WatchdogOptions;
  /**
   * Resubscribe after the subscription was lost, waiting `delays[i]` before attempt i+1 and the last
   * delay between all later ones (default 10 s, 30 s, then every 60 s); false only reports the loss.
   * On newest-wins firmware (2026.7+) every resubscribe takes the subscription back from whoever
   * holds it — Home Assistant, say — so the backoff keeps two clients from evicting each other
   * in a tight loop; use the relay to share a proxy instead.
   */
  resubscribe?: ResubscribePolicy;
  /**
   * Send the subscriber probe (a DISCONNECT for FF:FF:FF:FF:FF:FF) where the scanner state cannot prove the
   * subscription (default true). Its answer goes to whoever holds the subscription, so where that is another client
   * (Home Assistant) it sees a stray connected=false. false never sends it: the subscription then stays unconfirmed
   * until something only the subscriber receives arrives, and the watchdog judges by silence alone.
   */
  probe?: boolean;
}

/** The part of BluetoothProxy the subscription works with (kept narrow, like LinkHost). */
export interface SubscriptionHost {
  readonly api: ApiConnection;
  readonly label: string;
  hasFeature(feature: number): boolean;
  /** Proof sources: messages the firmware sends its subscriber only. */
  onScannerState(listener: () => void): () => void;
  onAdvertisement(listener: () => void): () => void;
  /** Asks for a slot report and takes it (answered to whoever asks). */
  updateSlots(options: CallOptions): Promise<void>;
  /** The proxy stopped treating us as subscriber: give back our links, attempts and pending requests. */
  giveBack(error: SubscriptionLostError): void;
}

/**
 * The proxy's single Bluetooth subscription as this session holds it: subscribing and proving it took (scanner
 * state, subscriber probe, advertisements), noticing its loss (with SubscriptionWatchdog), winning it back, and
 * the status events that report all of it.
 */
export class Subscription {
  /** True once the proxy proved it sends us Bluetooth data (scanner state or advertisements arrived). */
  confirmed = false;
  /** Subscription events (lost, resubscribing, resubscribed...). */
  readonly status = new Channel<BluetoothProxyStatus>();
  readonly #host: SubscriptionHost;
  readonly #options: AttachOptions;
  readonly #watchdog: SubscriptionWatchdog;
  #state: SubscriptionState = 'subscribed';
  #since = Date.now();
  #lostBy: SubscriptionLossSign = 'probe';
  /** Subscriber-only messages received (ads, scanner state, link events): the watchdog compares counts, cheaper than clocks. */
  #heardCount = 0;
  #probeAnswers = 0;
  /** Subscribes in flight: while one runs, its own proof decides whether it took. */
  #subscribing = 0;

  constructor(host: SubscriptionHost, options: AttachOptions) {
    this.#host = host;
    this.#options = options;
    this.#watchdog = new SubscriptionWatchdog(this.#watchdogHost(), options);
  }

  /** The current state. */
  get state(): SubscriptionState {
    return this.#state;
  }

  /** State, since when, and whether it is confirmed. */
  get info(): SubscriptionInfo {
    return { state: this.#state, since: this.#since, confirmed: this.confirmed };
  }

  /** Answers to the subscriber probe received so far. */
  get probeAnswers(): number {
    return this.#probeAnswers;
  }

  /**
   * Makes the session the subscriber at attach: throws NotSubscriberError when another client keeps the
   * subscription, unless the options allow starting with it lost (then the watchdog wins it back).
   */
  async attach(): Promise<void> {
    try {
      await this.#subscribe(this.#options, 'attach');
    } catch (error) {
      if (this.#options.requireSubscriber === false && error instanceof NotSubscriberError && !this.#host.api.isClosed) {
        this.#watchdog.noticeLost('subscribe');
        return;
      }
      throw error;
    }
    this.#watchdog.start();
  }

  /** Any message the firmware sends to its subscriber only: we are (still, or again) the subscriber. */
  heard(): void {
    this.confirmed = true;
    this.#heardCount++;
    // So a subscription counted lost is ours again: the loss was a quiet radio read as a takeover, or the
    // proof of our subscribe came late. A subscribe in flight is judged by its own proof instead.
    if (this.#state === 'lost' && this.#subscribing === 0) this.#watchdog.regain();
  }

  /** The answer to a subscriber probe arrived (only the subscriber gets it). */
  probeAnswered(): void {
    this.#probeAnswers++;
    this.heard();
  }

  /** Sends the subscriber probe (see SUBSCRIPTION_PROBE_ADDRESS). */
  sendProbe(): void {
    this.#host.api.send(BluetoothDeviceRequest, {
      address: SUBSCRIPTION_PROBE_ADDRESS,
      requestType: BluetoothDeviceRequestType.DISCONNECT,
    });
  }

  /** The firmware answers Bluetooth requests only to its subscriber: fail at once instead of waiting out a timeout. */
  require(): void {
    if (this.#state === 'unsubscribed') throw new NotSubscriberError(this.#host.label, 'unsubscribed');
    if (this.#state === 'lost') throw new SubscriptionLostError(this.#host.label, this.#lostBy);
  }

  /**
   * Gives the subscription up: `closeLinks` first (the firmware drops a subscriber-less proxy's links anyway), then
   * the unsubscribe on the wire; `failPending` rejects what can no longer be answered. Nothing when already given up.
   */
  async unsubscribe(closeLinks: () => Promise<unknown>, failPending: (error: Error) => void): Promise<void> {
    if (this.#state === 'unsubscribed') return;
    this.#watchdog.stop();
    await closeLinks();
    if (!this.#host.api.isClosed) {
      try {
        this.#host.api.send(UnsubscribeBluetoothLEAdvertisementsRequest, {});
      } catch {
        // session already gone
      }
    }
    this.#set('unsubscribed');
    failPending(new NotSubscriberError(this.#host.label, 'unsubscribed'));
    this.status.emit({ type: 'unsubscribed' });
  }

  /** Subscribes again after unsubscribe(); throws NotSubscriberError when another client holds the subscription. */
  async resubscribe(options: AttachOptions): Promise<void> {
    if (this.#state === 'subscribed') return;
    this.#watchdog.stop();
    this.confirmed = false;
    await this.#subscribe(options, 'again');
    this.#set('subscribed');
    this.status.emit({ type: 'subscribed' });
    this.#watchdog.start();
  }

  /** Stops watching and ends the status streams: the client is detached. */
  close(): void {
    this.#watchdog.stop();
    this.status.end();
  }

  /**
   * Sends the subscribe and proves it took: by the scanner state (FEATURE_STATE_AND_MODE) and/or the
   * subscriber probe, whose answer precedes the slot reply only for the subscriber ('attach' probes only
   * without a scanner state, 'again' and 'recover' always). After a loss ('recover') a proxy that has
   * neither must send an advertisement within the check time: nothing is taken on trust there.
   * Throws NotSubscriberError when another client keeps the subscription.
   */
  async #subscribe(options: AttachOptions, how: 'attach' | 'again' | 'recover'): Promise<void> {
    const host = this.#host;
    const expectsScannerState = host.hasFeature(BluetoothProxyFeature.FEATURE_STATE_AND_MODE);
    const probe =
      options.probe !== false && host.hasFeature(BluetoothProxyFeature.ACTIVE_CONNECTIONS) && (how !== 'attach' || !expectsScannerState);
    const proof = expectsScannerState
      ? (listener: () => void) => host.onScannerState(listener)
      : how === 'recover' && !probe
        ? (listener: () => void) => host.onAdvertisement(listener)
        : undefined;
    const checkMs = options.subscriberCheckTimeout ?? SUBSCRIBER_CHECK_TIMEOUT_MS;
    const done = new AbortController();
    const signal = options.signal === undefined ? done.signal : AbortSignal.any([options.signal, done.signal]);
    const confirmed =
      proof === undefined
        ? undefined
        : withDeadline(
            `Bluetooth subscription on ${host.label}`,
            { signal, timeout: checkMs },
            checkMs,
            (deadline) =>
              new Promise<void>((resolve, reject) => {
                const off = proof(() => {
                  off();
                  resolve();
                });
                deadline.addEventListener('abort', () => {
                  off();
                  reject(deadline.reason);
                });
              }),
          );
    confirmed?.catch(() => {});
    this.#subscribing++;
    try {
      host.api.send(SubscribeBluetoothLEAdvertisementsRequest, { flags: 1 });
      if (host.hasFeature(BluetoothProxyFeature.ACTIVE_CONNECTIONS)) {
        const answersBefore = this.#probeAnswers;
        if (probe) this.sendProbe();
        await host.updateSlots(options);
        if (probe && this.#probeAnswers === answersBefore) throw new NotSubscriberError(host.label);
      }
      if (confirmed !== undefined) {
        try {
          await confirmed;
        } catch (error) {
          if (options.signal?.aborted) throw error;
          throw new NotSubscriberError(host.label);
        }
      }
    } finally {
      this.#subscribing--;
      done.abort();
    }
  }

  /** What the watchdog may see and do (a narrow view, so the two modules do not knot together). */
  #watchdogHost(): WatchdogHost {
    const subscription = this;
    const host = this.#host;
    return {
      api: host.api,
      get heardCount() {
        return subscription.#heardCount;
      },
      get probeAnswers() {
        return subscription.#probeAnswers;
      },
      canProbe: host.hasFeature(BluetoothProxyFeature.ACTIVE_CONNECTIONS) && this.#options.probe !== false,
      canLoseSubscription: mayLoseSubscription(host.api.deviceInfo.esphomeVersion),
      get subscribed() {
        return subscription.#state === 'subscribed';
      },
      sendProbe: () => this.sendProbe(),
      lost: (detectedBy) => this.#lost(detectedBy),
      resubscribe: async (signal) => {
        if (this.#state !== 'lost') throw new NotSubscriberError(host.label, 'unsubscribed');
        this.confirmed = false;
        await this.#subscribe({ ...this.#options, signal }, 'recover');
      },
      regained: () => this.#set('subscribed'),
      emit: (status) => this.status.emit(status),
    };
  }

  #lost(detectedBy: SubscriptionLossSign): void {
    this.#lostBy = detectedBy;
    this.confirmed = false;
    this.#set('lost');
    const error = new SubscriptionLostError(this.#host.label, detectedBy);
    this.#host.giveBack(error);
    this.status.emit({ type: 'subscriptionLost', code: 'ESPAPI_ERR_SUBSCRIPTION_LOST', detectedBy, at: Date.now(), error });
  }

  #set(state: SubscriptionState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#since = Date.now();
  }
}
