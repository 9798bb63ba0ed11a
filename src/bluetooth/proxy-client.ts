import type { ApiConnection } from '../connection/connection.js';
import {
  BleConnectError,
  ConnectionClosedError,
  FeatureMissingError,
  InvalidArgumentError,
  NotSubscriberError,
  PairingError,
  type SubscriptionLossSign,
  SubscriptionLostError,
} from '../errors.js';
import { connectFailureClass } from '../failure-table.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceClearCacheResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothDeviceUnpairingResponse,
  BluetoothGATTErrorResponse,
  BluetoothGATTGetServicesDoneResponse,
  BluetoothGATTGetServicesResponse,
  BluetoothGATTNotifyDataResponse,
  BluetoothGATTNotifyResponse,
  BluetoothGATTReadResponse,
  BluetoothGATTWriteResponse,
  BluetoothLEAdvertisementResponse,
  BluetoothScannerSetModeRequest,
  BluetoothScannerStateResponse,
  BluetoothSetConnectionParamsResponse,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
  UnsubscribeBluetoothLEAdvertisementsRequest,
} from '../gen/api_pb.js';
import { type CallOptions, pendingReply, type Settler, withDeadline } from '../util/abort.js';
import { AsyncQueue, endOnAbort, type QueueOptions } from '../util/async-queue.js';
import { ByteSlab } from '../util/bytes.js';
import { formatMac } from './address.js';
import { AddressTypeCache } from './address-types.js';
import { type Advertisement, fromLegacyAdvertisement, parseRawAdvertisement } from './advertisement.js';
import { BleConnection, type LinkHost } from './ble-connection.js';
import { describeConnectionError } from './codes.js';
import { BluetoothProxyFeature, featureNames, GATT_CONNECTION_FEATURES, resolveFeatureFlags } from './features.js';
import { mayLoseSubscription } from './firmware-release.js';
import type { GattServices } from './gatt.js';
import { ownBluetoothAddress, withoutOwnAddress } from './own-address.js';
import { decodeRawAdvertisements, RAW_ADVERTISEMENTS_MESSAGE_ID } from './raw-advertisements.js';
import {
  type BluetoothProxyStatus,
  type ResubscribePolicy,
  SubscriptionWatchdog,
  type WatchdogHost,
  type WatchdogOptions,
} from './subscription-watchdog.js';
import {
  BLE_CONNECT_CLEANUP_TIMEOUT_MS,
  BLE_CONNECT_TIMEOUT_MS,
  BLE_OPERATION_TIMEOUT_MS,
  DEFAULT_MTU,
  SCANNER_MODE_TIMEOUT_MS,
  SUBSCRIBER_CHECK_TIMEOUT_MS,
} from './timeouts.js';

export type { BluetoothProxyStatus, ResubscribePolicy, WatchdogOptions } from './subscription-watchdog.js';

/** The proxy's connection-slot accounting. */
export interface SlotState {
  readonly free: number;
  readonly limit: number;
  /** Addresses currently holding a slot (ours and other clients'). */
  readonly allocated: readonly number[];
}

/** One connection-state report from the proxy. */
export interface ConnectionStateChange {
  readonly address: number;
  readonly mac: string;
  readonly connected: boolean;
  readonly mtu: number;
  /** ESP-IDF status/reason (0 = none; right after a connect request, 0 with connected=false means no free slot). */
  readonly error: number;
  readonly reasonName: string;
}

/** Scanner state as the proxy reports it. */
export interface ScannerState {
  readonly state: 'idle' | 'starting' | 'running' | 'failed' | 'stopping' | 'stopped';
  readonly mode: 'passive' | 'active';
  readonly configuredMode: 'passive' | 'active';
}

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

const SCANNER_STATES = ['idle', 'starting', 'running', 'failed', 'stopping', 'stopped'] as const;
const SCANNER_MODES = ['passive', 'active'] as const;

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

/** Options of connect(). */
export interface BleConnectOptions extends CallOptions {
  /** Address type from the advertisement (0 public, 1 random); default: the last one heard, else 0. */
  addressType?: number;
  /** Services from an earlier link: connect "with cache" (no discovery on the proxy). */
  cachedServices?: GattServices;
  /** MTU remembered with the cached services (the proxy's value is meaningless on cached connects). */
  cachedMtu?: number;
  /** Wait this long for the proxy to confirm the slot is free after a failed connect (default 5 s). */
  cleanupTimeout?: number;
}

interface PendingConnect {
  resolve: (message: BluetoothDeviceConnectionResponse) => void;
  reject: (error: Error) => void;
  /** Builds the link the moment connected=true arrives, so a connected=false in the same TCP read finds it. */
  createLink: (message: BluetoothDeviceConnectionResponse) => BleConnection;
  sawSlotsUpdate: boolean;
}

/**
 * Bluetooth client for one proxy over one API session: advertisements, scanner, connection slots,
 * BLE links with GATT. The session becomes the proxy's single Bluetooth subscriber.
 */
