import type { MessageType, PartialMessage } from '@protobuf-ts/runtime';
import { formatMac } from '../bluetooth/address.js';
import { type EsphomeRelease, isReleaseBefore } from '../bluetooth/firmware-release.js';
import { ownBluetoothAddress } from '../bluetooth/own-address.js';
import { BluetoothProxy, type BluetoothProxyStatus } from '../bluetooth/proxy-client.js';
import { RAW_ADVERTISEMENTS_MESSAGE_ID } from '../bluetooth/raw-advertisements.js';
import type { ResubscribePolicy, WatchdogOptions } from '../bluetooth/subscription-watchdog.js';
import type { ApiConnection, MessageTap } from '../connection/connection.js';
import { type BackoffOptions, ReconnectingConnection, type ReconnectOptions } from '../connection/reconnect.js';
import { BleConnectError, DeviceHeldError, NameMismatchError } from '../errors.js';
import { encodeMessage } from '../frame/dispatch.js';
import { messageId } from '../frame/message-types.js';
import { encodePlaintextFrame } from '../frame/plaintext.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothGATTGetServicesResponse,
  type BluetoothGATTService,
  BluetoothScannerState,
  BluetoothScannerStateResponse,
  type DeviceCapabilitiesResponse,
  DeviceInfoRequest,
  DeviceInfoResponse,
} from '../gen/api_pb.js';
import type { ProxyConfig, SharedProxySession } from '../pool/pool-proxy.js';
import { type ProxyDiagnostics, ProxyHealth } from '../pool/proxy-health.js';
import { ApiServer, type ApiSession, type FirmwareIdentity, type SessionPlugin } from '../server/api-server.js';
import type { ApiServerEvent } from '../server/server-events.js';
import { type BacklogLimits, DEFAULT_BACKLOG_LIMITS } from '../server/session-backlog.js';
import type { CallOptions } from '../util/abort.js';
import { concatBytes } from '../util/bytes.js';
import { plainAddress, type RelayClientIdentity, type RelayPermissions, slotQuota } from './client-policy.js';
import { DeviceOps } from './device-ops.js';
import { LEGACY_ADVERTISEMENT_MESSAGE_ID, toLegacyAdvertisements } from './legacy-advertisements.js';
import { localDeviceRequest } from './local-requests.js';
import type { RelayClientSnapshot, RelayProxySnapshot, RelayStatus, UpstreamState } from './relay-status.js';
import { type GuardedClient, neverALink, RELAY_OUT_OF_SLOTS_ERROR, RequestGuard, type RequestGuardHost } from './request-guard.js';
import { LOCAL, RELEASING, type SlotHolder, SlotLedger, type SlotView } from './slot-ledger.js';
import { countReports, varintField } from './wire.js';

export { RELAY_OUT_OF_SLOTS_ERROR } from './request-guard.js';

/**
 * Reason reported for a client's links when the upstream proxy went away, or stopped serving the relay as its
 * Bluetooth subscriber (ESP_GATT_CONN_TERMINATE_LOCAL_HOST: the proxy side ended the link).
 */
export const UPSTREAM_LOST_REASON = 0x16;
/**
 * A subscriber with more than this queued on its socket gets no advertisements until it has caught up, as the
 * firmware drops advertisements for a client whose send buffer is full; nothing else is dropped (the session's
 * backlog bounds, `DEFAULT_BACKLOG_LIMITS`, stop reading and then close a client that reads nothing at all).
 */
export const CLIENT_AD_BACKLOG_LIMIT_BYTES = DEFAULT_BACKLOG_LIMITS.dropAt;
/**
 * Above this many bytes waiting to be sent to the upstream proxy (`ApiConnection.sendBacklog`: written, not taken by
 * the kernel), a client that sends the relay a frame is no longer read until the upstream is down to
 * UPSTREAM_RESUME_BYTES. Without it a client's requests with no reply (GATT writes without response to an ESP32
 * that reads slower than the LAN delivers) were read and queued upstream without bound (6 MB of requests to a
 * stalled upstream took the relay from 63 to 253 MB). With it the upstream queue holds this plus one frame per
 * client; 256 KiB is 500 writes of 512 bytes, far more than a proxy takes in one go.
 */
export const UPSTREAM_HOLD_BYTES = 256 * 1024;
/** Held clients are read again once the upstream queue is down to this (checked every UPSTREAM_POLL_MS: Node only reports an empty queue). */
const UPSTREAM_RESUME_BYTES = 64 * 1024;
const UPSTREAM_POLL_MS = 20;
/** Firmware from this release on sends raw advertisements whatever the subscribe flags say (spec §6.4). */
const RAW_ALWAYS_SINCE: EsphomeRelease = [2025, 8];
/**
 * Firmware before 2025 (API below 1.12) authenticates a session only by an AuthenticationRequest, which it answers
 * (spec §5.2); clients decide by the minor whether to send one and wait for the answer (@2colors below 1.12).
 */
const HELLO_AUTHENTICATES_MIN_MINOR = 12;
/** Clients below API 1.12 get GATT UUIDs as two words, never `short_uuid` (spec §6.8). */
const COMPACT_UUID_MIN_MINOR = 12;
const BASE_UUID_LOW_WORD = 0x800000805f9b34fbn;

/** How to reach one upstream proxy: the same fields as a pool's proxy (`name` is the expected node name and the id). */
export type RelayUpstreamConfig = ProxyConfig;

