import type { Advertisement } from '../bluetooth/advertisement.js';
import { canConnectGatt } from '../bluetooth/features.js';
import { type AttachOptions, BluetoothProxy, type BluetoothProxyStatus, type SlotState } from '../bluetooth/proxy-client.js';
import { BLE_CONNECT_CLEANUP_TIMEOUT_MS } from '../bluetooth/timeouts.js';
import { type ApiConnection, DEFAULT_API_PORT } from '../connection/connection.js';
import { type ProxyConfig, proxyId, proxySession } from '../connection/proxy-session.js';
import type { BackoffOptions, ReconnectingConnection, ReconnectOptions, ReconnectStatus } from '../connection/reconnect.js';
import { ConnectionClosedError, EspApiError, FeatureMissingError, NotSubscriberError, type ProxyCause } from '../errors.js';
import { failureRule } from '../failure-table.js';
import type { ProxySnapshot } from './pool-options.js';
import { type ProxyDiagnostics, ProxyHealth } from './proxy-health.js';
import { RateMeter } from './rate-meter.js';

export type { ProxyConfig } from '../connection/proxy-session.js';

/** An API session to a proxy kept by someone else (e.g. a RelayServer upstream), used by a pool without a second subscription. */
export interface SharedProxySession {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly session: ReconnectingConnection;
  /** The Bluetooth client of the live session, if any. */
  readonly bluetooth: BluetoothProxy | undefined;
  /** Calls `listener` with the Bluetooth client of every (re)connect; returns an unsubscribe function. */
  onBluetooth(listener: (bluetooth: BluetoothProxy) => void): () => void;
  /**
   * True when another user of the session (a relay's downstream client) holds `address` or its link is being
   * released for it: the pool must not act on that slot (orphan reaping, ghost links).
   */
  heldElsewhere?(address: number): boolean;
}

/** What the pool knows about a device as heard by one proxy. */
export interface HeardDevice {
  /** Exponentially smoothed RSSI (dBm). */
  rssi: number;
  lastRssi: number;
  lastSeen: number;
  addressType: number;
  name: string | undefined;
}

/** What a proxy's subscription-related status change was, for the pool's status stream. */
export type ProxyChange = 'up' | 'down' | 'slots' | 'device' | 'subscription' | 'sessionFailed' | 'connected' | 'disconnected';

/** Weight of a new RSSI sample in the moving average: 0.3 settles in ~3 samples yet ignores single outliers. */
const RSSI_SMOOTHING = 0.3;
/** Half-life of a path-failure penalty: a proxy that failed a minute ago is half as suspicious. */
export const FAILURE_HALF_LIFE_MS = 60_000;

/**
 * One proxy as a member of a ProxyPool: its session, slots, heard devices and failure history (internal; the
 * pool's public face is ProxyPool, and the member is not named PoolProxy so the two are not mixed up).
 */
export class ProxyMember {
  readonly id: string;
  readonly config: ProxyConfig;
  readonly session: ReconnectingConnection;
  bluetooth: BluetoothProxy | undefined;
  /** Devices this proxy hears, by address. */
  readonly heard = new Map<number, HeardDevice>();
  /** Devices of the connects we started and that have not finished (local slot leases; one entry per connect). */
  readonly #leased: number[] = [];
  /** Decaying path-failure score (1 per failure, halved every FAILURE_HALF_LIFE_MS). */
  #failureScore = 0;
  #failureAt = 0;
  /** Per device: do not use this proxy for that device before this time (ms). */
  readonly backoffUntil = new Map<number, number>();
  /** Rolling advertisements per second. */
  readonly adRate = new RateMeter();
  /** Node name and MACs from the last session (kept while offline, so routes can name the proxy by them). */
  identity: { name?: string | undefined; mac?: string | undefined; bluetoothMac?: string | undefined } = {};
  /** The latest subscription event of the current session. */
  lastSubscriptionStatus: BluetoothProxyStatus | undefined;
  /** State, recent errors and the diagnostics record. */
  readonly health: ProxyHealth;
  readonly #onChange: (proxy: ProxyMember, what: ProxyChange, address?: number) => void;
  #offs: Array<() => void> = [];
  /** Slots the previous session may have left on the proxy (BluetoothProxy.slotsLeftBehind). */
  #leftBehind: readonly number[] = [];
  /** The pool's watch of the session's events; returned on close (a shared session outlives the pool). */
  readonly #events: AsyncIterator<ReconnectStatus>;
  /** Set when the session belongs to someone else: the pool neither starts nor closes it. */
  readonly #shared: { off: () => void; session: SharedProxySession } | undefined;

