import type { ApiConnection } from '../connection/connection.js';
import { BleConnectError, ConnectionClosedError, FeatureMissingError, PairingError } from '../errors.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothScannerSetModeRequest,
  SubscribeBluetoothConnectionsFreeRequest,
} from '../gen/api_pb.js';
import { type CallOptions, withDeadline } from '../util/abort.js';
import type { QueueOptions } from '../util/async-queue.js';
import { formatMac } from './address.js';
import type { Advertisement } from './advertisement.js';
import type { BleConnection, LinkHost } from './ble-connection.js';
import { type BleConnectOptions, ConnectAttempts, type ConnectHost } from './connect-attempts.js';
import { DeviceOps } from './device-ops.js';
import { BluetoothProxyFeature, featureNames, GATT_CONNECTION_FEATURES, resolveFeatureFlags } from './features.js';
import { ownBluetoothAddress } from './own-address.js';
import { listenToProxy } from './proxy-inbox.js';
import { type ConnectionStateChange, ProxyStreams, type ScannerState } from './proxy-streams.js';
import { type SlotState, SlotTracker } from './slot-tracker.js';
import { type AttachOptions, Subscription, type SubscriptionHost, type SubscriptionInfo } from './subscription.js';
import type { BluetoothProxyStatus } from './subscription-watchdog.js';
import { BLE_CONNECT_CLEANUP_TIMEOUT_MS, SCANNER_MODE_TIMEOUT_MS } from './timeouts.js';

export type { BleConnectOptions } from './connect-attempts.js';
export type { ConnectionStateChange, ScannerState } from './proxy-streams.js';
export type { SlotState } from './slot-tracker.js';
export { type AttachOptions, SUBSCRIPTION_PROBE_ADDRESS, type SubscriptionInfo, type SubscriptionState } from './subscription.js';
export type { BluetoothProxyStatus, ResubscribePolicy, WatchdogOptions } from './subscription-watchdog.js';

/**
 * Bluetooth client for one proxy over one API session: advertisements, scanner, connection slots,
 * BLE links with GATT. The session becomes the proxy's single Bluetooth subscriber. A thin owner: the
 * subscription (subscription.ts), the slots (slot-tracker.ts), the streams (proxy-streams.ts), the connect
 * path (connect-attempts.ts) and the device requests (device-ops.ts) each live in their own module.
 */
export class BluetoothProxy implements LinkHost {
  readonly api: ApiConnection;
  /** Feature bitmask (BluetoothProxyFeature). */
  readonly features: number;
  /** Advertisements dropped by slow consumers of advertisements(). */
  droppedAdvertisements = 0;
  /** Consulted before every connect; an error it returns is thrown instead (a relay sharing this session refuses devices its clients hold). */
  connectGuard: ((address: number) => Error | undefined) | undefined;
  readonly #links = new Map<number, BleConnection>();
  readonly #slots: SlotTracker;
  readonly #streams = new ProxyStreams();
  readonly #attempts: ConnectAttempts;
  readonly #deviceOps: DeviceOps;
  #subscription!: Subscription;
  readonly #unsubscribers: Array<() => void> = [];
  #detached = false;
  #leftBehind: readonly number[] = [];

  private constructor(api: ApiConnection) {
    this.api = api;
    const info = api.deviceInfo;
    this.features = resolveFeatureFlags({
      capabilitiesFlags: info.bluetoothProxyFeatureFlags,
      deviceInfoFlags: info.bluetoothProxyFeatureFlags,
      legacyVersion: info.legacyBluetoothProxyVersion,
    });
    this.#slots = new SlotTracker(ownBluetoothAddress(info));
    this.#deviceOps = new DeviceOps(api);
    this.#attempts = new ConnectAttempts(this.#connectHost());
  }

  /**
   * Makes `api` the proxy's Bluetooth subscriber: subscribes to raw advertisements (legacy fallback),
   * scanner state and slot updates. Throws FeatureMissingError for non-proxies and NotSubscriberError
   * when a modern proxy stays silent because another client holds its subscription.
   */
  static async attach(api: ApiConnection, options: AttachOptions = {}): Promise<BluetoothProxy> {
    const proxy = new BluetoothProxy(api);
    if (proxy.features === 0) throw new FeatureMissingError(api.label, 'Bluetooth proxying (not a Bluetooth proxy)');
    proxy.#subscription = new Subscription(proxy.#subscriptionHost(), options);
    proxy.#listen();
    try {
      await proxy.#subscription.attach();
    } catch (error) {
      proxy.#detach();
      throw error;
    }
    return proxy;
  }

  /** Proxy name and address for messages. */
  get label(): string {
    return this.api.label;
  }

