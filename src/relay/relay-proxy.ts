import { formatMac } from '../bluetooth/address.js';
import type { BluetoothProxy } from '../bluetooth/proxy-client.js';
import { DEFAULT_API_PORT } from '../connection/connection.js';
import { proxyId } from '../connection/proxy-session.js';
import type { ReconnectingConnection } from '../connection/reconnect.js';
import { messageId } from '../frame/message-types.js';
import {
  BluetoothDeviceConnectionResponse,
  BluetoothDeviceRequest,
  BluetoothScannerState,
  BluetoothScannerStateResponse,
} from '../gen/api_pb.js';
import type { ProxyDiagnostics } from '../pool/proxy-health.js';
import type { SharedProxySession } from '../pool/proxy-member.js';
import { ApiServer, type ApiSession, type SessionPlugin } from '../server/api-server.js';
import type { CallOptions } from '../util/abort.js';
import { AdvertisementFanOut } from './advertisement-fanout.js';
import { ConnectSequencer } from './connect-sequencer.js';
import { DeviceOps } from './device-ops.js';
import { DownstreamClient, UPSTREAM_LOST_REASON } from './downstream-client.js';
import { DownstreamClients } from './downstream-clients.js';
import { IdentityMirror } from './identity-mirror.js';
import type { RelayProxySnapshot, UpstreamState } from './relay-status.js';
import { RelayUpstream, type RelayUpstreamHost } from './relay-upstream.js';
import { type GuardedClient, RequestGuard, type RequestGuardHost } from './request-guard.js';
import { SlotArbiter } from './slot-arbiter.js';
import { LOCAL, type SlotLedger } from './slot-ledger.js';
import { barrierTiming, UpstreamBarrier } from './upstream-barrier.js';
import { UpstreamHold } from './upstream-hold.js';
import { routeUpstreamReplies } from './upstream-replies.js';

export { CLIENT_AD_BACKLOG_LIMIT_BYTES, UPSTREAM_LOST_REASON } from './downstream-client.js';
export type { RelayProxyOptions, RelayUpstreamConfig } from './relay-proxy-options.js';
export { RELAY_OUT_OF_SLOTS_ERROR } from './request-guard.js';
export { UPSTREAM_HOLD_BYTES } from './upstream-hold.js';

import type { RelayProxyOptions, RelayUpstreamConfig } from './relay-proxy-options.js';

const DEVICE_REQUEST_ID = messageId(BluetoothDeviceRequest);

/**
 * One upstream proxy behind the relay: holds its single Bluetooth subscription (reconnecting with backoff) and
 * serves the native API to any number of downstream clients on its own listener, under the proxy's identity.
 * Also usable by an in-process ProxyPool as a shared session (`pool.addSession(relayProxy)`).
 *
 * The owner of the relay's parts: the slot arbiter and its ledger (slot-arbiter.ts), the request guard for what
 * clients send (request-guard.ts), the routing of what the proxy sends (upstream-replies.ts), the identity the
 * listener speaks as (identity-mirror.ts) and the client bookkeeping (downstream-clients.ts). What stays here is the
 * upstream session's life-cycle and the wiring.
 */
