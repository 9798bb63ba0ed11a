import type { ApiConnection } from '../connection/connection.js';
import { type ErrorCode, EspApiError, type SubscriptionLossSign, type SubscriptionLostError } from '../errors.js';
import { BluetoothConnectionsFreeResponse, SubscribeBluetoothConnectionsFreeRequest } from '../gen/api_pb.js';
import { sleep } from '../util/abort.js';
import { RESUBSCRIBE_DELAYS_MS, SUBSCRIPTION_PROBE_TIMEOUT_MS, SUBSCRIPTION_SILENCE_TIMEOUT_MS } from './timeouts.js';

/** Subscription events of a BluetoothProxy (a union tagged by `type`). */
export type BluetoothProxyStatus =
  | {
      type: 'subscriptionLost';
      code: 'ESPAPI_ERR_SUBSCRIPTION_LOST';
      detectedBy: SubscriptionLossSign;
      /** When the loss was noticed (ms since the epoch). */
      at: number;
      error: SubscriptionLostError;
    }
  | { type: 'resubscribing'; attempt: number; delay: number }
  | { type: 'resubscribeFailed'; attempt: number; code: ErrorCode; error: Error }
  /** `attempt`: resubscribes sent before the subscription came back (0: the proxy's data showed it was never gone). */
  | { type: 'resubscribed'; attempt: number; lostFor: number }
  | { type: 'subscribed' }
  | { type: 'unsubscribed' };

/** Tuning of the subscription watchdog (ms). */
export interface WatchdogOptions {
  /** Probe the subscription after this long without any Bluetooth data from the proxy (default 30 s). */
  silenceTimeout?: number;
  /** How long one probe waits for the proxy's slot answer before it counts as inconclusive (default 5 s). */
  probeTimeout?: number;
}

/** Resubscribe policy: false, or the waits before each attempt (the last one repeats). */
export type ResubscribePolicy = false | { delays?: readonly number[] };

/** The part of BluetoothProxy the watchdog works on (kept narrow, like LinkHost). */
export interface WatchdogHost {
  readonly api: ApiConnection;
  /** Messages the firmware sends to its subscriber only, received so far. */
  readonly heardCount: number;
  /** Answers to the subscriber probe received so far. */
  readonly probeAnswers: number;
  /** The proxy handles BluetoothDeviceRequest, so the probe works (not on advertisement-only proxies). */
  readonly canProbe: boolean;
  /** The firmware may give the subscription to a newer client while our session lives (2026.7+, or unknown). */
  readonly canLoseSubscription: boolean;
  /** This session still believes it is the subscriber. */
  readonly subscribed: boolean;
  sendProbe(): void;
  /** The subscription is gone: clean up and report it. */
  lost(detectedBy: SubscriptionLossSign): void;
  /** Subscribes again and proves it took; throws (NotSubscriberError) when another client keeps it. */
  resubscribe(signal: AbortSignal): Promise<void>;
  /** A resubscribe took: the host is the subscriber again. */
  regained(): void;
  emit(status: BluetoothProxyStatus): void;
}

/**
 * Notices a subscription the proxy stopped honouring and wins it back: probes after a silence
 * (the probe's answer precedes the answer to a slot query only for the subscriber), reports the
 * loss through the host, then resubscribes with backoff.
 */
export class SubscriptionWatchdog {
  readonly #host: WatchdogHost;
  readonly #silenceMs: number | undefined;
  readonly #probeMs: number;
  readonly #delays: readonly number[] | undefined;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #resubscribing: AbortController | undefined;
  /** When the current loss was declared; undefined while subscribed. */
  #lostAt: number | undefined;
  /** Resubscribes sent since the current loss. */
  #attempts = 0;

  constructor(
    host: WatchdogHost,
    options: { watchdog?: false | WatchdogOptions | undefined; resubscribe?: ResubscribePolicy | undefined },
  ) {
    this.#host = host;
    const watchdog = options.watchdog;
    this.#silenceMs = watchdog === false ? undefined : (watchdog?.silenceTimeout ?? SUBSCRIPTION_SILENCE_TIMEOUT_MS);
    this.#probeMs = (watchdog === false ? undefined : watchdog?.probeTimeout) ?? SUBSCRIPTION_PROBE_TIMEOUT_MS;
    const policy = options.resubscribe;
    this.#delays = policy === false ? undefined : policy?.delays?.length ? policy.delays : RESUBSCRIBE_DELAYS_MS;
  }

