import type { PartialMessage } from '@protobuf-ts/runtime';
import { BluetoothProxyFeature } from '../bluetooth/features.js';
import { shortUuidOf, uuidToWords } from '../bluetooth/uuid.js';
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
  BluetoothGATTGetServicesRequest,
  BluetoothGATTGetServicesResponse,
  BluetoothGATTNotifyDataResponse,
  BluetoothGATTNotifyRequest,
  BluetoothGATTNotifyResponse,
  BluetoothGATTReadDescriptorRequest,
  BluetoothGATTReadRequest,
  BluetoothGATTReadResponse,
  type BluetoothGATTService,
  BluetoothGATTWriteDescriptorRequest,
  BluetoothGATTWriteRequest,
  BluetoothGATTWriteResponse,
  BluetoothLEAdvertisementResponse,
  BluetoothLERawAdvertisementsResponse,
  BluetoothScannerSetModeRequest,
  BluetoothScannerStateResponse,
  BluetoothSetConnectionParamsRequest,
  BluetoothSetConnectionParamsResponse,
  type DeviceCapabilitiesResponse,
  type DeviceInfoResponse,
  SubscribeBluetoothLEAdvertisementsRequest,
} from '../gen/api_pb.js';
import type { ApiServer, ApiSession, SessionPlugin } from '../server/api-server.js';
import { type BoardProfile, boardProfile, type ProxyBoard } from './boards.js';
import {
  type FirmwareGeneration,
  type FirmwareProfile,
  firmwareProfile,
  legacyAdvertisement,
  type SubscriptionPolicy,
} from './firmware.js';
import type { PeripheralProfile } from './profile.js';
import { SimulatedPeripheral } from './simulated-peripheral.js';

/** Current ESP32 firmware with `bluetooth_proxy: active: true` reports every feature bit. */
export const ALL_PROXY_FEATURES = 0xff;
/** The firmware flushes its advertisement queue at 16 reports (one Wi-Fi MTU) ... */
export const ADVERTISEMENT_BATCH_SIZE = 16;
/** ... or every 100 ms, whichever comes first. */
export const ADVERTISEMENT_FLUSH_MS = 100;
/** How often the firmware notices that the Bluetooth subscriber went away and drops its links. */
const SUBSCRIBER_CHECK_MS = 100;
/** A connect to an address nobody advertises fails like an out-of-range device (ESP_GATT_ERROR 133). */
const UNREACHABLE_CONNECT_MS = 300;
/** Largest GetServices reply the firmware builds before starting the next one. */
const SERVICES_CHUNK_BYTES = 1360;
/** ESP-IDF reasons used by the simulation. */
const REASON = { supervisionTimeout: 0x08, localHost: 0x16, gattError: 0x85 } as const;
/** ESPHome's "not connected" error value. */
const NOT_CONNECTED = -1;
/** Where the phantom devices holding busy slots start (F0:00:00:00:00:10, …11, …). */
const PHANTOM_BASE = 0xf0_00_00_00_00_10;
/** Requests only the connection half of the proxy handles (slot query included): unanswered on a board without it. */
const CONNECTION_REQUESTS = new Set([68, 70, 73, 75, 76, 77, 78, 80, 145]);
/** Requests whose field 1 is the device's uint64 address, with the type each decodes as. */
const ADDRESSED_REQUESTS = new Map<number, { fromBinary(bytes: Uint8Array): { address: number } }>([
  [68, BluetoothDeviceRequest],
  [70, BluetoothGATTGetServicesRequest],
  [73, BluetoothGATTReadRequest],
  [75, BluetoothGATTWriteRequest],
  [76, BluetoothGATTReadDescriptorRequest],
  [77, BluetoothGATTWriteDescriptorRequest],
  [78, BluetoothGATTNotifyRequest],
  [145, BluetoothSetConnectionParamsRequest],
]);

/**
 * protobuf-ts reads a uint64 address of 2^63 or more as a negative number, which it then refuses to encode
 * in a reply or slot list: one such request would break every later session. No device has such an address.
 */
function isBluetoothAddress(address: number | undefined): boolean {
  return address === undefined || (Number.isSafeInteger(address) && address >= 0 && address < 2 ** 48);
}

/**
 * Field 1 of an addressed request, decoded as that very request (a payload another type would refuse may
 * still decode as this one, address and all); undefined when it does not decode, which its handler reports.
 */