/** Options shared by every upstream of a relay. */
export interface RelayProxyOptions {
  listenHost: string;
  listenPort: number;
  /** Base64 Noise key downstream clients must use; absent = plaintext listener. */
  downstreamPsk?: string | undefined;
  clientInfo: string;
  backoff?: BackoffOptions | undefined;
  /** What a permanent upstream failure does (ReconnectOptions.permanentErrors). */
  permanentErrors?: 'stop' | 'retry' | undefined;
  /** A fresh message tap per upstream session (recordings, the CLI's --verbose trace), beside the relay's own. */
  tapFor?: ReconnectOptions['tapFor'];
  connectTimeout?: number | undefined;
  keepaliveInterval?: number | undefined;
  /** How long an upstream attach waits for the scanner state that proves the relay is the subscriber. */
  subscriberCheckTimeout?: number | undefined;
  /** The upstream subscription watchdog (on by default); false switches it off. */
  watchdog?: false | WatchdogOptions | undefined;
  /** Resubscribe after the upstream subscription was lost (default backoff 10 s, 30 s, then every 60 s). */
  resubscribe?: ResubscribePolicy | undefined;
  /** Silence after which a client is pinged (it is dropped after 2.5 times this), as the firmware does: 60 s. */
  clientKeepaliveInterval: number;
  /** Clients each listener serves at once; a connection beyond is closed at once, as the firmware does. */
  maxClients: number;
  /** At the limit a newcomer takes the place of the oldest client not authenticated yet (ApiServer's `evictUnauthenticated`). */
  evictUnauthenticated: boolean;
  /** Listen beyond loopback without `downstreamPsk` (refused otherwise). */
  allowPlaintext?: boolean | undefined;
  /** What may wait to be written to one client (bytes; defaults: DEFAULT_BACKLOG_LIMITS). */
  clientBacklog?: Partial<BacklogLimits> | undefined;
  /** Time a client has from accept to a processed HelloRequest (ApiServer's handshake deadline; default 60 s, as the firmware). */
  clientHandshakeTimeout?: number | undefined;
  /** 'auto': flags=0 subscribers get message 67 only when the upstream firmware predates 2025.8; 'flags': always. */
  legacyAdvertisements: 'auto' | 'flags';
  /** Slots the in-process pool may hold; default all but one of the proxy's (at least one). */
  slotsPerClient?: number | undefined;
  /** The configured quota of a client address, over all its sessions (undefined: the default). */
  slotsOf: (client: RelayClientIdentity) => number | undefined;
  /** What each client may do that changes what the others see (the compiled `RelayServerOptions.clientPolicy`). */
  permissionsOf: (client: RelayClientIdentity) => RelayPermissions;
  emit: (status: RelayStatus) => void;
}

/** One downstream API client of the relay. */
class DownstreamClient implements GuardedClient {
  readonly id: number;
  readonly session: ApiSession;
  readonly plaintext: boolean;
  readonly remote: string;
  /** Who the client is for its quota and policy: its remote IP address (every session from it shares the quota). */
  readonly identity: string;
  /** Its configured slot quota (undefined: the default, which follows the proxy's limit). */
  readonly quota: number | undefined;
  readonly permissions: RelayPermissions;
  subscribed = false;
  legacy = false;
  /** Asked for the slots (80) before subscribing: it got the proxy's counts, and gets its own view once it subscribes. */
  askedSlotsUnsubscribed = false;
  reported = false;
  /** The frame the session just handled sent something upstream (only such a client is held while the upstream is behind). */
  sentUpstream = false;
  /** Advertisements dropped for the client at the last stats tick. */
  droppedAtTick = 0;

  constructor(id: number, session: ApiSession, identity: RelayClientIdentity, quota: number | undefined, permissions: RelayPermissions) {
    this.id = id;
    this.session = session;
    this.plaintext = session.server.psk === undefined;
    this.remote = session.remote;
    this.identity = identity.address;
    this.quota = quota;
    this.permissions = permissions;
  }

  /** Advertisements not sent because the client's socket was backed up. */
  get droppedAdvertisements(): number {
    return this.session.droppedAdvertisements;
  }

  /** True while the client's socket holds more than it may queue for advertisements; counts `reports` as dropped then. */
  backedUp(reports: number): boolean {
    return this.session.shed(reports);
  }

  /** True for clients below API 1.12, which expect 128-bit UUID words in service lists. */
  get wantsFullUuids(): boolean {
    const { major, minor } = this.session.clientApiVersion;
    return major <= 1 && minor < COMPACT_UUID_MIN_MINOR;
  }
}

interface Identity {
  info: DeviceInfoResponse;
  api: ApiConnection;
}

/**
 * One upstream proxy behind the relay: holds its single Bluetooth subscription (reconnecting with backoff) and
 * serves the native API to any number of downstream clients on its own listener, under the proxy's identity.
 * Also usable by an in-process ProxyPool as a shared session (`pool.addSession(relayProxy)`).
 */