  /** Starts watching for silence (idempotent; nothing when the watchdog is switched off or nothing can be lost). */
  start(): void {
    const host = this.#host;
    if (this.#silenceMs === undefined || this.#timer !== undefined) return;
    // An advertisement-only proxy of first-wins firmware: no probe works, and a live session keeps the
    // subscription for good, so a silence there is only a quiet radio (no advertiser in range).
    if (!host.canProbe && !host.canLoseSubscription) return;
    let heardAtLastTick = host.heardCount;
    // A tick compares counters: silence is noticed after one to two silenceTimeouts, at no cost per message.
    this.#timer = setInterval(() => {
      if (host.heardCount !== heardAtLastTick || this.#busy) {
        heardAtLastTick = host.heardCount;
        return;
      }
      this.#busy = true;
      void this.#check()
        .finally(() => {
          this.#busy = false;
          heardAtLastTick = host.heardCount;
        })
        .catch(() => {});
    }, this.#silenceMs);
  }

  /** Stops the silence timer and any resubscribe loop. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#resubscribing?.abort();
    this.#resubscribing = undefined;
  }

  /** The proxy fell silent: find out whether we are still its subscriber, and act if not. */
  async #check(): Promise<void> {
    const host = this.#host;
    if (!host.subscribed || host.api.isClosed) return;
    if (!host.canProbe) {
      // Advertisement-only proxies answer no request to the subscriber only: on newest-wins firmware silence
      // while the session still answers pings is the only sign. A quiet radio looks the same; the first
      // advertisement afterwards undoes that false alarm (regain()).
      const alive = await host.api.ping({ timeout: this.#probeMs }).then(
        () => true,
        () => false,
      );
      if (alive) this.#declareLost('silence');
      return;
    }
    // Two probes: one answer lost to a full TCP buffer on the proxy must not read as a takeover.
    for (let i = 0; i < 2; i++) {
      if ((await this.#probe()) !== 'notSubscriber') return;
    }
    this.#declareLost('probe');
  }

  /** One subscriber probe: 'subscriber' when its answer (or any Bluetooth data) arrived before the slot reply. */
  async #probe(): Promise<'subscriber' | 'notSubscriber' | 'inconclusive'> {
    const host = this.#host;
    const answersBefore = host.probeAnswers;
    const heardBefore = host.heardCount;
    try {
      host.sendProbe();
      await host.api.request(SubscribeBluetoothConnectionsFreeRequest, {}, BluetoothConnectionsFreeResponse, () => true, {
        timeout: this.#probeMs,
      });
    } catch {
      return 'inconclusive'; // the session itself is in trouble; its keep-alive deals with that
    }
    return host.probeAnswers !== answersBefore || host.heardCount !== heardBefore ? 'subscriber' : 'notSubscriber';
  }

  /** The host found out itself (its subscribe was not confirmed): report the loss and resubscribe with backoff. */
  noticeLost(detectedBy: SubscriptionLossSign): void {
    this.#declareLost(detectedBy);
  }

  /**
   * Data that only the subscriber receives arrived while the host counted the subscription lost: it is the
   * subscriber again (a late confirmation, or a silence that was a quiet radio). Ends the resubscribe loop,
   * reports `resubscribed` and watches again.
   */
  regain(): void {
    if (this.#lostAt === undefined || this.#host.subscribed || this.#host.api.isClosed) return;
    this.#regained(this.#attempts);
  }

  #declareLost(detectedBy: SubscriptionLossSign): void {
    const host = this.#host;
    if (!host.subscribed || host.api.isClosed) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#lostAt = Date.now();
    this.#attempts = 0;
    host.lost(detectedBy);
    if (this.#delays !== undefined) void this.#resubscribeLoop(this.#delays);
  }

  #regained(attempt: number): void {
    const lostAt = this.#lostAt ?? Date.now();
    this.#lostAt = undefined;
    this.#resubscribing?.abort();
    this.#resubscribing = undefined;
    this.#host.regained();
    this.#host.emit({ type: 'resubscribed', attempt, lostFor: Date.now() - lostAt });
    this.start();
  }

  async #resubscribeLoop(delays: readonly number[]): Promise<void> {
    const host = this.#host;
    const abort = new AbortController();
    this.#resubscribing = abort;
    for (let attempt = 1; !abort.signal.aborted; attempt++) {
      const delay = delays[Math.min(attempt - 1, delays.length - 1)]!;
      host.emit({ type: 'resubscribing', attempt, delay });
      try {
        await sleep(delay, abort.signal);
      } catch {
        return;
      }
      if (host.api.isClosed || host.subscribed) return;
      this.#attempts = attempt;
      try {
        await host.resubscribe(abort.signal);
      } catch (error) {
        if (abort.signal.aborted || host.api.isClosed) return;
        const failure = error as Error;
        const code = failure instanceof EspApiError ? failure.code : 'ESPAPI_ERR_NOT_SUBSCRIBER';
        host.emit({ type: 'resubscribeFailed', attempt, code, error: failure });
        continue;
      }
      if (abort.signal.aborted) return;
      this.#regained(attempt);
      return;
    }
  }
}