  /** Current slot state (undefined before the first report). */
  get slots(): SlotState | undefined {
    return this.#slots.current;
  }

  /** Current scanner state (proxies with FEATURE_STATE_AND_MODE). */
  get scannerState(): ScannerState | undefined {
    return this.#streams.scanner;
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

  /** True once the proxy proved it sends us Bluetooth data (scanner state or advertisements arrived). */
  get subscriberConfirmed(): boolean {
    return this.#subscription.confirmed;
  }

  /** Whether this session is the proxy's Bluetooth subscriber, and since when. */
  get subscription(): SubscriptionInfo {
    return this.#subscription.info;
  }

  /** Calls `listener` on every subscription event; returns an unsubscribe function. */
  onStatus(listener: (status: BluetoothProxyStatus) => void): () => void {
    return this.#subscription.status.listen(listener);
  }

  /** Subscription events (lost, resubscribing, resubscribed...) as a stream; ends with the session or detach(). */
  status(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<BluetoothProxyStatus> {
    return this.#subscription.status.stream(options);
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
    return this.#streams.addressTypeOf(address);
  }

  /** Calls `listener` for every advertisement (synchronously, on the hot path); returns an unsubscribe function. */
  onAdvertisement(listener: (ad: Advertisement) => void): () => void {
    return this.#streams.advertisements.listen(listener);
  }

  /** Advertisements as a stream with a bounded queue; the overflow policy is the caller's choice. */
  advertisements(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<Advertisement> {
    return this.#streams.advertisementStream(options, () => this.droppedAdvertisements++);
  }

  /** Calls `listener` for every connection-state report of any peripheral (peer-initiated drops included). */
  onConnectionState(listener: (state: ConnectionStateChange) => void): () => void {
    return this.#streams.connectionStates.listen(listener);
  }

  /** Connection-state reports as a stream (every BluetoothDeviceConnectionResponse, with the reason name). */
  connectionStates(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<ConnectionStateChange> {
    return this.#streams.connectionStates.stream(options);
  }

  /** Calls `listener` on every slot update; returns an unsubscribe function. */
  onSlots(listener: (slots: SlotState) => void): () => void {
    return this.#slots.updates.listen(listener);
  }

  /** Slot updates as a stream, starting with the current state. */
  slotUpdates(options: { signal?: AbortSignal } & QueueOptions = {}): AsyncIterableIterator<SlotState> {
    return this.#slots.stream(options);
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
    return this.#slots.read(reply);
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
    const answersBefore = this.#subscription.probeAnswers;
    this.#subscription.sendProbe();
    const slots = await this.refreshSlots(options);
    return { subscriber: this.#subscription.probeAnswers !== answersBefore, slots };
  }

  /** Calls `listener` on every scanner state report. */
  onScannerState(listener: (state: ScannerState) => void): () => void {
    return this.#streams.scannerStates.listen(listener);
  }

  /** Switches the scanner between active and passive; resolves when it runs in the new mode. */
  async setScannerMode(mode: 'active' | 'passive', options: CallOptions = {}): Promise<ScannerState> {
    this.requireFeature(BluetoothProxyFeature.FEATURE_STATE_AND_MODE, 'scanner mode switching');
    this.#requireSubscriber();
    const current = this.#streams.scanner;
    if (current?.mode === mode && current.state === 'running') return current;
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
    return this.#attempts.connect(address, options);
  }

  /** Deletes the bond with `address` (works without a link). Accepts the firmware's 85 answer or 86. */
  async unpair(address: number, options: CallOptions = {}): Promise<void> {
    this.requireFeature(BluetoothProxyFeature.PAIRING, 'unpairing');
    this.#requireSubscriber();
    const result = await this.#deviceOps.run(address, 'unpair', this.label, options);
    if (!result.success) throw new PairingError(`Unpairing ${formatMac(address)} failed (error ${result.error})`, address, result.error);
  }

  /** Clears the proxy's stored GATT cache for `address` (works without a link). */
  async clearCache(address: number, options: CallOptions = {}): Promise<void> {
    this.requireFeature(BluetoothProxyFeature.CACHE_CLEARING, 'GATT cache clearing');
    this.#requireSubscriber();
    const result = await this.#deviceOps.run(address, 'clear', this.label, options);
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
    await this.#attempts.releaseSlot(address, options.timeout ?? BLE_CONNECT_CLEANUP_TIMEOUT_MS, options.signal);
    options.signal?.throwIfAborted();
  }

  /**
   * Gives up the Bluetooth subscription but keeps this client (and the API session) for a later
   * resubscribe(): closes every link first, since the firmware drops the links of a proxy that has no
   * subscriber anyway. Until then Bluetooth requests fail at once with NotSubscriberError, because
   * the firmware would send their answers to nobody.
   */
  async unsubscribe(options: CallOptions = {}): Promise<void> {
    await this.#subscription.unsubscribe(
      () => Promise.allSettled([...this.#links.values()].map((link) => link.disconnect(options))),
      (error) => this.#failPending(error),
    );
  }

  /** Subscribes again after unsubscribe(); throws NotSubscriberError when another client holds the subscription. */
  async resubscribe(options: AttachOptions = {}): Promise<void> {
    if (this.#detached) throw new ConnectionClosedError(`Bluetooth client for ${this.label} is detached`);
    await this.#subscription.resubscribe(options);
  }

  /** Closes every link and gives up the Bluetooth subscription (the API session stays open); this client is done. */
  async detach(options: CallOptions = {}): Promise<void> {
    await this.unsubscribe(options);
    this.#detach();
  }

  /** Part of LinkHost, for the link itself: forgets a link that is gone (not for users). */
  linkClosed(link: BleConnection): void {
    if (this.#links.get(link.address) === link) this.#links.delete(link.address);
    this.#slots.markReleasing(link.address);
  }

  /**
   * Part of LinkHost (not for users): resolves once the proxy has freed the slot of an ended link or attempt to `address`, i.e. a
   * slot report no longer lists it (the firmware frees it after both of its connected=false replies, §6.7).
   */
  slotReleased(address: number, signal?: AbortSignal): Promise<void> {
    return this.#slots.released(address, signal);
  }

  #listen(): void {
    const proxy = this;
    this.#unsubscribers.push(
      ...listenToProxy(this.api, {
        get subscription() {
          return proxy.#subscription;
        },
        streams: this.#streams,
        slots: this.#slots,
        links: this.#links,
        attempts: this.#attempts,
        deviceOps: this.#deviceOps,
      }),
    );
    void this.api.closed().then(() => {
      this.#detach();
      this.#streams.end();
    });
  }

  /** The firmware answers Bluetooth requests only to its subscriber: fail at once instead of waiting out a timeout. */
  #requireSubscriber(): void {
    if (this.#detached) throw new ConnectionClosedError(`Bluetooth client for ${this.label} is detached`);
    this.#subscription.require();
  }

  /** Rejects pending connects and device operations: their answers will not come to this session. */
  #failPending(error: Error): void {
    this.#attempts.failAll(error);
    this.#deviceOps.failAll(error);
  }

  /** What the connect path may see and do. */
  #connectHost(): ConnectHost {
    const proxy = this;
    return {
      api: this.api,
      get label() {
        return proxy.label;
      },
      linkHost: this,
      slots: this.#slots,
      links: this.#links,
      get subscribed() {
        return proxy.#subscription.state === 'subscribed';
      },
      get subscriberConfirmed() {
        return proxy.#subscription.confirmed;
      },
      addressTypeOf: (address) => this.#streams.addressTypeOf(address),
      refuse: (address) => this.connectGuard?.(address),
    };
  }

  /** What the subscription may see and do. */
  #subscriptionHost(): SubscriptionHost {
    const proxy = this;
    return {
      api: this.api,
      get label() {
        return proxy.label;
      },
      hasFeature: (feature) => this.hasFeature(feature),
      onScannerState: (listener) => this.onScannerState(listener),
      onAdvertisement: (listener) => this.onAdvertisement(listener),
      updateSlots: async (options) => this.#slots.apply(await this.refreshSlots(options)),
      giveBack: (error) => {
        // The firmware keeps our links and attempts going and reports them to the new subscriber: give their slots back.
        const ours = [...this.#links.keys(), ...this.#attempts.addresses];
        this.#failPending(error);
        for (const address of ours) {
          try {
            this.api.send(BluetoothDeviceRequest, { address, requestType: BluetoothDeviceRequestType.DISCONNECT });
          } catch {
            // session gone
          }
        }
        for (const link of [...this.#links.values()]) link.handleLinkDown(0, 'Bluetooth subscription lost', error);
        this.#slots.forgetReleases();
      },
    };
  }

  #detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#leftBehind = [...new Set([...this.#links.keys(), ...this.#attempts.addresses, ...this.#slots.releasing])];
    this.#subscription.close();
    for (const off of this.#unsubscribers) off();
    this.#unsubscribers.length = 0;
    for (const link of [...this.#links.values()]) link.handleLinkDown(0, 'API session closed');
    const closedError = new ConnectionClosedError(
      this.api.isClosed ? `API session to ${this.label} closed` : `Bluetooth client for ${this.label} detached`,
    );
    this.#failPending(closedError);
    this.#slots.close();
  }
}