export class RelayProxy implements SharedProxySession {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly config: RelayUpstreamConfig;
  readonly session: ReconnectingConnection;
  /** Advertisements received from the upstream. */
  advertisements = 0;
  adsPerSecond = 0;
  readonly #options: RelayProxyOptions;
  /** The upstream's state, recent errors and diagnostics record, built as the pool builds its proxies'. */
  readonly #health: ProxyHealth;
  #bluetooth: BluetoothProxy | undefined;
  #identity: Identity | undefined;
  #server: ApiServer | undefined;
  #listening: Promise<ApiServer> | undefined;
  #state: UpstreamState = 'connecting';
  readonly #clients = new Map<ApiSession, DownstreamClient>();
  #subscribers: DownstreamClient[] = [];
  readonly #ledger = new SlotLedger();
  /** The ledger's version the subscribers' views were last pushed for. */
  #pushedVersion = -1;
  #scannerState: Uint8Array | undefined;
  /** The upstream's last slot report, kept while the subscription is lost (answers to our probes) for the resubscribe. */
  #upstreamSlots: BluetoothConnectionsFreeResponse | undefined;
  /** Unpair / clear-cache requests sent upstream, and who asked (bounded per client address, as the slot quota). */
  readonly #deviceOps = new DeviceOps<GuardedClient>({ identityOf: (client) => client.identity });
  readonly #bluetoothListeners = new Set<(bluetooth: BluetoothProxy) => void>();
  readonly #guard = new RequestGuard(this.#guardHost());
  #nextClientId = 1;
  #forwarding = false;
  /** Messages the relay itself sent upstream (tells whether a client's frame went upstream). */
  #upstreamSends = 0;
  #adsAtTick = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #corked = false;
  /** Clients not read while the upstream is behind (UPSTREAM_HOLD_BYTES), each with the canceller of its close listener. */
  readonly #held = new Map<ApiSession, () => void>();
  #heldTimer: NodeJS.Timeout | undefined;
  readonly #uncork = (corked: readonly DownstreamClient[]): void => {
    this.#corked = false;
    for (const client of corked) client.session.socket.uncork();
  };

  constructor(config: RelayUpstreamConfig, options: RelayProxyOptions) {
    this.config = config;
    this.host = config.host;
    this.port = config.port ?? 6053;
    this.id = config.name ?? `${config.host}:${this.port}`;
    this.#options = options;
    this.session = new ReconnectingConnection({
      host: config.host,
      port: config.port,
      psk: config.psk,
      password: config.password,
      expectedName: config.name,
      clientInfo: options.clientInfo,
      keepaliveInterval: options.keepaliveInterval,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      ...(options.permanentErrors ? { permanentErrors: options.permanentErrors } : {}),
      ...(options.connectTimeout ? { connectTimeout: options.connectTimeout } : {}),
      // What an in-process pool sends over the shared session: refused when it would act on a client's link, and
      // its connects take slots too. The relay's own sends (for its clients, its releases) pass as they are.
      sendGuard: (id, payload) => (this.#forwarding ? undefined : this.#guardLocalSend(id, payload)),
      tapFor: (target) => {
        const own: MessageTap = (direction, id, payload) => {
          if (direction === 'c2d' && id === DEVICE_REQUEST_ID && !this.#forwarding) this.#onLocalDeviceRequest(payload);
        };
        const extra = options.tapFor?.(target);
        if (extra === undefined) return own;
        return (direction, id, payload) => {
          own(direction, id, payload);
          extra(direction, id, payload);
        };
      },
      onConnect: (api) => this.#onUpstreamConnect(api),
    });
    this.#health = new ProxyHealth(this.session, () => this.#bluetooth);
    void this.#follow();
  }

  /** The Bluetooth client of the live upstream session. */
  get bluetooth(): BluetoothProxy | undefined {
    return this.#bluetooth;
  }

  /** Upstream session state. */
  get state(): UpstreamState {
    return this.#state;
  }

  /** The downstream listener (after `listen()`). */
  get server(): ApiServer | undefined {
    return this.#server;
  }

  /**
   * True when a downstream client holds `address` (connecting or connected) or the relay is releasing a gone
   * client's link to it: the in-process pool must not act on it (reapers and the ghost-link guard skip it, and the
   * shared session refuses the pool any request for it).
   */
  heldElsewhere(address: number): boolean {
    const holder = this.#ledger.holderOf(address);
    return holder instanceof DownstreamClient || holder === RELEASING;
  }

  /** Calls `listener` with the Bluetooth client of every upstream (re)connect. */
  onBluetooth(listener: (bluetooth: BluetoothProxy) => void): () => void {
    this.#bluetoothListeners.add(listener);
    return () => this.#bluetoothListeners.delete(listener);
  }

  /** Connects upstream (with retries) and opens the downstream listener once the proxy's identity is known. */
  listen(signal: AbortSignal, portOffset: number): Promise<ApiServer> {
    this.#listening ??= (async () => {
      this.session.start();
      await this.session.waitConnected({ signal });
      const identity = this.#identity!;
      const { listenHost, listenPort, downstreamPsk, allowPlaintext, clientBacklog } = this.#options;
      const server = new ApiServer({
        host: listenHost,
        port: listenPort === 0 ? 0 : listenPort + portOffset,
        name: identity.info.name || identity.api.hello.name,
        ...(identity.info.macAddress ? { mac: identity.info.macAddress } : {}),
        ...(downstreamPsk === undefined ? {} : { psk: downstreamPsk }),
        ...firmwareOf(identity),
        plugins: [this.#plugin()],
        ...(this.#options.clientHandshakeTimeout === undefined ? {} : { handshakeTimeout: this.#options.clientHandshakeTimeout }),
        // As the firmware: ping a client silent after Hello, drop it when it stays silent, so a vanished host frees its slots.
        keepaliveInterval: this.#options.clientKeepaliveInterval,
        maxConnections: this.#options.maxClients,
        evictUnauthenticated: this.#options.evictUnauthenticated,
        ...(allowPlaintext === undefined ? {} : { allowPlaintext }),
        ...(clientBacklog === undefined ? {} : { backlog: clientBacklog }),
        label: `relay listener of ${this.id}`,
        onEvent: (event, session) => this.#onServerEvent(event, session),
        // Clients stay for days: no per-message history.
        recordReceived: false,
      });
      server.onSession((session) => this.#onClient(session));
      await server.listen();
      this.#server = server;
      const info = server.listeningInfo();
      this.#options.emit({
        type: 'listening',
        proxy: this.id,
        host: info.host,
        port: info.port,
        name: info.name,
        mac: info.mac,
        encryption: info.encryption,
      });
      return server;
    })();
    return this.#listening;
  }

  /** Recomputes ads/s over the last `elapsedMs` and reports it, and the clients that had advertisements dropped since the last tick. */
  tick(elapsedMs: number): void {
    this.adsPerSecond = Math.round(((this.advertisements - this.#adsAtTick) * 1000) / Math.max(1, elapsedMs));
    this.#adsAtTick = this.advertisements;
    this.#options.emit({
      type: 'stats',
      proxy: this.id,
      adsPerSecond: this.adsPerSecond,
      advertisements: this.advertisements,
      clients: this.#clients.size,
      diagnostics: this.diagnostics(),
    });
    for (const client of this.#clients.values()) {
      if (client.droppedAdvertisements === client.droppedAtTick) continue;
      client.droppedAtTick = client.droppedAdvertisements;
      this.#options.emit({ type: 'clientSlow', proxy: this.id, client: client.id, droppedAdvertisements: client.droppedAdvertisements });
    }
  }

  /** The upstream's health in the pool's per-proxy record (state, slots, subscription, ads/s, last errors). */
  diagnostics(now = Date.now()): ProxyDiagnostics {
    const reported = this.#bluetooth === undefined ? undefined : this.#ledger.upstream;
    return this.#health.diagnostics(
      {
        id: this.id,
        host: this.host,
        port: this.port,
        slots: reported,
        leases: this.#ledger.unreported,
        owned: this.#ledger.entries().map(([address]) => address),
        adsPerSecond: this.adsPerSecond,
        devicesHeard: undefined,
      },
      now,
    );
  }

  /** What the relay knows about this proxy now. */
  snapshot(): RelayProxySnapshot {
    const api = this.#bluetooth?.api;
    const server = this.#server;
    const clients: RelayClientSnapshot[] = [...this.#clients.values()].map((client) => ({
      id: client.id,
      remote: client.remote,
      clientInfo: client.session.clientInfo,
      apiVersion: `${client.session.clientApiVersion.major}.${client.session.clientApiVersion.minor}`,
      subscribed: client.subscribed,
      legacyAdvertisements: client.legacy,
      droppedAdvertisements: client.droppedAdvertisements,
      slots: this.#ledger.addressesOf(client).map(formatMac),
    }));
    return {
      id: this.id,
      upstream: {
        host: this.host,
        port: this.port,
        state: this.#state,
        name: this.#identity?.info.name,
        esphomeVersion: this.#identity?.info.esphomeVersion,
        encrypted: this.config.psk !== undefined,
        lastError: this.#state === 'connected' ? undefined : this.session.lastError?.message,
        diagnostics: this.diagnostics(),
      },
      listen:
        server === undefined
          ? undefined
          : { host: server.address.host, port: server.address.port, encryption: server.psk ? 'noise' : 'plaintext' },
      slots: {
        free: api === undefined ? 0 : this.#ledger.free,
        limit: this.#ledger.limit,
        local: this.#ledger.addressesOf(LOCAL).map(formatMac),
      },
      clients,
      advertisements: this.advertisements,
      adsPerSecond: this.adsPerSecond,
    };
  }

  /**
   * Closes the listener and the upstream session. Idempotent. Clients get a DisconnectRequest first, as from a
   * proxy shutting down, and until `timeout` (default 2 s) or `signal` to hang up; then they are dropped.
   */
  close(options: CallOptions = {}): Promise<void> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  async #close(options: CallOptions): Promise<void> {
    this.#closed = true;
    this.#releaseHeld();
    // A listener still waiting for the proxy's first answer gives up with the session.
    if (this.#server === undefined) await this.session.close();
    await this.#listening?.catch(() => undefined);
    await this.#server?.close({ ...options, disconnect: true });
    if (this.#bluetooth !== undefined) await this.#bluetooth.detach({ timeout: 2_000 }).catch(() => {});
    await this.session.close();
  }

  // ── upstream ────────────────────────────────────────────────────────────────────────────────────────

  async #onUpstreamConnect(api: ApiConnection): Promise<void> {
    const info = await api.request(DeviceInfoRequest, {}, DeviceInfoResponse);
    const served = this.#identity?.info;
    // The listener speaks as the first device it relayed; another one at the same address must not inherit that identity.
    if (served !== undefined) {
      if (served.name !== info.name) throw new NameMismatchError('name', served.name, info.name);
      if (served.macAddress !== info.macAddress) throw new NameMismatchError('mac', served.macAddress, info.macAddress);
    }
    const offs = this.#bindUpstream(api);
    let bluetooth: BluetoothProxy;
    try {
      const { subscriberCheckTimeout, watchdog, resubscribe } = this.#options;
      bluetooth = await BluetoothProxy.attach(api, {
        ...(subscriberCheckTimeout === undefined ? {} : { subscriberCheckTimeout }),
        ...(watchdog === undefined ? {} : { watchdog }),
        ...(resubscribe === undefined ? {} : { resubscribe }),
      });
    } catch (error) {
      for (const off of offs) off();
      // Slot reports seen while attaching belong to a session that is going away.
      this.#ledger.reset();
      throw error;
    }
    bluetooth.connectGuard = (address) => this.#guardLocalConnect(address);
    this.#identity = { info, api };
    this.#followFirmware(this.#identity);
    this.#bluetooth = bluetooth;
    offs.push(bluetooth.onStatus((status) => this.#onUpstreamStatus(bluetooth, status)));
    void api.closed().then(() => {
      for (const off of offs) off();
      if (this.#bluetooth === bluetooth) this.#upstreamLost();
    });
    for (const listener of this.#bluetoothListeners) listener(bluetooth);
  }

  /**
   * After a firmware update the proxy reboots, which sends its clients a DisconnectRequest; through the relay they
   * would keep the old version and login rules. So the listener takes the new firmware on, and asks its clients to
   * reconnect (as the proxy would have), which makes Home Assistant read the new DeviceInfo.
   */
  #followFirmware(identity: Identity): void {
    const server = this.#server;
    if (server === undefined) return;
    const firmware = firmwareOf(identity);
    const { major, minor } = server.apiVersion;
    const same =
      firmware.apiVersion.major === major && firmware.apiVersion.minor === minor && firmware.esphomeVersion === server.esphomeVersion;
    if (same) return;
    server.setFirmware(firmware);
    void server.disconnectSessions();
  }

  #bindUpstream(api: ApiConnection): Array<() => void> {
    const route = (id: number): (() => void) => api.onRaw(id, (payload) => this.#route(id, payload));
    return [
      api.onRaw(RAW_ADVERTISEMENTS_MESSAGE_ID, (payload) => this.#fanOutAdvertisements(payload)),
      // A proxy without raw advertisements sends the legacy form to its subscriber whatever it asked for.
      api.onRaw(LEGACY_ADVERTISEMENT_MESSAGE_ID, (payload) => {
        this.advertisements++;
        for (const client of this.#subscribers) {
          if (!client.backedUp(1)) client.session.sendRaw(LEGACY_ADVERTISEMENT_MESSAGE_ID, payload);
        }
      }),
      api.onRaw(SCANNER_STATE_ID, (payload) => {
        this.#scannerState = new Uint8Array(payload);
        for (const client of this.#subscribers) client.session.sendRaw(SCANNER_STATE_ID, payload);
      }),
      api.onRaw(SLOTS_ID, (payload) => this.#onUpstreamSlots(payload)),
      api.onRaw(CONNECTION_ID, (payload) => this.#onUpstreamConnection(payload)),
      api.onRaw(SERVICES_ID, (payload) => this.#onServices(payload)),
      ...[72, 74, 79, 82, 83, 84, 146].map(route),
      api.onRaw(PAIRING_ID, (payload) => this.#routeDeviceOp(PAIRING_ID, 'unpair', payload)),
      api.onRaw(UNPAIRING_ID, (payload) => this.#routeDeviceOp(UNPAIRING_ID, 'unpair', payload)),
      api.onRaw(CLEAR_CACHE_ID, (payload) => this.#routeDeviceOp(CLEAR_CACHE_ID, 'clear', payload)),
    ];
  }

  async #follow(): Promise<void> {
    for await (const event of this.session.status()) {
      this.#health.onSessionStatus(event);
      switch (event.type) {
        case 'connecting':
          if (this.#state !== 'connected') this.#state = 'connecting';
          this.#options.emit({ type: 'upstreamConnecting', proxy: this.id, attempt: event.attempt });
          break;
        case 'connected': {
          this.#state = 'connected';
          const info = this.#identity?.info;
          this.#options.emit({ type: 'upstreamUp', proxy: this.id, name: info?.name ?? '', esphomeVersion: info?.esphomeVersion ?? '' });
          break;
        }
        case 'disconnected':
          this.#state = 'disconnected';
          this.#options.emit({ type: 'upstreamDown', proxy: this.id, error: event.error?.message, retryInMs: event.retryInMs });
          break;
        case 'stopped':
          this.#state = 'stopped';
          if (!this.#closed) this.#options.emit({ type: 'upstreamStopped', proxy: this.id, error: event.error?.message });
          break;
      }
    }
  }

  /** The upstream session ended: every client loses its links (slots reset), ads pause until the reconnect. */
  #upstreamLost(): void {
    this.#bluetooth = undefined;
    this.#endLinks(false);
  }

  /** True while the upstream session is up but the proxy no longer treats it as its Bluetooth subscriber. */
  get #subscriptionLost(): boolean {
    const bluetooth = this.#bluetooth;
    return bluetooth !== undefined && bluetooth.subscription.state !== 'subscribed';
  }

  /**
   * What the firmware does for its subscriber's clients when the relay loses the subscription: their links end
   * (the proxy now reports them to the new subscriber, so the relay frees them upstream), ads pause; on the
   * resubscribe the slots and scanner state come back. Downstream sessions stay open throughout.
   */
  #onUpstreamStatus(bluetooth: BluetoothProxy, status: BluetoothProxyStatus): void {
    if (this.#bluetooth !== bluetooth) return;
    this.#health.onSubscriptionStatus(status);
    const proxy = this.id;
    switch (status.type) {
      case 'subscriptionLost': {
        this.#state = 'subscriptionLost';
        const ended = this.#endLinks(true);
        this.#options.emit({ type: 'upstreamSubscriptionLost', proxy, detectedBy: status.detectedBy, endedLinks: ended.map(formatMac) });
        return;
      }
      case 'resubscribing':
        this.#options.emit({ type: 'upstreamResubscribing', proxy, attempt: status.attempt, delay: status.delay });
        return;
      case 'resubscribeFailed':
        this.#options.emit({
          type: 'upstreamResubscribeFailed',
          proxy,
          attempt: status.attempt,
          code: status.code,
          error: status.error.message,
        });
        return;
      case 'resubscribed': {
        if (this.#state === 'subscriptionLost') this.#state = 'connected';
        const slots = this.#upstreamSlots;
        if (slots !== undefined)
          this.#ledger.update({ free: slots.free, limit: slots.limit, allocated: slots.allocated.filter((a) => a !== 0) });
        this.#pushSlots();
        this.#options.emit({ type: 'upstreamResubscribed', proxy, attempt: status.attempt, lostForMs: status.lostFor });
        return;
      }
      default:
        return;
    }
  }

  /** Ends every client's links (connected=false, slots reset) and tells subscribers the scanner stopped; returns the clients' addresses. */
  #endLinks(disconnectUpstream: boolean): number[] {
    if (this.#scannerState !== undefined) {
      // Clients learn that no advertisements come for now; one that subscribes meanwhile still gets a state.
      const last = BluetoothScannerStateResponse.fromBinary(this.#scannerState);
      this.#scannerState = BluetoothScannerStateResponse.toBinary({ ...last, state: BluetoothScannerState.STOPPED });
      for (const client of this.#subscribers) client.session.sendRaw(SCANNER_STATE_ID, this.#scannerState);
    }
    this.#deviceOps.clear();
    const ended: number[] = [];
    for (const [address, holder] of this.#ledger.reset()) {
      // The firmware executes a DISCONNECT from any client; without it the link would hold the slot for the new subscriber.
      if (disconnectUpstream) this.#disconnectUpstream(address);
      if (holder instanceof DownstreamClient) {
        ended.push(address);
        holder.session.send(BluetoothDeviceConnectionResponse, { address, connected: false, mtu: 0, error: UPSTREAM_LOST_REASON });
      }
    }
    this.#pushSlots();
    return ended;
  }

  /** Encodes a decoded request again and sends it upstream: what the guard checked is what the proxy decodes. */
  #forward<T extends object>(type: MessageType<T>, message: T): boolean {
    return this.#sendUpstream(messageId(type), encodeMessage(type, message));
  }

  #sendUpstream(id: number, payload: Uint8Array): boolean {
    const api = this.#bluetooth?.api;
    if (api === undefined || api.isClosed) return false;
    this.#forwarding = true;
    try {
      api.sendRaw(id, payload);
      this.#upstreamSends++;
      return true;
    } catch {
      return false;
    } finally {
      this.#forwarding = false;
    }
  }

  /**
   * Asked after each frame a client sent: when that frame went upstream while the upstream has more than
   * UPSTREAM_HOLD_BYTES waiting, the client is held (not read: TCP slows it down) until the upstream is down to
   * UPSTREAM_RESUME_BYTES or gone. A client whose frames the relay answers itself (pings, Hello, DeviceInfo,
   * refusals) is not held for another's backlog.
   */
  #holdWhileUpstreamBehind(session: ApiSession): boolean {
    const client = this.#clients.get(session);
    if (client === undefined || !client.sentUpstream) return false;
    client.sentUpstream = false;
    const api = this.#bluetooth?.api;
    if (api === undefined || api.isClosed || api.sendBacklog <= UPSTREAM_HOLD_BYTES) return false;
    if (!this.#held.has(session))
      this.#held.set(
        session,
        session.onClose(() => this.#held.delete(session)),
      );
    this.#heldTimer ??= setInterval(() => {
      if (api.isClosed || api.sendBacklog <= UPSTREAM_RESUME_BYTES) this.#releaseHeld();
    }, UPSTREAM_POLL_MS);
    return true;
  }

  #releaseHeld(): void {
    clearInterval(this.#heldTimer);
    this.#heldTimer = undefined;
    const held = [...this.#held];
    this.#held.clear();
    for (const [session, off] of held) {
      off();
      session.releaseInput();
    }
  }

  #disconnectUpstream(address: number): void {
    this.#sendUpstream(
      DEVICE_REQUEST_ID,
      BluetoothDeviceRequest.toBinary(BluetoothDeviceRequest.create({ address, requestType: BluetoothDeviceRequestType.DISCONNECT })),
    );
  }

  /** The hot path: one upstream batch to every subscriber, framed once for all plaintext clients. */
  #fanOutAdvertisements(payload: Uint8Array): void {
    const reports = countReports(payload);
    this.advertisements += reports;
    const subscribers = this.#subscribers;
    if (subscribers.length === 0) return;
    if (!this.#corked) {
      // Every batch of one upstream read leaves in one write per client: corked here, uncorked once the read is
      // dispatched (measured: about half the per-client cost of a write per batch).
      // #subscribers is replaced, never mutated, so this array is exactly the set of sockets corked here.
      this.#corked = true;
      for (const client of subscribers) client.session.socket.cork();
      process.nextTick(this.#uncork, subscribers);
    }
    let frame: Uint8Array | undefined;
    let legacy: Uint8Array[] | undefined;
    let legacyFrames: Uint8Array | undefined;
    for (const client of subscribers) {
      if (client.backedUp(reports)) continue;
      if (client.legacy) {
        legacy ??= toLegacyAdvertisements(payload);
        if (client.plaintext) {
          legacyFrames ??= concatFrames(LEGACY_ADVERTISEMENT_MESSAGE_ID, legacy);
          client.session.writeRaw(legacyFrames);
        } else {
          for (const message of legacy) client.session.sendRaw(LEGACY_ADVERTISEMENT_MESSAGE_ID, message);
        }
      } else if (client.plaintext) {
        frame ??= encodePlaintextFrame(RAW_ADVERTISEMENTS_MESSAGE_ID, payload);
        client.session.writeRaw(frame);
      } else {
        client.session.sendRaw(RAW_ADVERTISEMENTS_MESSAGE_ID, payload);
      }
    }
  }

  #route(id: number, payload: Uint8Array): void {
    const holder = this.#ledger.holderOf(varintField(payload, 1));
    if (holder instanceof DownstreamClient) holder.session.sendRaw(id, payload);
  }

  #onServices(payload: Uint8Array): void {
    const holder = this.#ledger.holderOf(varintField(payload, 1));
    if (!(holder instanceof DownstreamClient)) return;
    if (!holder.wantsFullUuids) {
      holder.session.sendRaw(SERVICES_ID, payload);
      return;
    }
    // The upstream session speaks API 1.15 and gets compact UUIDs; an older client must not.
    const message = BluetoothGATTGetServicesResponse.fromBinary(new Uint8Array(payload));
    for (const service of message.services) expandService(service);
    holder.session.send(BluetoothGATTGetServicesResponse, message);
  }

  #routeDeviceOp(id: number, kind: 'unpair' | 'clear', payload: Uint8Array): void {
    const address = varintField(payload, 1);
    const pending = this.#deviceOps.take(kind, address);
    // Not asked for by anyone waiting (a pair request's answer): the link's holder's.
    const target = pending === undefined ? this.#ledger.holderOf(address) : pending.client;
    if (target instanceof DownstreamClient) target.session.sendRaw(id, payload);
  }

  #onUpstreamSlots(payload: Uint8Array): void {
    const message = BluetoothConnectionsFreeResponse.fromBinary(payload);
    this.#upstreamSlots = message;
    // Answers to our probes while another client is the subscriber: its slots are not the relay's to hand out.
    if (this.#subscriptionLost) return;
    this.#ledger.update({ free: message.free, limit: message.limit, allocated: message.allocated.filter((a) => a !== 0) });
    this.#pushSlots();
  }

  #onUpstreamConnection(payload: Uint8Array): void {
    const message = BluetoothDeviceConnectionResponse.fromBinary(payload);
    const holder = this.#ledger.holderOf(message.address);
    if (holder instanceof DownstreamClient) holder.session.sendRaw(CONNECTION_ID, payload);
    else if (holder === RELEASING && message.connected) this.#disconnectUpstream(message.address);
    if (message.connected) this.#ledger.connected(message.address);
    else {
      const before = this.#ledger.free;
      this.#ledger.ended(message.address);
      if (this.#ledger.free !== before) this.#pushSlots();
    }
  }

  /** A connect the in-process pool sends over the shared session (seen by the session's tap). */
  #onLocalDeviceRequest(payload: Uint8Array): void {
    const request = BluetoothDeviceRequest.fromBinary(payload);
    const type = request.requestType;
    if (type !== BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE && type !== BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE) return;
    if (this.#ledger.holderOf(request.address) !== undefined && this.#ledger.holderOf(request.address) !== LOCAL) return;
    this.#ledger.reserve(request.address, LOCAL);
    this.#pushSlots();
  }

  /**
   * Refuses local connects to devices a downstream client holds, when the clients hold every free slot, beyond the
   * quota, or to the proxy's own address (the full-proxy view's marker).
   */
  #guardLocalConnect(address: number): Error | undefined {
    const holder = this.#ledger.holderOf(address);
    const mac = formatMac(address);
    const never = neverALink(address, this.#othersMarker());
    if (never !== undefined) {
      return new BleConnectError(`Connecting to ${mac} via ${this.id} refused: ${never.why}`, address, 0, never.name);
    }
    if (holder !== undefined && holder !== LOCAL) {
      return new BleConnectError(
        `Connecting to ${mac} via ${this.id} refused: a client of the relay holds this device`,
        address,
        RELAY_OUT_OF_SLOTS_ERROR,
        'HELD_BY_RELAY_CLIENT',
        'outOfSlots',
      );
    }
    if (holder === undefined && this.#ledger.free === 0) {
      return new BleConnectError(
        `Connecting to ${mac} via ${this.id} refused: the relay's clients hold every free slot`,
        address,
        RELAY_OUT_OF_SLOTS_ERROR,
        'ESP_GATT_CONN_CONN_CANCEL',
        'outOfSlots',
      );
    }
    const quota = this.#quotaOf(LOCAL);
    if (holder === undefined && this.#ledger.addressesOf(LOCAL).length >= quota) {
      return new BleConnectError(
        `Connecting to ${mac} via ${this.id} refused: the in-process pool holds its ${quota} slots (slotsPerClient)`,
        address,
        RELAY_OUT_OF_SLOTS_ERROR,
        'ESP_GATT_CONN_CONN_CANCEL',
        'outOfSlots',
      );
    }
    return undefined;
  }

  /**
   * The in-process pool's side of the shared session: a connect is judged as `#guardLocalConnect` judges it (at the
   * moment it goes out), and any other request naming a device (disconnect, pair, unpair, clear-cache, GATT,
   * connection parameters) is refused while a client holds that device or its link is being released for a gone
   * client.
   */
  #guardLocalSend(id: number, payload: Uint8Array): Error | undefined {
    const request = localDeviceRequest(id, payload);
    if (request === undefined) return undefined;
    return request.connect ? this.#guardLocalConnect(request.address) : this.#heldRefusal(request.address, request.what);
  }

  #heldRefusal(address: number, what: string): Error | undefined {
    const holder = this.#ledger.holderOf(address);
    if (!(holder instanceof DownstreamClient) && holder !== RELEASING) return undefined;
    const why =
      holder === RELEASING ? 'the relay is releasing the link of a client that went away' : 'a client of the relay holds this device';
    return new DeviceHeldError(`${what} for ${formatMac(address)} via ${this.id} refused: ${why}`, address, this.id);
  }

  /**
   * Pushes the views when the ledger changed since the last push. Until the proxy has shown that it lists its slots,
   * a view cannot list a pending reservation and would not add up; the proxy's own report, which follows each
   * accepted connect at once, brings the views then.
   */
  #pushIfChanged(): void {
    if (this.#ledger.version !== this.#pushedVersion && this.#ledger.listsSeen) this.#pushSlots();
  }

  #pushSlots(): void {
    this.#pushedVersion = this.#ledger.version;
    for (const client of this.#clients.values()) {
      // Slot updates go to subscribers only, as the firmware's do; message 80 is answered once to anyone.
      if (client.subscribed) client.session.send(BluetoothConnectionsFreeResponse, this.#slotView(client));
    }
    const holders: Record<string, string> = {};
    for (const [address, holder] of this.#ledger.entries()) holders[formatMac(address)] = holderLabel(holder);
    this.#options.emit({ type: 'slots', proxy: this.id, free: this.#ledger.free, limit: this.#ledger.limit, holders });
  }

  // ── downstream ──────────────────────────────────────────────────────────────────────────────────────

  #plugin(): SessionPlugin {
    return {
      deviceInfo: () => this.#mirroredInfo(),
      capabilities: () => this.#capabilities(),
      // Reported once the server accepted its Hello, before anything else of the same read is handled: a client
      // dropped for its next frame is reported connected first, and a Hello that does not decode reports nothing.
      onHello: (session) => this.#reportClient(session),
      onMessage: (session, type, payload) => this.#onDownstream(session, type, payload),
      holdInput: (session) => this.#holdWhileUpstreamBehind(session),
      onClose: (session) => this.#onClientClose(session),
    };
  }

  /**
   * The upstream's DeviceInfo as a Bluetooth-proxy-only node: Home Assistant adopts the listener as the proxy and
   * must not look for a web server, areas, sub-devices, entities, voice, Z-Wave or serial proxies the relay does
   * not serve, nor for a password, key provisioning or deep sleep.
   */
  #mirroredInfo(): Partial<DeviceInfoResponse> {
    const info = this.#identity?.info;
    if (info === undefined) return {};
    const { area: _area, ...rest } = info;
    return {
      ...rest,
      usesPassword: false,
      hasDeepSleep: false,
      webserverPort: 0,
      // What this listener does, not the proxy: a plaintext listener would otherwise invite key provisioning.
      apiEncryptionSupported: this.#options.downstreamPsk !== undefined,
      apiEncryptionProvisionable: false,
      legacyVoiceAssistantVersion: 0,
      voiceAssistantFeatureFlags: 0,
      suggestedArea: '',
      devices: [],
      areas: [],
      zwaveProxyFeatureFlags: 0,
      zwaveHomeId: 0,
      serialProxies: [],
    };
  }

  #capabilities(): PartialMessage<DeviceCapabilitiesResponse> {
    const info = this.#identity?.api.deviceInfo;
    if (info === undefined) return {};
    return { bluetoothProxy: { featureFlags: info.bluetoothProxyFeatureFlags, macAddress: info.bluetoothMacAddress } };
  }

  /** Connections refused at the listener's limit and clients the listener closed (backlog, keep-alive, protocol, deadline). */
  #onServerEvent(event: ApiServerEvent, session: ApiSession | undefined): void {
    if (event.type === 'sessionRefused') {
      this.#options.emit({ type: 'clientRefused', proxy: this.id, remote: event.remote, limit: event.limit });
      return;
    }
    const client = session === undefined ? undefined : this.#clients.get(session);
    this.#options.emit({
      type: 'clientDropped',
      proxy: this.id,
      // A client that never said Hello was never reported (clientConnected): it has no number for the operator.
      client: client?.reported === true ? client.id : undefined,
      remote: event.remote,
      reason: event.reason,
      message: event.message,
    });
  }

  #onClient(session: ApiSession): void {
    const identity = { address: plainAddress(session.socket.remoteAddress ?? ''), port: session.socket.remotePort ?? 0, proxy: this.id };
    const { slotsOf, permissionsOf } = this.#options;
    const client = new DownstreamClient(this.#nextClientId++, session, identity, slotsOf(identity), permissionsOf(identity));
    this.#clients.set(session, client);
  }

  #reportClient(session: ApiSession): void {
    const client = this.#clients.get(session);
    if (client === undefined || client.reported) return;
    client.reported = true;
    this.#options.emit({
      type: 'clientConnected',
      proxy: this.id,
      client: client.id,
      remote: client.remote,
      clientInfo: session.clientInfo,
    });
  }

  #onClientClose(session: ApiSession): void {
    const client = this.#clients.get(session);
    if (client === undefined) return;
    this.#clients.delete(session);
    this.#setSubscribed(client, false);
    const released = this.#releaseLinks(client);
    this.#pushIfChanged();
    this.#deviceOps.forget(client);
    // Only clients reported as connected are reported gone: an idle socket is one clientDropped line, not two.
    if (client.reported) {
      this.#options.emit({ type: 'clientDisconnected', proxy: this.id, client: client.id, releasedSlots: released.map(formatMac) });
    }
  }

  /** Disconnects a client's links upstream; its slots count as taken until the proxy reports them free. */
  #releaseLinks(client: DownstreamClient): number[] {
    const released = this.#ledger.release(client);
    for (const address of released) this.#disconnectUpstream(address);
    return released;
  }

  #setSubscribed(client: DownstreamClient, subscribed: boolean): void {
    client.subscribed = subscribed;
    this.#subscribers = [...this.#clients.values()].filter((c) => c.subscribed);
  }

  #onDownstream(session: ApiSession, type: number, payload: Uint8Array): boolean {
    const client = this.#clients.get(session);
    if (client === undefined) return false;
    const sends = this.#upstreamSends;
    const handled = this.#guard.handle(client, type, payload);
    if (this.#upstreamSends !== sends) client.sentUpstream = true;
    // A slot taken (or given back) by one client changes what every other may take: each subscriber hears it at once,
    // as from the firmware, instead of connecting on a stale view and being refused.
    this.#pushIfChanged();
    return handled;
  }

  /** What the request guard may see and do: the ledger, the upstream, the client bookkeeping. */
  #guardHost(): RequestGuardHost {
    return {
      ledger: this.#ledger,
      upstreamReady: () => this.#bluetooth !== undefined && !this.#subscriptionLost,
      scannerState: () => this.#scannerState,
      forward: (type, message) => this.#forward(type, message),
      hasFeature: (feature) => this.#hasFeature(feature),
      legacyForFlagsZero: () => this.#legacyForFlagsZero(),
      setSubscribed: (client, subscribed) => this.#setSubscribed(client as DownstreamClient, subscribed),
      releaseLinks: (client) => void this.#releaseLinks(client as DownstreamClient),
      slotView: (client) => this.#slotView(client as DownstreamClient),
      fullView: (client) =>
        this.#ledger.listsSeen ? this.#ledger.viewFor(client as DownstreamClient, 0, this.#othersMarker()) : undefined,
      proxySlots: () => this.#proxySlots(),
      proxyAddress: () => this.#othersMarker(),
      slotQuota: (client) => this.#quotaOf(client as DownstreamClient),
      identityHeld: (client) => this.#identityHeld(client as DownstreamClient),
      deviceOps: this.#deviceOps,
    };
  }

  /** How many slots a client (all sessions of its address) or the pool may hold at once; the proxy's limit decides the default. */
  #quotaOf(holder: DownstreamClient | typeof LOCAL): number {
    const configured = holder instanceof DownstreamClient ? holder.quota : this.#options.slotsPerClient;
    return slotQuota(configured, this.#ledger.limit);
  }

  /** Slots the client's address holds, over all its sessions. */
  #identityHeld(client: DownstreamClient): number {
    return this.#ledger.count((holder) => holder instanceof DownstreamClient && holder.identity === client.identity);
  }

  /**
   * The slot report `holder` is shown: its quota less what its address's other sessions hold; others' slots, when
   * they hold them all, as one slot of the proxy's own address.
   */
  #slotView(holder: DownstreamClient): SlotView {
    const siblings = this.#identityHeld(holder) - this.#ledger.addressesOf(holder).length;
    return this.#ledger.viewFor(holder, this.#quotaOf(holder) - siblings, this.#othersMarker());
  }

  /**
   * The proxy's slots as counts, for a client that has not subscribed (README "Relay" and "Inspecting"): it can take
   * no slot, so it has no view of its own, and the addresses are other clients' devices it could not act on.
   */
  #proxySlots(): SlotView {
    const none = { free: 0, limit: 0, allocated: [] };
    if (this.#bluetooth === undefined) return none;
    if (this.#subscriptionLost) {
      // The ledger stands still meanwhile; the relay's probes still read the proxy.
      const last = this.#upstreamSlots;
      return last === undefined ? none : { free: last.free, limit: last.limit, allocated: [] };
    }
    const upstream = this.#ledger.upstream;
    return upstream === undefined ? none : { free: this.#ledger.free, limit: upstream.limit, allocated: [] };
  }

  /** The proxy's Bluetooth MAC (its network MAC on firmware that reports none): the address HA knows the scanner by. */
  #othersMarker(): number | undefined {
    const info = this.#identity?.api.deviceInfo;
    return info === undefined ? undefined : ownBluetoothAddress(info);
  }

  #legacyForFlagsZero(): boolean {
    if (this.#options.legacyAdvertisements === 'flags') return true;
    return isReleaseBefore(this.#identity?.info.esphomeVersion ?? '', RAW_ALWAYS_SINCE);
  }

  #hasFeature(feature: number): boolean {
    // The Bluetooth client's flags: also derived from the legacy version of firmware before API 1.9.
    const flags = this.#bluetooth?.features ?? this.#identity?.api.deviceInfo.bluetoothProxyFeatureFlags ?? 0;
    return (flags & feature) === feature;
  }
}