export class RelayProxy implements SharedProxySession {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly config: RelayUpstreamConfig;
  readonly session: ReconnectingConnection;
  readonly #upstream: RelayUpstream;
  /** Advertisements received from the upstream. */
  advertisements = 0;
  adsPerSecond = 0;
  readonly #options: RelayProxyOptions;
  readonly #identity: IdentityMirror;
  readonly #arbiter: SlotArbiter;
  readonly #ledger: SlotLedger;
  readonly #clients: DownstreamClients;
  readonly #fanOut = new AdvertisementFanOut();
  readonly #hold = new UpstreamHold();
  /** Tells when the live upstream session has handled what was sent on it (undefined while it is down). */
  #barrier: UpstreamBarrier | undefined;
  #server: ApiServer | undefined;
  #listening: Promise<ApiServer> | undefined;
  /** The ledger's version the subscribers' views were last pushed for. */
  #pushedVersion = -1;
  #scannerState: Uint8Array | undefined;
  /** Unpair / clear-cache requests sent upstream, and who asked (bounded per client address, as the slot quota). */
  readonly #deviceOps = new DeviceOps<GuardedClient>({ identityOf: (client) => client.identity });
  readonly #bluetoothListeners = new Set<(bluetooth: BluetoothProxy) => void>();
  readonly #guard: RequestGuard;
  readonly #sequencer: ConnectSequencer;
  #adsAtTick = 0;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(config: RelayUpstreamConfig, options: RelayProxyOptions) {
    this.config = config;
    this.host = config.host;
    this.port = config.port ?? DEFAULT_API_PORT;
    this.id = proxyId(config);
    this.#options = options;
    this.#identity = new IdentityMirror(options.downstreamPsk !== undefined);
    this.#arbiter = new SlotArbiter({
      id: this.id,
      slotsPerClient: options.slotsPerClient,
      upstreamState: () => this.#upstream.slotsState,
      proxyAddress: () => this.#identity.proxyAddress(),
    });
    this.#ledger = this.#arbiter.ledger;
    this.#clients = new DownstreamClients({
      proxy: this.id,
      slotsOf: options.slotsOf,
      permissionsOf: options.permissionsOf,
      emit: options.emit,
    });
    this.#guard = new RequestGuard(this.#guardHost());
    this.#sequencer = new ConnectSequencer({
      ledger: this.#ledger,
      barrier: () => this.#barrier,
      forward: (request) => this.#upstream.forward(BluetoothDeviceRequest, request),
      disconnect: (address) => this.#upstream.disconnect(address),
      changed: () => this.#pushIfChanged(),
      retry: (client, request) => {
        this.#guard.connectAgain(client, request);
        this.#pushIfChanged();
      },
    });
    const upstream: RelayUpstream = new RelayUpstream(
      config,
      {
        clientInfo: options.clientInfo,
        keepaliveInterval: options.keepaliveInterval,
        backoff: options.backoff,
        permanentErrors: options.permanentErrors,
        // The relay's own tap (below) stays beside it: proxySession joins the two.
        tapFor: options.tapFor,
        connectTimeout: options.connectTimeout,
        // What an in-process pool sends over the shared session: refused when it would act on a client's link, and
        // its connects take slots too. The relay's own sends (for its clients, its releases) pass as they are.
        sendGuard: (id, payload): Error | undefined => (upstream.forwarding ? undefined : this.#arbiter.guardLocalSend(id, payload)),
        tap: (direction, id, payload) => {
          if (direction !== 'c2d' || id !== DEVICE_REQUEST_ID || upstream.forwarding) return;
          const local = this.#arbiter.noteLocalConnect(payload);
          if (local === undefined) return;
          // The tap sees the connect before it is written: the barrier's ping must follow it.
          queueMicrotask(() => this.#sequencer.track(local.address, local.reservation));
          this.#pushSlots();
        },
        subscriberCheckTimeout: options.subscriberCheckTimeout,
        watchdog: options.watchdog,
        resubscribe: options.resubscribe,
      },
      this.#upstreamHost(),
    );
    this.#upstream = upstream;
    this.session = upstream.session;
  }

  /** The Bluetooth client of the live upstream session. */
  get bluetooth(): BluetoothProxy | undefined {
    return this.#upstream.bluetooth;
  }

  /** Upstream session state. */
  get state(): UpstreamState {
    return this.#upstream.state;
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
    return this.#arbiter.heldElsewhere(address);
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
      const { listenHost, listenPort, downstreamPsk, allowPlaintext, clientBacklog } = this.#options;
      const server = new ApiServer({
        host: listenHost,
        port: listenPort === 0 ? 0 : listenPort + portOffset,
        ...this.#identity.serverIdentity(),
        ...(downstreamPsk === undefined ? {} : { psk: downstreamPsk }),
        plugins: [this.#plugin()],
        ...(this.#options.clientHandshakeTimeout === undefined ? {} : { handshakeTimeout: this.#options.clientHandshakeTimeout }),
        // As the firmware: ping a client silent after Hello, drop it when it stays silent, so a vanished host frees its slots.
        keepaliveInterval: this.#options.clientKeepaliveInterval,
        maxConnections: this.#options.maxClients,
        evictUnauthenticated: this.#options.evictUnauthenticated,
        ...(allowPlaintext === undefined ? {} : { allowPlaintext }),
        ...(clientBacklog === undefined ? {} : { backlog: clientBacklog }),
        label: `relay listener of ${this.id}`,
        onEvent: (event, session) => this.#clients.onServerEvent(event, session),
        // Clients stay for days: no per-message history.
        recordReceived: false,
      });
      server.onSession((session) => this.#clients.add(session));
      await server.listen();
      this.#server = server;
      const { event: _event, ...info } = server.listeningInfo();
      this.#options.emit({ type: 'listening', proxy: this.id, ...info });
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
    this.#clients.reportSlow();
  }

  /** The upstream's health in the pool's per-proxy record (state, slots, subscription, ads/s, last errors). */
  diagnostics(now = Date.now()): ProxyDiagnostics {
    const reported = this.#upstream.bluetooth === undefined ? undefined : this.#ledger.upstream;
    return this.#upstream.health.diagnostics(
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
    const api = this.#upstream.bluetooth?.api;
    const server = this.#server;
    const clients = this.#clients.snapshots((client) => this.#ledger.addressesOf(client).map(formatMac));
    return {
      id: this.id,
      upstream: {
        host: this.host,
        port: this.port,
        state: this.#upstream.state,
        name: this.#identity.info?.name,
        esphomeVersion: this.#identity.info?.esphomeVersion,
        encrypted: this.config.psk !== undefined,
        lastError: this.#upstream.state === 'connected' ? undefined : this.session.lastError?.message,
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
    this.#hold.release();
    // A listener still waiting for the proxy's first answer gives up with the session.
    if (this.#server === undefined) await this.session.close();
    await this.#listening?.catch(() => undefined);
    await this.#server?.close({ ...options, disconnect: true });
    if (this.bluetooth !== undefined) await this.bluetooth.detach({ timeout: 2_000 }).catch(() => {});
    await this.session.close();
  }

  // ── upstream ────────────────────────────────────────────────────────────────────────────────────────

  /** Ends every client's links (connected=false, slots reset) and tells subscribers the scanner stopped; returns the clients' addresses. */
  #endLinks(disconnectUpstream: boolean): number[] {
    if (this.#scannerState !== undefined) {
      // Clients learn that no advertisements come for now; one that subscribes meanwhile still gets a state.
      const last = BluetoothScannerStateResponse.fromBinary(this.#scannerState);
      this.#scannerState = BluetoothScannerStateResponse.toBinary({ ...last, state: BluetoothScannerState.STOPPED });
      this.#clients.showScannerState(this.#scannerState);
    }
    this.#deviceOps.clear();
    this.#sequencer.clear();
    const ended: number[] = [];
    for (const [address, holder] of this.#ledger.reset()) {
      // The firmware executes a DISCONNECT from any client; without it the link would hold the slot for the new subscriber.
      if (disconnectUpstream) this.#upstream.disconnect(address);
      if (holder instanceof DownstreamClient) {
        ended.push(address);
        holder.session.send(BluetoothDeviceConnectionResponse, { address, connected: false, mtu: 0, error: UPSTREAM_LOST_REASON });
      }
    }
    this.#pushSlots();
    return ended;
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
    this.#clients.showSlots((client) => this.#arbiter.slotView(client));
    this.#options.emit({
      type: 'slots',
      proxy: this.id,
      free: this.#ledger.free,
      limit: this.#ledger.limit,
      holders: this.#arbiter.holders(),
    });
  }

  // ── downstream ──────────────────────────────────────────────────────────────────────────────────────

  #plugin(): SessionPlugin {
    return {
      deviceInfo: () => this.#identity.deviceInfo(),
      capabilities: () => this.#identity.capabilities(),
      // Reported once the server accepted its Hello, before anything else of the same read is handled: a client
      // dropped for its next frame is reported connected first, and a Hello that does not decode reports nothing.
      onHello: (session) => this.#clients.report(session),
      onMessage: (session, type, payload) => this.#onDownstream(session, type, payload),
      holdInput: (session) => this.#holdWhileUpstreamBehind(session),
      onClose: (session) => this.#onClientClose(session),
    };
  }

  /**
   * Asked after each frame a client sent: only a client whose frame went upstream is held while the upstream is
   * behind (UpstreamHold); a client whose frames the relay answers itself (pings, Hello, DeviceInfo, refusals) is
   * not held for another's backlog.
   */
  #holdWhileUpstreamBehind(session: ApiSession): boolean {
    const client = this.#clients.get(session);
    if (client === undefined || !client.sentUpstream) return false;
    client.sentUpstream = false;
    return this.#hold.hold(session, this.#upstream.bluetooth?.api);
  }

  #onClientClose(session: ApiSession): void {
    const client = this.#clients.remove(session);
    if (client === undefined) return;
    const released = this.#releaseLinks(client);
    this.#pushIfChanged();
    this.#deviceOps.forget(client);
    this.#clients.reportGone(client, released.map(formatMac));
  }

  /** Disconnects a client's links upstream; its slots count as taken until the proxy reports them free. */
  #releaseLinks(client: GuardedClient): number[] {
    this.#sequencer.forget(client);
    const released = this.#ledger.release(client);
    for (const address of released) this.#upstream.disconnect(address);
    return released;
  }

  #onDownstream(session: ApiSession, type: number, payload: Uint8Array): boolean {
    const client = this.#clients.get(session);
    if (client === undefined) return false;
    const sends = this.#upstream.sends;
    const handled = this.#guard.handle(client, type, payload);
    if (this.#upstream.sends !== sends) client.sentUpstream = true;
    // A slot taken (or given back) by one client changes what every other may take: each subscriber hears it at once,
    // as from the firmware, instead of connecting on a stale view and being refused.
    this.#pushIfChanged();
    return handled;
  }

  /** What the upstream life-cycle tells the relay at each step of a session. */
  #upstreamHost(): RelayUpstreamHost {
    return {
      id: this.id,
      emit: this.#options.emit,
      closing: () => this.#closed,
      identity: () => this.#identity.info,
      check: (info) => this.#identity.check(info),
      bind: (api) => {
        const barrier = new UpstreamBarrier(api, barrierTiming(this.#options.keepaliveInterval, this.#options.connectPingTimeout));
        this.#barrier = barrier;
        const offs = routeUpstreamReplies(api, {
          ledger: this.#ledger,
          deviceOps: this.#deviceOps,
          fanOut: this.#fanOut,
          clients: this.#clients,
          advertised: (reports) => {
            this.advertisements += reports;
          },
          scannerState: (payload) => {
            this.#scannerState = payload;
          },
          slots: (message) => {
            if (this.#arbiter.report(message)) this.#pushSlots();
          },
          disconnect: (address) => this.#upstream.disconnect(address),
          pushSlots: () => this.#pushSlots(),
          quiet: (address) => this.#sequencer.quiet(address),
        });
        offs.push(() => {
          barrier.close();
          if (this.#barrier === barrier) this.#barrier = undefined;
        });
        return offs;
      },
      attachFailed: () => void this.#ledger.reset(),
      attached: (info, api, bluetooth) => {
        bluetooth.connectGuard = (address) => this.#arbiter.guardLocalConnect(address);
        this.#identity.adopt(info, api, this.#server);
      },
      announce: (bluetooth) => {
        for (const listener of this.#bluetoothListeners) listener(bluetooth);
      },
      lost: () => void this.#endLinks(false),
      subscriptionLost: () => this.#endLinks(true),
      resubscribed: () => {
        this.#arbiter.resubscribed();
        this.#pushSlots();
      },
    };
  }

  /** What the request guard may see and do: the arbiter's ledger and decisions, the upstream, the client bookkeeping. */
  #guardHost(): RequestGuardHost {
    const arbiter = this.#arbiter;
    return {
      ledger: arbiter.ledger,
      upstreamReady: () => this.#upstream.slotsState === 'ready',
      scannerState: () => this.#scannerState,
      forward: (type, message) => this.#upstream.forward(type, message),
      connect: (client, request) => this.#sequencer.connect(client, request),
      connectHeld: (client, request) => this.#sequencer.again(client, request),
      dropWaiting: (client, address) => this.#sequencer.disconnecting(client, address),
      disconnect: (_client, request) => {
        if (!this.#upstream.forward(BluetoothDeviceRequest, request)) return false;
        this.#ledger.disconnecting(request.address);
        return true;
      },
      hasFeature: (feature) => {
        // The Bluetooth client's flags: also derived from the legacy version of firmware before API 1.9.
        const flags = this.#upstream.bluetooth?.features ?? this.#identity.featureFlags;
        return (flags & feature) === feature;
      },
      legacyForFlagsZero: () => this.#identity.legacyForFlagsZero(this.#options.legacyAdvertisements),
      setSubscribed: (client, subscribed) => this.#clients.setSubscribed(client as DownstreamClient, subscribed),
      releaseLinks: (client) => void this.#releaseLinks(client),
      slotView: (client) => arbiter.slotView(client),
      fullView: (client) => arbiter.fullView(client),
      proxySlots: () => arbiter.proxySlots(),
      proxyAddress: () => this.#identity.proxyAddress(),
      slotQuota: (client) => arbiter.quotaOf(client),
      identityHeld: (client) => arbiter.identityHeld(client),
      deviceOps: this.#deviceOps,
    };
  }
}