  constructor(
    config: ProxyConfig | SharedProxySession,
    options: {
      clientInfo: string;
      backoff?: BackoffOptions;
      connectTimeout?: number;
      tapFor?: ReconnectOptions['tapFor'];
      attach?: Pick<AttachOptions, 'subscriberCheckTimeout' | 'requireSubscriber' | 'watchdog' | 'resubscribe'>;
    },
    onChange: (proxy: ProxyMember, what: ProxyChange, address?: number) => void,
    onAdvertisement: (proxy: ProxyMember, ad: Advertisement) => void,
  ) {
    this.#onChange = onChange;
    if ('session' in config) {
      this.config = { host: config.host, port: config.port };
      this.id = config.id;
      this.session = config.session;
      this.health = new ProxyHealth(this.session, () => this.bluetooth);
      this.#shared = { off: config.onBluetooth((bluetooth) => this.#bind(bluetooth.api, bluetooth, onAdvertisement)), session: config };
      const current = config.bluetooth;
      if (current !== undefined && !current.api.isClosed) this.#bind(current.api, current, onAdvertisement);
      this.#events = this.session.status()[Symbol.asyncIterator]();
      void this.#followSession();
      return;
    }
    this.config = config;
    this.id = proxyId(config);
    this.session = proxySession(config, {
      clientInfo: options.clientInfo,
      backoff: options.backoff,
      connectTimeout: options.connectTimeout,
      tapFor: options.tapFor,
      onConnect: async (api) => {
        const bluetooth = await BluetoothProxy.attach(api, options.attach ?? {});
        await this.#releaseLeftBehind(bluetooth);
        this.#bind(api, bluetooth, onAdvertisement);
      },
    });
    this.health = new ProxyHealth(this.session, () => this.bluetooth);
    this.#events = this.session.status()[Symbol.asyncIterator]();
    void this.#followSession();
  }

  /** True while the API session and Bluetooth subscription are up. */
  get online(): boolean {
    return this.bluetooth !== undefined && !this.bluetooth.api.isClosed;
  }

  /** Slot state from the proxy's last push. */
  get slots(): SlotState | undefined {
    return this.bluetooth?.slots;
  }

  /** True when another user of a shared session holds the slot of `address` (SharedProxySession.heldElsewhere). */
  heldElsewhere(address: number): boolean {
    return this.#shared?.session.heldElsewhere?.(address) ?? false;
  }

  /** Connects of ours in flight on this proxy. */
  get leases(): number {
    return this.#leased.length;
  }

  /** Books a slot for a connect to `address` until unlease(). */
  lease(address: number): void {
    this.#leased.push(address);
  }

  /** Ends the lease of one connect to `address`. */
  unlease(address: number): void {
    const index = this.#leased.indexOf(address);
    if (index >= 0) this.#leased.splice(index, 1);
  }

