import { featureNames, isAdvertisementOnly } from '../bluetooth/features.js';
import type { BluetoothProxy, BluetoothProxyStatus, SlotState, SubscriptionState } from '../bluetooth/proxy-client.js';
import type { ReconnectingConnection, ReconnectStatus } from '../connection/reconnect.js';
import { EspApiError } from '../errors.js';

/** A proxy's life-cycle state as a pool or a relay sees it. */
export type ProxyState = 'connecting' | 'online' | 'subscriptionLost' | 'notSubscriber' | 'offline' | 'stopped';

/** One error a proxy's session, subscription or connects ran into. */
export interface ProxyErrorRecord {
  /** The error's code (`ESPAPI_ERR_…`), or its class name for errors from outside the library. */
  readonly code: string;
  readonly message: string;
  /** When it happened (ms since the epoch). */
  readonly at: number;
}

/** How many errors a proxy remembers for diagnostics: enough to see a pattern, bounded for week-long runs. */
export const PROXY_ERROR_HISTORY = 10;

/** Everything known about one proxy's health, for tables, `slots --json` and the relay's status. */
export interface ProxyDiagnostics {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly name: string | undefined;
  readonly esphomeVersion: string | undefined;
  /** `major.minor` from the device's Hello. */
  readonly apiVersion: string | undefined;
  readonly state: ProxyState;
  /** Since when `state` holds (ms since the epoch). */
  readonly since: number;
  readonly features: readonly string[];
  /** Forwards advertisements but opens no connections (no ACTIVE_CONNECTIONS): kept out of connects, has no slots. */
  readonly advertisementOnly: boolean;
  /** The proxy's slot report plus our side of it; undefined before the first report. */
  readonly slots:
    | {
        readonly free: number;
        readonly limit: number;
        readonly allocated: readonly number[];
        /** Connects of ours in flight (a pool's slot leases; the relay's connects the proxy has not reported yet). */
        readonly leases: number;
        /** Allocated addresses that are links of ours (the pool's, or held through the relay). */
        readonly owned: readonly number[];
      }
    | undefined;
  /** Whether we hold the proxy's single Bluetooth subscription ('notSubscriber': another client does; 'none': no session). */
  readonly subscription: {
    readonly state: SubscriptionState | 'notSubscriber' | 'none';
    readonly since: number;
    readonly confirmed: boolean;
  };
  /** Advertisements per second (a pool: over the last ten seconds; a relay: over its last stats interval). */
  readonly adsPerSecond: number;
  /** Devices heard recently; undefined where advertisements are not decoded (the relay forwards them as bytes). */
  readonly devicesHeard: number | undefined;
  /** The last errors of the session, the subscription and connects through this proxy, oldest first. */
  readonly lastErrors: readonly ProxyErrorRecord[];
}

/** What only the owner of a proxy session knows for its diagnostics record. */
export interface ProxyDiagnosticsInput {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly slots: SlotState | undefined;
  readonly leases: number;
  readonly owned: readonly number[];
  readonly adsPerSecond: number;
  readonly devicesHeard: number | undefined;
}

/**
 * The health of one proxy session: its state and since when, its recent errors, and the diagnostics record built
 * from them. One implementation for the pool's proxies and the relay's upstreams.
 */
export class ProxyHealth {
  readonly #session: ReconnectingConnection;
  readonly #bluetooth: () => BluetoothProxy | undefined;
  readonly #errors: ProxyErrorRecord[] = [];
  #state: ProxyState = 'connecting';
  #stateSince = Date.now();

  constructor(session: ReconnectingConnection, bluetooth: () => BluetoothProxy | undefined) {
    this.#session = session;
    this.#bluetooth = bluetooth;
  }

  /** The state now, and since when it holds (derived from the session and the subscription). */
  state(now = Date.now()): { state: ProxyState; since: number } {
    const state = this.#deriveState();
    if (state !== this.#state) {
      this.#state = state;
      this.#stateSince = now;
    }
    return { state, since: this.#stateSince };
  }

  /** The last errors, oldest first (at most PROXY_ERROR_HISTORY). */
  get errors(): readonly ProxyErrorRecord[] {
    return this.#errors;
  }

  /** Remembers an error for diagnostics. */
  recordError(error: unknown, now = Date.now()): void {
    const e = error instanceof Error ? error : new Error(String(error));
    this.#errors.push({ code: e instanceof EspApiError ? e.code : e.name, message: e.message, at: now });
    if (this.#errors.length > PROXY_ERROR_HISTORY) this.#errors.splice(0, this.#errors.length - PROXY_ERROR_HISTORY);
  }

  /** Takes in one event of the reconnecting session: failed attempts and lost sessions are remembered. */
  onSessionStatus(event: ReconnectStatus): void {
    if ((event.type === 'disconnected' || event.type === 'stopped') && event.error !== undefined) this.recordError(event.error);
    this.state();
  }

  /** Takes in one subscription event: a lost subscription and failed resubscribes are remembered. */
  onSubscriptionStatus(status: BluetoothProxyStatus): void {
    if (status.type === 'subscriptionLost') this.recordError(status.error, status.at);
    if (status.type === 'resubscribeFailed') this.recordError(status.error);
    this.state();
  }

  /** The diagnostics record now. */
  diagnostics(input: ProxyDiagnosticsInput, now = Date.now()): ProxyDiagnostics {
    const bluetooth = this.#bluetooth();
    const api = bluetooth?.api;
    const { state, since } = this.state(now);
    const subscription =
      bluetooth !== undefined && api !== undefined && !api.isClosed
        ? bluetooth.subscription
        : { state: state === 'notSubscriber' ? ('notSubscriber' as const) : ('none' as const), since, confirmed: false };
    const slots = input.slots;
    return {
      id: input.id,
      host: input.host,
      port: input.port,
      name: api?.hello.name,
      esphomeVersion: api?.deviceInfo.esphomeVersion,
      apiVersion: api === undefined ? undefined : `${api.hello.apiVersionMajor}.${api.hello.apiVersionMinor}`,
      state,
      since,
      features: featureNames(bluetooth?.features ?? 0),
      advertisementOnly: isAdvertisementOnly(bluetooth?.features ?? 0),
      slots: slots === undefined ? undefined : { ...slots, leases: input.leases, owned: input.owned },
      subscription: { state: subscription.state, since: subscription.since, confirmed: subscription.confirmed },
      adsPerSecond: input.adsPerSecond,
      devicesHeard: input.devicesHeard,
      lastErrors: [...this.#errors],
    };
  }

  #deriveState(): ProxyState {
    if (this.#session.stopped) return 'stopped';
    const bluetooth = this.#bluetooth();
    if (bluetooth !== undefined && !bluetooth.api.isClosed)
      return bluetooth.subscription.state === 'subscribed' ? 'online' : 'subscriptionLost';
    const last = this.#session.lastError;
    if (last === undefined) return 'connecting';
    return last instanceof EspApiError && last.code === 'ESPAPI_ERR_NOT_SUBSCRIBER' ? 'notSubscriber' : 'offline';
  }
}