export class BluetoothProxy implements LinkHost {
  readonly api: ApiConnection;
  /** Feature bitmask (BluetoothProxyFeature). */
  readonly features: number;
  /** True once the proxy proved it sends us Bluetooth data (scanner state or advertisements arrived). */
  subscriberConfirmed = false;
  /** Advertisements dropped by slow consumers of advertisements(). */
  droppedAdvertisements = 0;
  /** Consulted before every connect; an error it returns is thrown instead (a relay sharing this session refuses devices its clients hold). */
  connectGuard: ((address: number) => Error | undefined) | undefined;
  #slots: SlotState | undefined;
  #scanner: ScannerState | undefined;
  readonly #links = new Map<number, BleConnection>();
  readonly #pendingConnects = new Map<number, PendingConnect>();
  readonly #pendingDeviceOps = new Map<string, Settler<{ success: boolean; error: number }>>();
  readonly #addressTypes = new AddressTypeCache();
  readonly #adBytes = new ByteSlab();
  readonly #adListeners = new Set<(ad: Advertisement) => void>();
  readonly #slotQueues = new Set<AsyncQueue<SlotState>>();
  readonly #scannerListeners = new Set<(state: ScannerState) => void>();
  readonly #slotListeners = new Set<(slots: SlotState) => void>();
  readonly #connectionStateListeners = new Set<(state: ConnectionStateChange) => void>();
  readonly #unsubscribers: Array<() => void> = [];
  /** Addresses whose link or attempt ended while the proxy still lists their slot, with waiters for the release. */
  readonly #releasing = new Map<number, Set<() => void>>();
  #detached = false;
  #leftBehind: readonly number[] = [];
  #subscription: SubscriptionState = 'subscribed';
  #subscriptionSince = Date.now();
  #attachOptions: AttachOptions = {};
  /** Subscriber-only messages received (ads, scanner state, link events): the watchdog compares counts, cheaper than clocks. */
  #heardCount = 0;
  #probeAnswers = 0;
  /** Subscribes in flight: while one runs, its own proof decides whether it took. */
  #subscribing = 0;
  #watchdog: SubscriptionWatchdog | undefined;
  readonly #statusListeners = new Set<(status: BluetoothProxyStatus) => void>();
  readonly #statusQueues = new Set<AsyncQueue<BluetoothProxyStatus>>();
  /** The node's own Bluetooth address: never a device's, so a slot report listing it (a relay's full marker) drops it. */
  readonly #ownAddress: number | undefined;

  private constructor(api: ApiConnection) {
    this.api = api;
    const info = api.deviceInfo;
    this.#ownAddress = ownBluetoothAddress(info);
    this.features = resolveFeatureFlags({
      capabilitiesFlags: info.bluetoothProxyFeatureFlags,
      deviceInfoFlags: info.bluetoothProxyFeatureFlags,
      legacyVersion: info.legacyBluetoothProxyVersion,
    });
  }

  /**
   * Makes `api` the proxy's Bluetooth subscriber: subscribes to raw advertisements (legacy fallback),
   * scanner state and slot updates. Throws FeatureMissingError for non-proxies and NotSubscriberError
   * when a modern proxy stays silent because another client holds its subscription.
   */
  static async attach(api: ApiConnection, options: AttachOptions = {}): Promise<BluetoothProxy> {
    const proxy = new BluetoothProxy(api);
    if (proxy.features === 0) throw new FeatureMissingError(api.label, 'Bluetooth proxying (not a Bluetooth proxy)');
    proxy.#listen();
    proxy.#attachOptions = options;
    proxy.#watchdog = new SubscriptionWatchdog(proxy.#watchdogHost(), options);
    try {
      await proxy.#subscribe(options, 'attach');
    } catch (error) {
      if (options.requireSubscriber === false && error instanceof NotSubscriberError && !api.isClosed) {
        proxy.#watchdog.noticeLost('subscribe');
        return proxy;
      }
      proxy.#detach();
      throw error;
    }
    proxy.#watchdog.start();
    return proxy;
  }

  /** Proxy name and address for messages. */
  get label(): string {
    return this.api.label;
  }

  /** Current slot state (undefined before the first report). */
  get slots(): SlotState | undefined {
    return this.#slots;
  }

  /** Current scanner state (proxies with FEATURE_STATE_AND_MODE). */
  get scannerState(): ScannerState | undefined {
    return this.#scanner;
  }

  /** Open links by address. */
  get links(): ReadonlyMap<number, BleConnection> {
    return this.#links;
  }

  /**
   * Addresses whose links, attempts or unconfirmed releases this client had when it was detached (its session
   * ended): the proxy may hold their slots a moment longer, until it notices its subscriber left.
   */
  get slotsLeftBehind(): readonly number[] {
    return this.#leftBehind;
  }