  /**
   * Free slots minus our in-flight connects the proxy has not counted yet (what we may still take). A connect the
   * proxy accepted is in its `allocated` list and already out of `free`; firmware without that list (before 2025)
   * leaves every lease subtracted until it ends, erring on the side of waiting.
   */
  get available(): number {
    const slots = this.slots;
    if (slots === undefined) return 0;
    let unreported = 0;
    for (const address of this.#leased) if (!slots.allocated.includes(address)) unreported++;
    return Math.max(0, slots.free - unreported);
  }

  /** True when the proxy can open GATT connections (online, capable, and we hold its subscription). */
  get canConnect(): boolean {
    const bluetooth = this.bluetooth;
    return this.online && bluetooth !== undefined && canConnectGatt(bluetooth.features) && bluetooth.subscription.state === 'subscribed';
  }

  /**
   * Why this proxy cannot be used, when retrying cannot fix it: it is offline and its session's last error is a
   * permanent one of the failure table (wrong key or password, another device at the address, not a proxy...).
   */
  get problem(): ProxyCause | undefined {
    if (this.online) return undefined;
    const error = this.session.lastError;
    if (error === undefined) return undefined;
    return failureRule(error).permanent ? causeOf(this.id, error, true) : undefined;
  }

  /**
   * Why this proxy can never carry a GATT connection as configured: its `problem`, or, online, the lack of active
   * connections (an advertisement-only proxy: passive `bluetooth_proxy`, or a board that cannot connect).
   */
  get connectProblem(): ProxyCause | undefined {
    const problem = this.problem;
    if (problem !== undefined || !this.online) return problem;
    const bluetooth = this.bluetooth!;
    if (canConnectGatt(bluetooth.features)) return undefined;
    const error = new FeatureMissingError(bluetooth.label, 'GATT connections: it only forwards advertisements (no ACTIVE_CONNECTIONS)');
    return causeOf(this.id, error, true);
  }

  /**
   * Why this proxy cannot take a connect now, when waiting may fix it: offline and reconnecting (its session's last
   * error), or another client holds its Bluetooth subscription. Undefined when it can connect or is unusable for good.
   */
  get unavailable(): ProxyCause | undefined {
    if (this.canConnect || this.connectProblem !== undefined) return undefined;
    const bluetooth = this.bluetooth;
    if (!this.online || bluetooth === undefined) {
      return causeOf(this.id, this.session.lastError ?? new ConnectionClosedError(`Proxy ${this.id} has not connected yet`), false);
    }
    const state = bluetooth.subscription.state;
    return causeOf(this.id, new NotSubscriberError(bluetooth.label, state === 'unsubscribed' ? 'unsubscribed' : 'otherClient'), false);
  }

  /** What the pool reports about this proxy; `owned` are the addresses of the pool's links through it. */
  snapshot(owned: readonly number[]): ProxySnapshot {
    const api = this.api;
    return {
      id: this.id,
      host: this.config.host,
      port: this.config.port ?? DEFAULT_API_PORT,
      online: this.online,
      name: api?.hello.name,
      esphomeVersion: api?.deviceInfo.esphomeVersion,
      features: this.bluetooth?.features ?? 0,
      slots: this.slots,
      owned,
      inFlight: this.leases,
      devicesHeard: this.heard.size,
      scannerMode: this.bluetooth?.scannerState?.mode,
      failureScore: Math.round(this.failureScore() * 100) / 100,
      lastError: this.session.lastError?.message,
      problem: this.problem,
    };
  }

  /** The diagnostics record of this proxy (the relay builds its upstreams' with the same ProxyHealth). */
  diagnostics(owned: readonly number[], now = Date.now()): ProxyDiagnostics {
    const input = {
      id: this.id,
      host: this.config.host,
      port: this.config.port ?? DEFAULT_API_PORT,
      slots: this.slots,
      leases: this.leases,
      owned,
      adsPerSecond: this.adRate.perSecond(now),
      devicesHeard: this.heard.size,
    };
    return this.health.diagnostics(input, now);
  }

  /** The decaying failure score now. */
  failureScore(now = Date.now()): number {
    if (this.#failureScore === 0) return 0;
    return this.#failureScore * 0.5 ** ((now - this.#failureAt) / FAILURE_HALF_LIFE_MS);
  }

  /** Records a path failure (timeouts, aborts — not slot shortages). */
  recordFailure(now = Date.now()): void {
    this.#failureScore = this.failureScore(now) + 1;
    this.#failureAt = now;
  }

  /** Records a success: the path works, forget most of the suspicion. */
  recordSuccess(now = Date.now()): void {
    this.#failureScore = this.failureScore(now) / 4;
    this.#failureAt = now;
  }

  /** The API session (when online). */
  get api(): ApiConnection | undefined {
    return this.bluetooth?.api;
  }

  /** Stops the session (a shared one is only let go). */
  async close(): Promise<void> {
    void this.#events.return?.();
    for (const off of this.#offs) off();
    this.#offs = [];
    if (this.#shared !== undefined) this.#shared.off();
    else await this.session.close();
    this.bluetooth = undefined;
  }

  /** Records every failed attempt and lost session of the reconnect loop. */
  async #followSession(): Promise<void> {
    for (let next = await this.#events.next(); next.done !== true; next = await this.#events.next()) {
      const event = next.value;
      this.health.onSessionStatus(event);
      if (event.type === 'stopped' || event.type === 'disconnected') this.#onChange(this, 'sessionFailed');
    }
  }

  /**
   * The firmware drops a gone subscriber's links only when its loop notices (every ~100 ms): a reconnect
   * quicker than that finds our previous session's links and attempts still holding slots that nobody would
   * ever free. Release them before the pool uses the proxy again.
   */
  async #releaseLeftBehind(bluetooth: BluetoothProxy): Promise<void> {
    const left = this.#leftBehind;
    this.#leftBehind = [];
    const slots = bluetooth.slots;
    if (left.length === 0 || slots === undefined || slots.free === slots.limit || bluetooth.subscription.state !== 'subscribed') return;
    // Firmware before 2025 lists no addresses: then release each (a DISCONNECT without a slot is answered harmlessly).
    const held = slots.allocated.length === 0 ? left : left.filter((address) => slots.allocated.includes(address));
    await Promise.allSettled(held.map((address) => bluetooth.releaseSlot(address, { timeout: BLE_CONNECT_CLEANUP_TIMEOUT_MS })));
  }

  #bind(api: ApiConnection, bluetooth: BluetoothProxy, onAdvertisement: (proxy: ProxyMember, ad: Advertisement) => void): void {
    for (const off of this.#offs) off();
    this.bluetooth = bluetooth;
    const macOf = (text: string | undefined): string | undefined => {
      const hex = text?.replace(/[:-]/g, '').toLowerCase();
      return hex !== undefined && /^[0-9a-f]{12}$/.test(hex) ? hex : undefined;
    };
    this.identity = {
      name: api.hello.name || api.deviceInfo.name || undefined,
      mac: macOf(api.deviceInfo.macAddress),
      bluetoothMac: macOf(api.deviceInfo.bluetoothMacAddress),
    };
    this.lastSubscriptionStatus = undefined;
    this.#offs = [
      bluetooth.onAdvertisement((ad) => {
        this.adRate.mark(ad.timestamp);
        const known = this.heard.get(ad.address);
        if (known === undefined) {
          this.heard.set(ad.address, {
            rssi: ad.rssi,
            lastRssi: ad.rssi,
            lastSeen: ad.timestamp,
            addressType: ad.addressType,
            name: ad.localName,
          });
          this.#onChange(this, 'device', ad.address);
        } else {
          known.rssi += RSSI_SMOOTHING * (ad.rssi - known.rssi);
          known.lastRssi = ad.rssi;
          known.lastSeen = ad.timestamp;
          known.addressType = ad.addressType;
          if (ad.localName !== undefined) known.name = ad.localName;
        }
        onAdvertisement(this, ad);
      }),
      bluetooth.onSlots(() => this.#onChange(this, 'slots')),
      // Links the proxy reports up, another client's included (we are its subscriber): none of them is a ghost. And
      // those it reports down: its answer to a disconnect reached us.
      bluetooth.onConnectionState((state) => this.#onChange(this, state.connected ? 'connected' : 'disconnected', state.address)),
      bluetooth.onStatus((status) => {
        this.lastSubscriptionStatus = status;
        this.health.onSubscriptionStatus(status);
        this.#onChange(this, 'subscription');
      }),
    ];
    void api.closed().then(() => {
      if (this.bluetooth !== bluetooth) return;
      this.#leftBehind = bluetooth.slotsLeftBehind;
      this.bluetooth = undefined;
      this.#onChange(this, 'down');
    });
    this.#onChange(this, 'up');
  }
}

/** One proxy's cause, classified by the failure table. */
function causeOf(proxy: string, error: Error, permanent: boolean): ProxyCause {
  return {
    proxy,
    code: error instanceof EspApiError ? error.code : undefined,
    failureClass: failureRule(error).class,
    permanent,
    message: error.message,
    error,
  };
}