function addressOf(type: number, payload: Uint8Array): number | undefined {
  try {
    return ADDRESSED_REQUESTS.get(type)?.fromBinary(payload).address;
  } catch {
    return undefined;
  }
}

/** Per-address overrides tests apply at run time. */
export interface ConnectBehaviour {
  /** Fail the next connects with this reason (e.g. 0x100 CONN_CANCEL, 0x3e, 0x85). */
  connectError?: number;
  /** How many connects fail with connectError (default: all). */
  connectErrorCount?: number;
  connectDelayMs?: number;
  /** Drop the link this long after it came up. */
  linkLossAfterMs?: number;
  /** Never answer a connect (the client must time out and cancel). */
  hang?: boolean;
  /**
   * The reason of the second `connected=false` (the close event) after a failed connect, when it differs from the
   * first: esphome#18640 logs a cancel (0x100) 20.0 s after the connect, then the open's status 133 (0x85).
   */
  closeError?: number;
  /** Time between the two `connected=false` of a failed connect (default 2 ms; esphome#18640: ~170 ms). */
  closeDelayMs?: number;
  /**
   * A ghost link (home-assistant/core#176516): the first DISCONNECT of an established link is answered but never
   * completed, so the slot stays allocated and the peripheral stays connected (silent); another DISCONNECT ends it.
   */
  ghostDisconnect?: boolean;
}

/** Options of the simulated Bluetooth proxy. */
export interface SimulatedProxyOptions {
  peripherals?: readonly PeripheralProfile[];
  /** Connection slots (firmware default 3). */
  slots?: number;
  /**
   * Slots held by phantom devices: links of another client that connects without subscribing (the firmware obeys
   * anyone). Like every link they exist only while the proxy has a Bluetooth subscriber (without one the firmware
   * drops them all); that client opens them again whenever one subscribes.
   */
  slotsBusy?: number;
  featureFlags?: number;
  bluetoothMac?: string;
  /** Added to every peripheral's RSSI: places this proxy nearer or farther. */
  rssiOffset?: number;
  scannerMode?: 'active' | 'passive';
  /** Advertise at all (benchmarks switch it off and blast batches instead). */
  advertise?: boolean;
  random?: () => number;
  /** Behave like this firmware generation (features, advertisement format, DeviceInfo fields, subscription policy); default: the newest. */
  firmware?: FirmwareGeneration;
  /** Who keeps the subscription when a second client subscribes; default from `firmware`, else first-wins. */
  subscriptionPolicy?: SubscriptionPolicy;
  /**
   * The hardware played (default `esp32`): an advertisement-only board has no connection half (its connection, GATT and
   * slot requests go unanswered), an RP2040/RP2350 one slot. Independent of `firmware`; explicit `slots`/`featureFlags` win.
   */
  board?: ProxyBoard;
}

type SlotPhase = 'connecting' | 'connected' | 'disconnecting';

interface Slot {
  readonly address: number;
  phase: SlotPhase;
  readonly peripheral: SimulatedPeripheral | undefined;
  readonly withCache: boolean;
  servicesSent: boolean;
  readonly timers: Set<NodeJS.Timeout>;
  offNotify: (() => void) | undefined;
  offLinkLoss: (() => void) | undefined;
  /** Its first DISCONNECT was answered but not carried out (ConnectBehaviour.ghostDisconnect). */
  ghost?: boolean;
}

/**
 * The Bluetooth half of a simulated ESPHome proxy: single advertisement subscriber, batched raw
 * advertisements, scanner state, connection slots with the firmware's replies, GATT against
 * simulated peripherals. Plugged into a ApiServer.
 */