  /** Whether this session is the proxy's Bluetooth subscriber, and since when. */
  get subscription(): SubscriptionInfo {
    return { state: this.#subscription, since: this.#subscriptionSince, confirmed: this.subscriberConfirmed };
  }

  /** Calls `listener` on every subscription event; returns an unsubscribe function. */
  onStatus(listener: (status: BluetoothProxyStatus) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  /** Subscription events (lost, resubscribing, resubscribed...) as a stream; ends with the session or detach(). */
  status(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<BluetoothProxyStatus> {
    const queue: AsyncQueue<BluetoothProxyStatus> = new AsyncQueue(options, () => this.#statusQueues.delete(queue));
    if (this.#detached) queue.end();
    else this.#statusQueues.add(queue);
    endOnAbort(queue, options.signal);
    return queue;
  }

  /** Names of the proxy's features. */
  featureNames(): string[] {
    return featureNames(this.features);
  }

  /** True when the proxy has every bit of `feature`. */
  hasFeature(feature: number): boolean {
    return (this.features & feature) === feature;
  }

  /** Throws FeatureMissingError unless the proxy has `feature`. */
  requireFeature(feature: number, what: string): void {
    if (!this.hasFeature(feature)) throw new FeatureMissingError(this.label, what);
  }

  /** Last address type heard for `address` in advertisements. */
  addressTypeOf(address: number): number | undefined {
    return this.#addressTypes.get(address);
  }

  /** Calls `listener` for every advertisement (synchronously, on the hot path); returns an unsubscribe function. */
  onAdvertisement(listener: (ad: Advertisement) => void): () => void {
    this.#adListeners.add(listener);
    return () => this.#adListeners.delete(listener);
  }

  /** Advertisements as a stream with a bounded queue; the overflow policy is the caller's choice. */
  advertisements(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<Advertisement> {
    const queue: AsyncQueue<Advertisement> = new AsyncQueue(
      {
        ...options,
        onDrop: (n) => {
          this.droppedAdvertisements++;
          options.onDrop?.(n);
        },
      },
      () => off(),
    );
    // A queue that ended (abort, 'error' overflow) is never returned by for-await: drop the listener on the next report.
    const off = this.onAdvertisement((ad) => {
      queue.push(ad);
      if (queue.done) off();
    });
    endOnAbort(queue, options.signal);
    void this.api.closed().then(() => queue.end());
    return queue;
  }

  /** Calls `listener` for every connection-state report of any peripheral (peer-initiated drops included). */
  onConnectionState(listener: (state: ConnectionStateChange) => void): () => void {
    this.#connectionStateListeners.add(listener);
    return () => this.#connectionStateListeners.delete(listener);
  }

  /** Connection-state reports as a stream (every BluetoothDeviceConnectionResponse, with the reason name). */
  connectionStates(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<ConnectionStateChange> {
    const queue: AsyncQueue<ConnectionStateChange> = new AsyncQueue(options, () => off());
    const off = this.onConnectionState((state) => queue.push(state));
    endOnAbort(queue, options.signal);
    void this.api.closed().then(() => queue.end());
    return queue;
  }

  /** Calls `listener` on every slot update; returns an unsubscribe function. */
  onSlots(listener: (slots: SlotState) => void): () => void {
    this.#slotListeners.add(listener);
    return () => this.#slotListeners.delete(listener);
  }

  /** Slot updates as a stream, starting with the current state. */
  slotUpdates(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<SlotState> {
    const queue: AsyncQueue<SlotState> = new AsyncQueue(options, () => this.#slotQueues.delete(queue));
    if (this.#slots !== undefined) queue.push(this.#slots);
    this.#slotQueues.add(queue);
    endOnAbort(queue, options.signal);
    void this.api.closed().then(() => queue.end());
    return queue;
  }

  /** Asks the proxy for its slot state (answered to us even when we are not the subscriber). */
  async refreshSlots(options: CallOptions = {}): Promise<SlotState> {
    const reply = await this.api.request(
      SubscribeBluetoothConnectionsFreeRequest,
      {},
      BluetoothConnectionsFreeResponse,
      () => true,
      options,
    );
    return toSlots(reply, this.#ownAddress);
  }

  /**
   * A fresh slot report (message 80, answered to whoever asks) behind the subscriber probe: `subscriber` is true
   * when the probe's answer, which the firmware sends to its subscriber only, arrived before the slot answer (the
   * watchdog's test, spec §6.3). For decisions that must not act for someone else: on newest-wins firmware
   * (2026.7+) a client that took the subscription over leaves our slot list frozen and looking current.
   */
  async probeSubscriber(options: CallOptions = {}): Promise<{ subscriber: boolean; slots: SlotState }> {
    this.requireFeature(BluetoothProxyFeature.ACTIVE_CONNECTIONS, 'the subscriber probe');
    options.signal?.throwIfAborted();
    const answersBefore = this.#probeAnswers;
    this.#sendProbe();
    const slots = await this.refreshSlots(options);
    return { subscriber: this.#probeAnswers !== answersBefore, slots };
  }

  /** Calls `listener` on every scanner state report. */
  onScannerState(listener: (state: ScannerState) => void): () => void {
    this.#scannerListeners.add(listener);
    return () => this.#scannerListeners.delete(listener);
  }

  /** Switches the scanner between active and passive; resolves when it runs in the new mode. */
  async setScannerMode(mode: 'active' | 'passive', options: CallOptions = {}): Promise<ScannerState> {
    this.requireFeature(BluetoothProxyFeature.FEATURE_STATE_AND_MODE, 'scanner mode switching');
    this.#requireSubscriber();
    if (this.#scanner?.mode === mode && this.#scanner.state === 'running') return this.#scanner;
    return withDeadline(
      `Scanner mode ${mode} on ${this.label}`,
      options,
      SCANNER_MODE_TIMEOUT_MS,
      (signal) =>
        new Promise<ScannerState>((resolve, reject) => {
          const off = this.onScannerState((state) => {
            if (state.mode !== mode || state.state !== 'running') return;
            off();
            signal.removeEventListener('abort', onAbort);
            resolve(state);
          });
          const onAbort = (): void => {
            off();
            reject(signal.reason);
          };
          signal.addEventListener('abort', onAbort, { once: true });
          this.api.send(BluetoothScannerSetModeRequest, { mode: mode === 'active' ? 1 : 0 });
        }),
    );
  }

  /**
   * Opens a BLE link. Uses the v3 "with cache" request when `cachedServices` are given, else
   * "without cache" (the proxy discovers services). On any failure, timeout or abort the slot is
   * released (DISCONNECT sent, confirmation awaited, bounded) before the error is thrown.
   */
  async connect(address: number, options: BleConnectOptions = {}): Promise<BleConnection> {
    this.requireFeature(GATT_CONNECTION_FEATURES, 'GATT connections');
    options.signal?.throwIfAborted();
    this.#requireSubscriber();
    const mac = formatMac(address);
    const busy = (): InvalidArgumentError => new InvalidArgumentError(`${mac} is already connected or connecting via ${this.label}`);
    if (this.#links.has(address) || this.#pendingConnects.has(address)) throw busy();
    const refused = this.connectGuard?.(address);
    if (refused !== undefined) throw refused;
    const withCache = options.cachedServices !== undefined;
    const addressType = options.addressType ?? this.#addressTypes.get(address) ?? 0;
    const cleanupTimeout = options.cleanupTimeout ?? BLE_CONNECT_CLEANUP_TIMEOUT_MS;
    let pending: PendingConnect | undefined;
    let created: BleConnection | undefined;
    let answered = false;
    // What a 0x100 means depends on how long the attempt took and on the slots when the answer came (failure-table.ts).
    let sentAt = 0;
    let elapsedMs: number | undefined;
    let slotsAtAnswer: SlotState | undefined;
    try {
      const reply = await withDeadline(`BLE connect to ${mac} via ${this.label}`, options, BLE_CONNECT_TIMEOUT_MS, async (signal) => {
        // The proxy ignores a connect while it still tears down an earlier link to the address, whose late
        // second connected=false would also be taken for the answer: wait until its slot is free.
        await this.slotReleased(address, signal);
        if (this.#links.has(address) || this.#pendingConnects.has(address)) throw busy();
        return new Promise<BluetoothDeviceConnectionResponse>((resolve, reject) => {
          const onAbort = (): void => reject(signal.reason);
          signal.addEventListener('abort', onAbort, { once: true });
          pending = {
            sawSlotsUpdate: false,
            createLink: (m) => {
              const mtu = withCache ? (options.cachedMtu ?? DEFAULT_MTU) : m.mtu || DEFAULT_MTU;
              created = new BleConnection(this, address, mtu, options.cachedServices, withCache);
              return created;
            },
            resolve: (m) => {
              elapsedMs = performance.now() - sentAt;
              slotsAtAnswer = this.#slots;
              signal.removeEventListener('abort', onAbort);
              resolve(m);
            },
            reject: (e) => {
              signal.removeEventListener('abort', onAbort);
              reject(e);
            },
          };
          this.#pendingConnects.set(address, pending);
          sentAt = performance.now();
          try {
            this.api.send(BluetoothDeviceRequest, {
              address,
              requestType: withCache
                ? BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE
                : BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
              hasAddressType: true,
              addressType,
            });
          } catch (error) {
            // Nothing went out (the session closed, or a relay sharing it refused the connect): nothing to cancel.
            this.#pendingConnects.delete(address);
            pending = undefined;
            signal.removeEventListener('abort', onAbort);
            reject(error);
          }
        });
      });
      answered = true;
      if (!reply.connected) {
        // After a failed attempt the proxy sends a second connected=false and only then frees the slot (§6.7).
        this.#markReleasing(address);
        await withDeadline(`Slot release of ${mac}`, { timeout: cleanupTimeout, signal: options.signal }, undefined, (signal) =>
          this.slotReleased(address, signal),
        ).catch(() => options.signal?.throwIfAborted());
        const immediate = reply.error === 0;
        const described = immediate
          ? { name: 'NO_FREE_SLOT', description: 'the proxy has no free connection slot' }
          : describeConnectionError(reply.error);
        const failure = connectFailureClass(reply.error, { elapsedMs, slots: slotsAtAnswer, address });
        const after = elapsedMs === undefined ? '' : ` after ${Math.round(elapsedMs)} ms`;
        throw new BleConnectError(
          `Connecting to ${mac} via ${this.label} failed${after}: ${described.name} (${reply.error}) — ${described.description}`,
          address,
          reply.error,
          described.name,
          failure,
          { elapsedMs },
        );
      }
      return created!;
    } catch (error) {
      if (pending !== undefined && this.#pendingConnects.get(address) === pending) this.#pendingConnects.delete(address);
      // A caller who gave up (their signal) gets the rejection at once: the DISCONNECT goes out synchronously and the
      // slot's release is tracked, so the next connect to the address waits for it. Our own deadline waits for it here.
      const gaveUp = options.signal?.aborted === true;
      if (this.#subscription !== 'subscribed') {
        // No answer would reach us any more; the firmware tears down a subscriber-less proxy's links itself.
        created?.handleLinkDown(0, 'Bluetooth subscription given up');
      } else if (created !== undefined && !answered) {
        // connected=true raced with our abort or deadline: the link exists, so close it and free its slot.
        if (gaveUp) created.release();
        else await created.disconnect({ timeout: cleanupTimeout }).catch(() => {});
      } else if (pending !== undefined && !answered && !this.api.isClosed) {
        // Timed out or aborted after the request went out: cancel the attempt (and, on a timeout, wait for the slot).
        if (gaveUp) this.#releaseSlotNow(address);
        else await this.#releaseSlot(address, cleanupTimeout);
      }
      if (!this.subscriberConfirmed && error instanceof Error && error.name === 'TimeoutError') {
        throw new NotSubscriberError(this.label);
      }
      throw error;
    }
  }

  /** Deletes the bond with `address` (works without a link). Accepts the firmware's 85 answer or 86. */
  async unpair(address: number, options: CallOptions = {}): Promise<void> {
    this.requireFeature(BluetoothProxyFeature.PAIRING, 'unpairing');
    const result = await this.#deviceOp(address, 'unpair', BluetoothDeviceRequestType.UNPAIR, options);
    if (!result.success) throw new PairingError(`Unpairing ${formatMac(address)} failed (error ${result.error})`, address, result.error);
  }

  /** Clears the proxy's stored GATT cache for `address` (works without a link). */
  async clearCache(address: number, options: CallOptions = {}): Promise<void> {
    this.requireFeature(BluetoothProxyFeature.CACHE_CLEARING, 'GATT cache clearing');
    const result = await this.#deviceOp(address, 'clear', BluetoothDeviceRequestType.CLEAR_CACHE, options);
    if (!result.success) {
      throw new BleConnectError(
        `Clearing the proxy's GATT cache for ${formatMac(address)} failed (error ${result.error})`,
        address,
        result.error,
        'CLEAR_CACHE_FAILED',
        'other',
      );
    }
  }

  /** Sends DISCONNECT for `address` even without a link of ours (releases orphan slots); waits for the confirmation. */
  async releaseSlot(address: number, options: CallOptions = {}): Promise<void> {
    options.signal?.throwIfAborted();
    this.#requireSubscriber();
    const link = this.#links.get(address);
    if (link !== undefined) return link.disconnect(options);
    await this.#releaseSlot(address, options.timeout ?? BLE_CONNECT_CLEANUP_TIMEOUT_MS, options.signal);
    options.signal?.throwIfAborted();
  }

  /**
   * Gives up the Bluetooth subscription but keeps this client (and the API session) for a later
   * resubscribe(): closes every link first, since the firmware drops the links of a proxy that has no
   * subscriber anyway. Until then Bluetooth requests fail at once with NotSubscriberError, because
   * the firmware would send their answers to nobody.
   */
  async unsubscribe(options: CallOptions = {}): Promise<void> {
    if (this.#subscription === 'unsubscribed') return;
    this.#watchdog?.stop();
    await Promise.allSettled([...this.#links.values()].map((link) => link.disconnect(options)));
    if (!this.api.isClosed) {
      try {
        this.api.send(UnsubscribeBluetoothLEAdvertisementsRequest, {});
      } catch {
        // session already gone
      }
    }
    this.#setSubscription('unsubscribed');
    this.#failPending(new NotSubscriberError(this.label, 'unsubscribed'));
    this.#emitStatus({ type: 'unsubscribed' });
  }

  /** Subscribes again after unsubscribe(); throws NotSubscriberError when another client holds the subscription. */
  async resubscribe(options: AttachOptions = {}): Promise<void> {
    if (this.#detached) throw new ConnectionClosedError(`Bluetooth client for ${this.label} is detached`);
    if (this.#subscription === 'subscribed') return;
    this.#watchdog?.stop();
    this.subscriberConfirmed = false;
    await this.#subscribe(options, 'again');
    this.#setSubscription('subscribed');
    this.#emitStatus({ type: 'subscribed' });
    this.#watchdog?.start();
  }

  /** Closes every link and gives up the Bluetooth subscription (the API session stays open); this client is done. */
  async detach(options: CallOptions = {}): Promise<void> {
    await this.unsubscribe(options);
    this.#detach();
  }

  /** @internal */
  linkClosed(link: BleConnection): void {
    if (this.#links.get(link.address) === link) this.#links.delete(link.address);
    this.#markReleasing(link.address);
  }

  /**
   * @internal Resolves once the proxy has freed the slot of an ended link or attempt to `address`, i.e. a
   * slot report no longer lists it (the firmware frees it after both of its connected=false replies, §6.7).
   */
  slotReleased(address: number, signal?: AbortSignal): Promise<void> {
    const waiters = this.#releasing.get(address);
    if (waiters === undefined) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        waiters.delete(done);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      waiters.add(done);
    });
  }

  async #releaseSlot(address: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    try {
      await withDeadline(`Slot release of ${formatMac(address)}`, { timeout: timeoutMs, signal }, undefined, async (s) => {
        await this.api.request(
          BluetoothDeviceRequest,
          { address, requestType: BluetoothDeviceRequestType.DISCONNECT },
          BluetoothDeviceConnectionResponse,
          (m) => m.address === address && !m.connected,
          { signal: s },
        );
        this.#markReleasing(address);
        await this.slotReleased(address, s);
      });
    } catch {
      // Best effort: the proxy may be gone, in which case it dropped the slot itself.
    }
  }

  /** Sends DISCONNECT for `address` without waiting for the answer; the slot's release is tracked as for any ended link. */
  #releaseSlotNow(address: number): void {
    try {
      this.api.send(BluetoothDeviceRequest, { address, requestType: BluetoothDeviceRequestType.DISCONNECT });
    } catch {
      return; // session gone: the proxy drops the slot itself
    }
    this.#markReleasing(address);
  }

  /** A link or attempt to `address` ended: until a slot report stops listing the address, the proxy is still tearing it down. */
  #markReleasing(address: number): void {
    if (this.#detached || this.#releasing.has(address)) return;
    if (this.#slots?.allocated.includes(address)) this.#releasing.set(address, new Set());
  }

  /** The firmware answers Bluetooth requests only to its subscriber: fail at once instead of waiting out a timeout. */
  #requireSubscriber(): void {
    if (this.#detached) throw new ConnectionClosedError(`Bluetooth client for ${this.label} is detached`);
    if (this.#subscription === 'unsubscribed') throw new NotSubscriberError(this.label, 'unsubscribed');
    if (this.#subscription === 'lost') throw new SubscriptionLostError(this.label, this.#lostBy);
  }

  #lostBy: SubscriptionLossSign = 'probe';

  #setSubscription(state: SubscriptionState): void {
    if (this.#subscription === state) return;
    this.#subscription = state;
    this.#subscriptionSince = Date.now();
  }

  /** Rejects pending connects and device operations: their answers will not come to this session. */
  #failPending(error: Error): void {
    for (const pending of this.#pendingConnects.values()) pending.reject(error);
    this.#pendingConnects.clear();
    for (const pending of this.#pendingDeviceOps.values()) pending.reject(error);
    this.#pendingDeviceOps.clear();
  }

  #deviceOp(
    address: number,
    kind: 'unpair' | 'clear',
    requestType: BluetoothDeviceRequestType,
    options: CallOptions,
  ): Promise<{ success: boolean; error: number }> {
    this.#requireSubscriber();
    const key = `${kind}:${address}`;
    if (this.#pendingDeviceOps.has(key)) throw new InvalidArgumentError(`A ${kind} of ${formatMac(address)} is already running`);
    return withDeadline(
      `${kind === 'unpair' ? 'Unpair' : 'Clear cache'} of ${formatMac(address)} via ${this.label}`,
      options,
      BLE_OPERATION_TIMEOUT_MS,
      (signal) =>
        pendingReply<{ success: boolean; error: number }>(
          signal,
          (settle) => {
            this.#pendingDeviceOps.set(key, settle);
            this.api.send(BluetoothDeviceRequest, { address, requestType });
          },
          () => this.#pendingDeviceOps.delete(key),
        ),
    );
  }

  /**
   * Sends the subscribe and proves it took: by the scanner state (FEATURE_STATE_AND_MODE) and/or the
   * subscriber probe, whose answer precedes the slot reply only for the subscriber ('attach' probes only
   * without a scanner state, 'again' and 'recover' always). After a loss ('recover') a proxy that has
   * neither must send an advertisement within the check time: nothing is taken on trust there.
   * Throws NotSubscriberError when another client keeps the subscription.
   */
  async #subscribe(options: AttachOptions, how: 'attach' | 'again' | 'recover'): Promise<void> {
    const expectsScannerState = this.hasFeature(BluetoothProxyFeature.FEATURE_STATE_AND_MODE);
    const probe =
      options.probe !== false && this.hasFeature(BluetoothProxyFeature.ACTIVE_CONNECTIONS) && (how !== 'attach' || !expectsScannerState);
    const proof = expectsScannerState
      ? (listener: () => void) => this.onScannerState(listener)
      : how === 'recover' && !probe
        ? (listener: () => void) => this.onAdvertisement(listener)
        : undefined;
    const checkMs = options.subscriberCheckTimeout ?? SUBSCRIBER_CHECK_TIMEOUT_MS;
    const done = new AbortController();
    const signal = options.signal === undefined ? done.signal : AbortSignal.any([options.signal, done.signal]);
    const confirmed =
      proof === undefined
        ? undefined
        : withDeadline(
            `Bluetooth subscription on ${this.label}`,
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
      this.api.send(SubscribeBluetoothLEAdvertisementsRequest, { flags: 1 });
      if (this.hasFeature(BluetoothProxyFeature.ACTIVE_CONNECTIONS)) {
        const answersBefore = this.#probeAnswers;
        if (probe) this.#sendProbe();
        this.#applySlots(await this.refreshSlots(options));
        if (probe && this.#probeAnswers === answersBefore) throw new NotSubscriberError(this.label);
      }
      if (confirmed !== undefined) {
        try {
          await confirmed;
        } catch (error) {
          if (options.signal?.aborted) throw error;
          throw new NotSubscriberError(this.label);
        }
      }
    } finally {
      this.#subscribing--;
      done.abort();
    }
  }

  /** What the watchdog may see and do (a narrow view, so the two modules do not knot together). */
  #watchdogHost(): WatchdogHost {
    const proxy = this;
    return {
      api: this.api,
      get heardCount() {
        return proxy.#heardCount;
      },
      get probeAnswers() {
        return proxy.#probeAnswers;
      },
      canProbe: this.hasFeature(BluetoothProxyFeature.ACTIVE_CONNECTIONS) && this.#attachOptions.probe !== false,
      canLoseSubscription: mayLoseSubscription(this.api.deviceInfo.esphomeVersion),
      get subscribed() {
        return proxy.#subscription === 'subscribed';
      },
      sendProbe: () => this.#sendProbe(),
      lost: (detectedBy) => this.#onLost(detectedBy),
      resubscribe: async (signal) => {
        if (this.#subscription !== 'lost') throw new NotSubscriberError(this.label, 'unsubscribed');
        this.subscriberConfirmed = false;
        await this.#subscribe({ ...this.#attachOptions, signal }, 'recover');
      },
      regained: () => this.#setSubscription('subscribed'),
      emit: (status) => this.#emitStatus(status),
    };
  }

  #onLost(detectedBy: SubscriptionLossSign): void {
    this.#lostBy = detectedBy;
    this.subscriberConfirmed = false;
    this.#setSubscription('lost');
    const error = new SubscriptionLostError(this.label, detectedBy);
    // The firmware keeps our links and attempts going and reports them to the new subscriber: give their slots back.
    const ours = [...this.#links.keys(), ...this.#pendingConnects.keys()];
    this.#failPending(error);
    for (const address of ours) {
      try {
        this.api.send(BluetoothDeviceRequest, { address, requestType: BluetoothDeviceRequestType.DISCONNECT });
      } catch {
        // session gone
      }
    }
    for (const link of [...this.#links.values()]) link.handleLinkDown(0, 'Bluetooth subscription lost', error);
    for (const waiters of this.#releasing.values()) for (const done of waiters) done();
    this.#releasing.clear();
    this.#emitStatus({ type: 'subscriptionLost', code: 'ESPAPI_ERR_SUBSCRIPTION_LOST', detectedBy, at: Date.now(), error });
  }

  #emitStatus(status: BluetoothProxyStatus): void {
    for (const listener of this.#statusListeners) listener(status);
    for (const queue of this.#statusQueues) queue.push(status);
  }

  /** Any message the firmware sends to its subscriber only: we are (still, or again) the subscriber. */
  #heard(): void {
    this.subscriberConfirmed = true;
    this.#heardCount++;
    // So a subscription counted lost is ours again: the loss was a quiet radio read as a takeover, or the
    // proof of our subscribe came late. A subscribe in flight is judged by its own proof instead.
    if (this.#subscription === 'lost' && this.#subscribing === 0) this.#watchdog?.regain();
  }

  #listen(): void {
    const api = this.api;
    const on = this.#unsubscribers;
    on.push(
      api.onRaw(RAW_ADVERTISEMENTS_MESSAGE_ID, (payload) => {
        this.#heard();
        if (this.#adListeners.size === 0) {
          decodeRawAdvertisements(payload, (address, _rssi, addressType) => this.#addressTypes.set(address, addressType));
          return;
        }
        const now = Date.now();
        // One copy per batch: the payload aliases the socket's reusable read buffer, which the advertisements'
        // `raw` views must not see overwritten; a slab copy avoids an ArrayBuffer per batch (~1 µs each).
        const owned = this.#adBytes.copy(payload);
        decodeRawAdvertisements(owned, (address, rssi, addressType, batch, start, end) => {
          this.#addressTypes.set(address, addressType);
          const ad = parseRawAdvertisement(address, rssi, addressType, batch, now, start, end);
          for (const listener of this.#adListeners) listener(ad);
        });
      }),
      api.on(BluetoothLEAdvertisementResponse, (message) => {
        this.#heard();
        this.#addressTypes.set(message.address, message.addressType);
        const ad = fromLegacyAdvertisement(message, Date.now());
        for (const listener of this.#adListeners) listener(ad);
      }),
      api.on(BluetoothScannerStateResponse, (message) => {
        this.#heard();
        const state: ScannerState = {
          state: SCANNER_STATES[message.state] ?? 'idle',
          mode: SCANNER_MODES[message.mode] ?? 'passive',
          configuredMode: SCANNER_MODES[message.configuredMode] ?? 'passive',
        };
        this.#scanner = state;
        for (const listener of this.#scannerListeners) listener(state);
      }),
      api.on(BluetoothConnectionsFreeResponse, (message) => {
        this.#applySlots(toSlots(message, this.#ownAddress));
        for (const pending of this.#pendingConnects.values()) pending.sawSlotsUpdate = true;
      }),
      api.on(BluetoothDeviceConnectionResponse, (message) => this.#onConnectionResponse(message)),
      this.#route(BluetoothGATTGetServicesResponse, 71),
      this.#route(BluetoothGATTGetServicesDoneResponse, 72),
      this.#route(BluetoothGATTReadResponse, 74),
      this.#route(BluetoothGATTWriteResponse, 83),
      this.#route(BluetoothGATTNotifyResponse, 84),
      this.#route(BluetoothGATTNotifyDataResponse, 79),
      this.#route(BluetoothGATTErrorResponse, 82),
      this.#route(BluetoothSetConnectionParamsResponse, 146),
      api.on(BluetoothDevicePairingResponse, (message) => {
        this.#heard();
        // Upstream firmware answers UNPAIR with message 85 (paired=true means the bond was removed).
        if (this.#settleDeviceOp(`unpair:${message.address}`, { success: message.paired, error: message.error })) return;
        this.#links.get(message.address)?.handleMessage(85, message);
      }),
      api.on(BluetoothDeviceUnpairingResponse, (message) => {
        this.#heard();
        this.#settleDeviceOp(`unpair:${message.address}`, { success: message.success, error: message.error });
      }),
      api.on(BluetoothDeviceClearCacheResponse, (message) => {
        this.#heard();
        this.#settleDeviceOp(`clear:${message.address}`, { success: message.success, error: message.error });
      }),
    );
    void api.closed().then(() => this.#detach());
  }

  #route<T extends { address: number }>(type: import('@protobuf-ts/runtime').MessageType<T>, id: number): () => void {
    return this.api.on(type, (message) => {
      this.#heard();
      this.#links.get(message.address)?.handleMessage(id, message as never);
    });
  }

  /** Sends the subscriber probe (see SUBSCRIPTION_PROBE_ADDRESS). */
  #sendProbe(): void {
    this.api.send(BluetoothDeviceRequest, { address: SUBSCRIPTION_PROBE_ADDRESS, requestType: BluetoothDeviceRequestType.DISCONNECT });
  }

  #onConnectionResponse(message: BluetoothDeviceConnectionResponse): void {
    if (message.address === SUBSCRIPTION_PROBE_ADDRESS) {
      this.#probeAnswers++;
      this.#heard();
      return;
    }
    this.#heard();
    if (this.#connectionStateListeners.size > 0) {
      const state: ConnectionStateChange = {
        address: message.address,
        mac: formatMac(message.address),
        connected: message.connected,
        mtu: message.mtu,
        error: message.error,
        reasonName: message.connected || message.error === 0 ? 'OK' : describeConnectionError(message.error).name,
      };
      for (const listener of this.#connectionStateListeners) listener(state);
    }
    const pending = this.#pendingConnects.get(message.address);
    if (pending !== undefined) {
      this.#pendingConnects.delete(message.address);
      if (message.connected) this.#links.set(message.address, pending.createLink(message));
      pending.resolve(message);
      return;
    }
    if (!message.connected) this.#links.get(message.address)?.handleLinkDown(message.error);
  }

  #applySlots(slots: SlotState): void {
    this.#slots = slots;
    for (const [address, waiters] of this.#releasing) {
      if (slots.allocated.includes(address)) continue;
      this.#releasing.delete(address);
      for (const done of waiters) done();
    }
    for (const listener of this.#slotListeners) listener(slots);
    for (const queue of this.#slotQueues) {
      // A stream ended by its signal is not returned by for-await: forget it here.
      if (queue.done) this.#slotQueues.delete(queue);
      else queue.push(slots);
    }
  }

  /** Settles a pending unpair / clear-cache; false when none was waiting. */
  #settleDeviceOp(key: string, result: { success: boolean; error: number }): boolean {
    const pending = this.#pendingDeviceOps.get(key);
    if (pending === undefined) return false;
    this.#pendingDeviceOps.delete(key);
    pending.resolve(result);
    return true;
  }

  #detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#leftBehind = [...new Set([...this.#links.keys(), ...this.#pendingConnects.keys(), ...this.#releasing.keys()])];
    this.#watchdog?.stop();
    for (const queue of this.#statusQueues) queue.end();
    this.#statusQueues.clear();
    for (const off of this.#unsubscribers) off();
    this.#unsubscribers.length = 0;
    for (const link of [...this.#links.values()]) link.handleLinkDown(0, 'API session closed');
    const closedError = new ConnectionClosedError(
      this.api.isClosed ? `API session to ${this.label} closed` : `Bluetooth client for ${this.label} detached`,
    );
    this.#failPending(closedError);
    for (const queue of this.#slotQueues) queue.end();
    this.#slotQueues.clear();
    for (const waiters of this.#releasing.values()) for (const done of waiters) done();
    this.#releasing.clear();
  }
}

/** A slot report as this library reads it: empty entries (0) and a relay's full marker (the node's own address) left out. */
function toSlots(message: BluetoothConnectionsFreeResponse, own: number | undefined): SlotState {
  return withoutOwnAddress({ free: message.free, limit: message.limit, allocated: message.allocated.filter((a) => a !== 0) }, own);
}