const DEVICE_REQUEST_ID = 68;
const CONNECTION_ID = 69;
const SERVICES_ID = 71;
const SLOTS_ID = 81;
const PAIRING_ID = 85;
const UNPAIRING_ID = 86;
const CLEAR_CACHE_ID = 88;
const SCANNER_STATE_ID = 126;

/** The upstream's firmware as the listener plays it: its versions, and its login rules (no password downstream either way). */
function firmwareOf(identity: Identity): Required<Pick<FirmwareIdentity, 'apiVersion' | 'esphomeVersion'>> & FirmwareIdentity {
  const hello = identity.api.hello;
  const legacy = hello.apiVersionMajor === 1 && hello.apiVersionMinor < HELLO_AUTHENTICATES_MIN_MINOR;
  return {
    apiVersion: { major: hello.apiVersionMajor, minor: hello.apiVersionMinor },
    esphomeVersion: identity.info.esphomeVersion || hello.serverInfo,
    legacyLogin: legacy,
    // 2024 firmware also skips ids it has no handler for before authentication; 2025+ closes the session.
    unknownBeforeAuth: legacy ? 'ignore' : 'close',
  };
}

function holderLabel(holder: SlotHolder): string {
  if (holder === LOCAL) return 'local';
  if (holder === RELEASING) return 'releasing';
  return holder instanceof DownstreamClient ? `client ${holder.id}` : 'unknown';
}

/** Frames each payload under `id` into one buffer (one write per client instead of one per message). */
function concatFrames(id: number, payloads: readonly Uint8Array[]): Uint8Array {
  return concatBytes(payloads.map((p) => encodePlaintextFrame(id, p)));
}

/** Rewrites compact UUIDs as the two words the firmware sends to pre-1.12 clients (§6.8). */
function expandService(service: BluetoothGATTService): void {
  expandUuid(service);
  for (const characteristic of service.characteristics) {
    expandUuid(characteristic);
    for (const descriptor of characteristic.descriptors) expandUuid(descriptor);
  }
}

function expandUuid(item: { uuid: bigint[]; shortUuid: number }): void {
  if (item.shortUuid === 0) return;
  item.uuid = [(BigInt(item.shortUuid) << 32n) | 0x1000n, BASE_UUID_LOW_WORD];
  item.shortUuid = 0;
}