export class SimulatedProxy implements SessionPlugin {
  readonly featureFlags: number;
  readonly bluetoothMac: string;
  readonly limit: number;
  readonly peripherals: SimulatedPeripheral[];
  /** Who keeps the subscription when a second client subscribes (tests may switch it at run time). */
  subscriptionPolicy: SubscriptionPolicy;
  /** The generation played, when one was chosen. */
  readonly firmware: FirmwareProfile | undefined;
  /** The board played. */
  readonly board: ProxyBoard;
  /** Connect requests received (tests count them). */
  connectRequests = 0;
  /** GetServices requests received (cached reconnects must not send any). */
  servicesRequests = 0;
  #subscriber: ApiSession | undefined;
  /** Before 2023.6: every session that subscribed gets advertisements, and every session every other answer. */
  readonly #answersToAll: boolean;
  readonly #adSessions = new Set<ApiSession>();
  /** The node this plugin serves (known from its first message): whom answers reach before 2023.6. */
  #server: ApiServer | undefined;
  /** The subscriber set SUBSCRIPTION_RAW_ADVERTISEMENTS (firmware before 2025.8 sends parsed ones otherwise). */
  #rawRequested = true;
  readonly #slots = new Map<number, Slot>();
  /** Phantom links wanted (slotsBusy); they hold slots only while somebody is subscribed (see #phantoms). */
  #phantomCount: number;
  readonly #behaviours = new Map<number, ConnectBehaviour>();
  readonly #options: SimulatedProxyOptions;
  readonly #board: BoardProfile;
  #mode: 0 | 1;
  readonly #configuredMode: 0 | 1;
  #adTimer: NodeJS.Timeout | undefined;
  #adQueue: Array<{ address: number; rssi: number; addressType: number; data: Uint8Array }> = [];
  readonly #nextAdAt = new Map<SimulatedPeripheral, number>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #orphanCheck: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: SimulatedProxyOptions = {}) {
    this.#options = options;
    this.firmware = options.firmware === undefined ? undefined : firmwareProfile(options.firmware);
    this.board = options.board ?? 'esp32';
    this.#board = boardProfile(this.board);
    this.featureFlags = options.featureFlags ?? (this.firmware?.featureFlags ?? ALL_PROXY_FEATURES) & this.#board.featureMask;
    this.subscriptionPolicy = options.subscriptionPolicy ?? this.firmware?.subscriptionPolicy ?? 'first-wins';
    this.#answersToAll = this.firmware?.bluetoothAnswers === 'all-clients';
    this.bluetoothMac = options.bluetoothMac ?? 'AA:BB:CC:00:00:01';
    this.limit = options.slots ?? this.#board.slots ?? 3;
    const random = options.random;
    this.peripherals = (options.peripherals ?? []).map((p) => new SimulatedPeripheral(p, random ? { random } : {}));
    this.#phantomCount = Math.max(0, Math.min(options.slotsBusy ?? 0, this.limit));
    this.#configuredMode = options.scannerMode === 'passive' ? 0 : 1;
    this.#mode = this.#configuredMode;
  }

  /** Addresses holding a slot (phantoms first), as the proxy reports them. */
  get allocated(): number[] {
    return [...this.#phantoms(), ...this.#slots.keys()];
  }

  /** Addresses holding a slot for a link or a connect attempt (no phantoms). */
  get linkAddresses(): number[] {
    return [...this.#slots.keys()];
  }

  /** Free slots. */
  get free(): number {
    return Math.max(0, this.limit - this.#phantoms().length - this.#slots.size);
  }

  /** The session that holds the Bluetooth subscription (before 2023.6: the first of those that subscribed). */
  get subscriber(): ApiSession | undefined {
    return this.#answersToAll ? this.#adSessions.values().next().value : this.#subscriber;
  }

  /** Overrides connect behaviour for one address (undefined clears it). */
  setBehaviour(address: number, behaviour: ConnectBehaviour | undefined): void {
    if (behaviour === undefined) this.#behaviours.delete(address);
    else this.#behaviours.set(address, { ...behaviour });
  }

  /** Occupies or frees phantom slots at run time (another client grabbing slots; held only while somebody is subscribed). */
  setBusySlots(count: number): void {
    this.#phantomCount = Math.max(0, Math.min(count, this.limit));
    this.#pushSlots();
  }

  /** Drops an established link as if the peripheral went out of range. */
  dropLink(address: number, reason: number = REASON.supervisionTimeout): void {
    const slot = this.#slots.get(address);
    if (slot !== undefined) this.#endLink(slot, reason);
  }

  /** Sends prepared advertisement batches straight to the subscriber (benchmarks); dropped for a subscriber that is behind. */
  sendRawBatch(batch: PartialMessage<BluetoothLERawAdvertisementsResponse>): void {
    this.#toAdSessions(BluetoothLERawAdvertisementsResponse, batch, batch.advertisements?.length ?? 1);
  }

  deviceInfo(): Partial<DeviceInfoResponse> {
    const firmware = this.firmware;
    // The default board leaves model and manufacturer to the node (ApiServerOptions.model).
    const board = this.board === 'esp32' ? {} : { model: this.#board.model, manufacturer: this.#board.manufacturer };
    if (firmware === undefined) return { ...board, bluetoothProxyFeatureFlags: this.featureFlags, bluetoothMacAddress: this.bluetoothMac };
    // Field 15 arrived with API 1.9; before it only field 11 (1 = passive, the generation's number = active proxy).
    const active = (this.featureFlags & BluetoothProxyFeature.ACTIVE_CONNECTIONS) !== 0;
    return {
      ...board,
      bluetoothProxyFeatureFlags: firmware.apiVersion.minor >= 9 ? this.featureFlags : 0,
      legacyBluetoothProxyVersion: firmware.legacyProxyVersion === 0 ? 0 : active ? firmware.legacyProxyVersion : 1,
      bluetoothMacAddress: firmware.reportsBluetoothMacAndAllocated ? this.bluetoothMac : '',
    };
  }

  capabilities(): PartialMessage<DeviceCapabilitiesResponse> {
    return { bluetoothProxy: { featureFlags: this.featureFlags, macAddress: this.bluetoothMac } };
  }

  onMessage(session: ApiSession, type: number, payload: Uint8Array): boolean {
    this.#server ??= session.server;
    // No handler compiled: the node skips the request silently, as it does any id it does not know.
    if (!this.#board.connections && CONNECTION_REQUESTS.has(type)) return false;
    if (ADDRESSED_REQUESTS.has(type) && !isBluetoothAddress(addressOf(type, payload))) return true;
    switch (type) {
      case 66:
        this.#subscribe(session, SubscribeBluetoothLEAdvertisementsRequest.fromBinary(payload).flags);
        return true;
      case 87:
        if (this.#answersToAll) this.#stopAdvertisingTo(session);
        else if (this.#subscriber === session) this.#unsubscribe();
        return true;
      case 80:
        session.send(BluetoothConnectionsFreeResponse, this.#slotsMessage());
        return true;
      case 127:
        this.#setMode(BluetoothScannerSetModeRequest.fromBinary(payload).mode === 1 ? 1 : 0);
        return true;
      case 68:
        this.#deviceRequest(BluetoothDeviceRequest.fromBinary(payload));
        return true;
      case 70:
        this.#getServices(BluetoothGATTGetServicesRequest.fromBinary(payload).address, session);
        return true;
      case 73: {
        const m = BluetoothGATTReadRequest.fromBinary(payload);
        this.#gatt(m.address, m.handle, (p) => p.read(m.handle), 'read');
        return true;
      }
      case 75: {
        const m = BluetoothGATTWriteRequest.fromBinary(payload);
        this.#gatt(m.address, m.handle, (p) => p.write(m.handle, m.data, m.response), m.response ? 'write' : 'silent');
        return true;
      }
      case 76: {
        const m = BluetoothGATTReadDescriptorRequest.fromBinary(payload);
        this.#gatt(m.address, m.handle, (p) => p.readDescriptor(m.handle), 'read');
        return true;
      }
      case 77: {
        const m = BluetoothGATTWriteDescriptorRequest.fromBinary(payload);
        this.#gatt(m.address, m.handle, (p) => p.writeDescriptor(m.handle, m.data), 'write');
        return true;
      }
      case 78: {
        const m = BluetoothGATTNotifyRequest.fromBinary(payload);
        this.#gatt(m.address, m.handle, (p) => p.registerNotify(m.handle, m.enable), 'notify');
        return true;
      }
      case 145: {
        const m = BluetoothSetConnectionParamsRequest.fromBinary(payload);
        const connected = this.#slots.get(m.address)?.phase === 'connected';
        this.#toSubscriber(BluetoothSetConnectionParamsResponse, { address: m.address, error: connected ? 0 : NOT_CONNECTED });
        return true;
      }
      default:
        return false;
    }
  }

  onClose(session: ApiSession): void {
    if (this.#answersToAll) {
      this.#stopAdvertisingTo(session);
      this.#scheduleOrphanCheck();
    } else if (this.#subscriber === session) {
      this.#unsubscribe();
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#orphanCheck);
    clearInterval(this.#adTimer);
    this.#adTimer = undefined;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const slot of this.#slots.values()) this.#clearSlot(slot);
    this.#slots.clear();
    for (const peripheral of this.peripherals) peripheral.close();
  }

  #subscribe(session: ApiSession, flags: number): void {
    if (this.#answersToAll) {
      this.#adSessions.add(session);
    } else {
      // 2023.6 to 2026.6: "Only one API subscription is allowed at a time" — any subscribe while one exists is
      // ignored, even the subscriber's own. From 2026.7 the newest subscriber takes the slot over; the firmware
      // tells the previous one nothing, and the links it opened stay up, their events now going to the new one.
      if (this.#subscriber !== undefined && this.subscriptionPolicy === 'first-wins') return;
      this.#subscriber = session;
    }
    this.#rawRequested = (flags & 1) !== 0;
    if (this.featureFlags & BluetoothProxyFeature.FEATURE_STATE_AND_MODE) this.#sendScannerState(2);
    if (this.#options.advertise !== false && this.#adTimer === undefined && this.peripherals.length > 0) {
      this.#adTimer = setInterval(() => this.#advertiseTick(), ADVERTISEMENT_FLUSH_MS);
    }
  }

  #unsubscribe(): void {
    this.#subscriber = undefined;
    this.#stopAdvertising();
    this.#scheduleOrphanCheck();
  }

  /** Before 2023.6: `session` gets no more advertisements (unsubscribed or gone); the links stay. */
  #stopAdvertisingTo(session: ApiSession): void {
    this.#adSessions.delete(session);
    if (this.#adSessions.size === 0) this.#stopAdvertising();
  }

  #stopAdvertising(): void {
    clearInterval(this.#adTimer);
    this.#adTimer = undefined;
    this.#adQueue = [];
  }

  /**
   * The phantom links holding a slot now: none while nobody is subscribed (the firmware drops every link then, the
   * phantoms' included), all of them while somebody is (their client opens them again at once).
   */
  #phantoms(): number[] {
    if (this.#phantomCount === 0 || !this.#hasBluetoothClient()) return [];
    return Array.from({ length: this.#phantomCount }, (_, i) => PHANTOM_BASE + i);
  }

  /** Whether anyone receives the Bluetooth answers: the subscriber, or before 2023.6 any connected client. */
  #hasBluetoothClient(): boolean {
    if (!this.#answersToAll) return this.#subscriber !== undefined;
    for (const session of this.#server?.sessions ?? []) if (session.state !== 'closed') return true;
    return false;
  }

  /**
   * With no subscriber (before 2023.6: no client connected at all) the firmware's loop disconnects every
   * slot it holds (checked every 100 ms) and tells nobody: its replies go to the subscriber only. That
   * includes a slot that a connect from an unsubscribed client has just reserved.
   */
  #scheduleOrphanCheck(): void {
    if (this.#orphanCheck !== undefined || this.#closed) return;
    this.#orphanCheck = setTimeout(() => {
      this.#orphanCheck = undefined;
      if (this.#hasBluetoothClient()) return;
      for (const slot of [...this.#slots.values()]) this.#endLink(slot, REASON.localHost);
    }, SUBSCRIBER_CHECK_MS);
  }

  #advertiseTick(): void {
    const now = Date.now();
    for (const peripheral of this.peripherals) {
      const due = this.#nextAdAt.get(peripheral) ?? 0;
      if (now < due) continue;
      this.#nextAdAt.set(peripheral, now + peripheral.advertisingIntervalMs);
      // A connected peripheral usually stops advertising; a device may also switch its advertising off.
      if (this.#slots.get(peripheral.address)?.phase === 'connected' || !peripheral.advertisingEnabled) continue;
      const ad = peripheral.nextAdvertisement(now);
      this.#adQueue.push({ ...ad, rssi: ad.rssi + (this.#options.rssiOffset ?? 0) });
    }
    const format = this.firmware?.advertisements ?? 'raw';
    if (format === 'legacy' || (format === 'raw-if-requested' && !this.#rawRequested)) {
      // Parsed advertisements: one message per report.
      for (const ad of this.#adQueue.splice(0)) {
        this.#toAdSessions(BluetoothLEAdvertisementResponse, legacyAdvertisement(ad.address, ad.rssi, ad.addressType, ad.data), 1);
      }
      return;
    }
    while (this.#adQueue.length > 0) {
      const batch = this.#adQueue.splice(0, ADVERTISEMENT_BATCH_SIZE);
      this.#toAdSessions(BluetoothLERawAdvertisementsResponse, { advertisements: batch }, batch.length);
    }
  }

  #setMode(mode: 0 | 1): void {
    if (mode === this.#mode) return;
    this.#mode = mode;
    this.#sendScannerState(4);
    this.#later(5, () => this.#sendScannerState(5));
    this.#later(10, () => this.#sendScannerState(1));
    this.#later(15, () => this.#sendScannerState(2));
  }

  #sendScannerState(state: number): void {
    this.#toSubscriber(BluetoothScannerStateResponse, { state, mode: this.#mode, configuredMode: this.#configuredMode });
  }

  #deviceRequest(m: BluetoothDeviceRequest): void {
    switch (m.requestType) {
      case BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE:
      case BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE:
        this.#connect(m.address, m.hasAddressType, m.requestType === BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE);
        return;
      case BluetoothDeviceRequestType.CONNECT:
        this.#connectionResponse(m.address, false, 0, 0);
        return;
      case BluetoothDeviceRequestType.DISCONNECT:
        this.#disconnect(m.address);
        return;
      case BluetoothDeviceRequestType.PAIR: {
        if (!(this.featureFlags & BluetoothProxyFeature.PAIRING)) return; // no handler in such firmware
        const slot = this.#slots.get(m.address);
        if (slot?.phase !== 'connected' || slot.peripheral === undefined) return; // firmware: no reply
        const result = slot.peripheral.pair();
        this.#later(slot.peripheral.responseDelayMs, () =>
          this.#toSubscriber(BluetoothDevicePairingResponse, { address: m.address, paired: result.paired, error: result.error }),
        );
        return;
      }
      case BluetoothDeviceRequestType.UNPAIR: {
        if (!(this.featureFlags & BluetoothProxyFeature.PAIRING)) return;
        // The firmware deletes the bond (no link needed); since 2023.6 it answers with the pairing message (paired=true: bond removed).
        const result = this.peripherals.find((p) => p.address === m.address)?.unpair() ?? { success: true, error: 0 };
        if (this.firmware?.unpairAnswer === 'unpairing')
          this.#toSubscriber(BluetoothDeviceUnpairingResponse, { address: m.address, ...result });
        else this.#toSubscriber(BluetoothDevicePairingResponse, { address: m.address, paired: result.success, error: result.error });
        return;
      }
      case BluetoothDeviceRequestType.CLEAR_CACHE:
        if (!(this.featureFlags & BluetoothProxyFeature.CACHE_CLEARING)) return;
        this.#toSubscriber(BluetoothDeviceClearCacheResponse, { address: m.address, success: true, error: 0 });
        return;
    }
  }

  #connect(address: number, hasAddressType: boolean, withCache: boolean): void {
    this.connectRequests++;
    const existing = this.#slots.get(address);
    if (existing?.phase === 'connected') {
      this.#connectionResponse(address, true, 0, 0);
      this.#pushSlots();
      return;
    }
    if (existing !== undefined) return; // already connecting / disconnecting: ignored
    if (!hasAddressType || this.free === 0) {
      this.#connectionResponse(address, false, 0, 0);
      return;
    }
    const peripheral = this.peripherals.find((p) => p.address === address);
    const slot: Slot = {
      address,
      phase: 'connecting',
      peripheral,
      withCache,
      servicesSent: false,
      timers: new Set(),
      offNotify: undefined,
      offLinkLoss: undefined,
    };
    this.#slots.set(address, slot);
    this.#pushSlots();
    if (!this.#hasBluetoothClient()) this.#scheduleOrphanCheck();
    const behaviour = this.#behaviours.get(address);
    if (behaviour?.hang) return;
    if (peripheral === undefined) {
      this.#slotTimer(slot, UNREACHABLE_CONNECT_MS, () => this.#endLink(slot, REASON.gattError));
      return;
    }
    const forced = this.#takeConnectError(address, behaviour);
    this.#slotTimer(slot, behaviour?.connectDelayMs ?? peripheral.connectDelayMs, () => {
      const result = forced !== undefined ? { connected: false as const, error: forced } : peripheral.connect();
      if (!result.connected) {
        this.#endLink(slot, result.error, behaviour);
        return;
      }
      slot.phase = 'connected';
      slot.offNotify = peripheral.onNotify((handle, data) => {
        if (slot.phase === 'connected') this.#toSubscriber(BluetoothGATTNotifyDataResponse, { address, handle, data });
      });
      slot.offLinkLoss = peripheral.onLinkLoss((reason) => this.#endLink(slot, reason));
      // On cached connects the firmware reports connected before MTU negotiation: the value is not meaningful.
      this.#connectionResponse(address, true, withCache ? 0 : result.mtu, 0);
      this.#pushSlots();
      if (behaviour?.linkLossAfterMs !== undefined)
        this.#slotTimer(slot, behaviour.linkLossAfterMs, () => this.#endLink(slot, REASON.supervisionTimeout));
    });
  }

  #takeConnectError(address: number, behaviour: ConnectBehaviour | undefined): number | undefined {
    if (behaviour?.connectError === undefined) return undefined;
    if (behaviour.connectErrorCount !== undefined) {
      if (behaviour.connectErrorCount <= 0) return undefined;
      behaviour.connectErrorCount--;
      if (behaviour.connectErrorCount === 0) {
        const { connectError: _spent, ...rest } = behaviour;
        this.#behaviours.set(address, rest);
      }
    }
    return behaviour.connectError;
  }

  #disconnect(address: number): void {
    const slot = this.#slots.get(address);
    if (slot === undefined) {
      this.#connectionResponse(address, false, 0, 0);
      this.#pushSlots();
      return;
    }
    if (slot.phase === 'connected' && slot.ghost !== true && this.#behaviours.get(address)?.ghostDisconnect === true) {
      slot.ghost = true;
      this.#connectionResponse(address, false, 0, REASON.localHost);
      this.#pushSlots();
      return;
    }
    this.#endLink(slot, REASON.localHost);
  }

  /** Ends a link or attempt the way current firmware does: disconnect event, close event, then the slot is freed. */
  #endLink(slot: Slot, reason: number, close: Pick<ConnectBehaviour, 'closeError' | 'closeDelayMs'> = {}): void {
    if (this.#slots.get(slot.address) !== slot || slot.phase === 'disconnecting') return;
    slot.phase = 'disconnecting';
    this.#clearSlot(slot, reason);
    this.#connectionResponse(slot.address, false, 0, reason);
    if (this.firmware?.closeEvent === false) {
      this.#slots.delete(slot.address);
      this.#pushSlots();
      return;
    }
    this.#later(close.closeDelayMs ?? 2, () => {
      this.#connectionResponse(slot.address, false, 0, close.closeError ?? reason);
      this.#slots.delete(slot.address);
      this.#pushSlots();
    });
  }

  #clearSlot(slot: Slot, reason?: number): void {
    for (const timer of slot.timers) {
      clearTimeout(timer);
      this.#timers.delete(timer);
    }
    slot.timers.clear();
    slot.offNotify?.();
    slot.offLinkLoss?.();
    slot.offNotify = undefined;
    slot.offLinkLoss = undefined;
    slot.peripheral?.reset(reason);
  }

  #getServices(address: number, session: ApiSession): void {
    this.servicesRequests++;
    const slot = this.#slots.get(address);
    if (slot?.phase !== 'connected' || slot.peripheral === undefined) {
      this.#toSubscriber(BluetoothGATTErrorResponse, { address, handle: 0, error: NOT_CONNECTED });
      return;
    }
    if (slot.servicesSent) return; // the proxy freed its copy: no answer
    slot.servicesSent = true;
    if (slot.withCache) {
      this.#toSubscriber(BluetoothGATTGetServicesDoneResponse, { address });
      return;
    }
    // Compact UUIDs need a client and a firmware of API 1.12 or later.
    const atLeast12 = (v: { major: number; minor: number }): boolean => v.major > 1 || v.minor >= 12;
    const compact = atLeast12(session.clientApiVersion) && atLeast12(session.server.apiVersion);
    const services = slot.peripheral.services.map((s) => toProtoService(s, compact));
    let chunk: PartialMessage<BluetoothGATTService>[] = [];
    let size = 0;
    for (const service of services) {
      const bytes = service.size;
      if (chunk.length > 0 && size + bytes > SERVICES_CHUNK_BYTES) {
        this.#toSubscriber(BluetoothGATTGetServicesResponse, { address, services: chunk });
        chunk = [];
        size = 0;
      }
      chunk.push(service.message);
      size += bytes;
    }
    if (chunk.length > 0) this.#toSubscriber(BluetoothGATTGetServicesResponse, { address, services: chunk });
    this.#toSubscriber(BluetoothGATTGetServicesDoneResponse, { address });
  }

  #gatt(
    address: number,
    handle: number,
    op: (p: SimulatedPeripheral) => { data?: Uint8Array; error?: number; ok?: boolean },
    reply: 'read' | 'write' | 'notify' | 'silent',
  ): void {
    const slot = this.#slots.get(address);
    if (slot?.phase !== 'connected' || slot.peripheral === undefined) {
      this.#toSubscriber(BluetoothGATTErrorResponse, { address, handle, error: NOT_CONNECTED });
      return;
    }
    const result = op(slot.peripheral);
    const send = (): void => {
      if (slot.phase !== 'connected') return;
      if (result.error !== undefined && result.error !== 0) {
        if (reply !== 'silent') this.#toSubscriber(BluetoothGATTErrorResponse, { address, handle, error: result.error });
        return;
      }
      if (reply === 'read') this.#toSubscriber(BluetoothGATTReadResponse, { address, handle, data: result.data ?? new Uint8Array(0) });
      else if (reply === 'write') this.#toSubscriber(BluetoothGATTWriteResponse, { address, handle });
      else if (reply === 'notify') this.#toSubscriber(BluetoothGATTNotifyResponse, { address, handle });
    };
    const delay = slot.peripheral.responseDelayMs;
    if (delay > 0) this.#slotTimer(slot, delay, send);
    else send();
  }

  #connectionResponse(address: number, connected: boolean, mtu: number, error: number): void {
    this.#toSubscriber(BluetoothDeviceConnectionResponse, { address, connected, mtu, error });
  }

  #pushSlots(): void {
    this.#toSubscriber(BluetoothConnectionsFreeResponse, this.#slotsMessage());
  }

  #slotsMessage(): PartialMessage<BluetoothConnectionsFreeResponse> {
    const withList = this.firmware?.reportsBluetoothMacAndAllocated ?? true;
    return { free: this.free, limit: this.limit, ...(withList ? { allocated: this.allocated } : {}) };
  }

  // biome-ignore lint/suspicious/noExplicitAny: forwards any generated message type
  #toSubscriber(type: any, message: object): void {
    if (!this.#answersToAll) {
      this.#subscriber?.send(type, message);
      return;
    }
    // Every client past its Hello: the firmware wrote to every connection it had.
    for (const session of this.#server?.sessions ?? []) {
      if (session.state === 'setup' || session.state === 'authenticated') session.send(type, message);
    }
  }

  /** Advertisements are the droppable kind: a session behind on its reads skips them (the firmware drops them too). */
  // biome-ignore lint/suspicious/noExplicitAny: forwards any generated message type
  #toAdSessions(type: any, message: object, reports: number): void {
    if (!this.#answersToAll) this.#subscriber?.sendDroppable(type, message, reports);
    else for (const session of this.#adSessions) session.sendDroppable(type, message, reports);
  }

  #slotTimer(slot: Slot, ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      slot.timers.delete(timer);
      this.#timers.delete(timer);
      fn();
    }, ms);
    slot.timers.add(timer);
    this.#timers.add(timer);
  }

  #later(ms: number, fn: () => void): void {
    if (this.#closed) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }
}

/** Builds the protobuf service the way the firmware encodes it for this client's API version. */
function toProtoService(
  service: SimulatedPeripheral['services'][number],
  compact: boolean,
): { message: PartialMessage<BluetoothGATTService>; size: number } {
  const uuidFields = (uuid: string): { uuid: bigint[]; shortUuid: number } => {
    const short = compact ? shortUuidOf(uuid) : undefined;
    return short !== undefined ? { uuid: [], shortUuid: short } : { uuid: [...uuidToWords(uuid)], shortUuid: 0 };
  };
  const message: PartialMessage<BluetoothGATTService> = {
    ...uuidFields(service.uuid),
    handle: service.handle,
    characteristics: service.characteristics.map((c) => ({
      ...uuidFields(c.uuid),
      handle: c.handle,
      properties: c.properties,
      descriptors: c.descriptors.map((d) => ({ ...uuidFields(d.uuid), handle: d.handle })),
    })),
  };
  // Rough wire size: enough to split large tables like the firmware does.
  const size = 24 + service.characteristics.reduce((n, c) => n + 28 + c.descriptors.length * 22, 0);
  return { message, size };
}
