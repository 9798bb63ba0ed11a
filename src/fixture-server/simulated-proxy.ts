import type { MessageType, PartialMessage } from '@protobuf-ts/runtime';
import { MessageDispatcher } from '../frame/dispatch.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothGATTGetServicesRequest,
  BluetoothGATTNotifyRequest,
  BluetoothGATTReadDescriptorRequest,
  BluetoothGATTReadRequest,
  BluetoothGATTWriteDescriptorRequest,
  BluetoothGATTWriteRequest,
  type BluetoothLERawAdvertisementsResponse,
  BluetoothScannerMode,
  BluetoothScannerSetModeRequest,
  BluetoothSetConnectionParamsRequest,
  type DeviceCapabilitiesResponse,
  type DeviceInfoResponse,
  SubscribeBluetoothConnectionsFreeRequest,
  SubscribeBluetoothLEAdvertisementsRequest,
  UnsubscribeBluetoothLEAdvertisementsRequest,
} from '../gen/api_pb.js';
import type { ApiSession, SessionPlugin } from '../server/api-server.js';
import { BluetoothAudience } from './bluetooth-audience.js';
import { type BoardProfile, boardProfile, type ProxyBoard } from './boards.js';
import { type FirmwareGeneration, type FirmwareProfile, firmwareProfile, type SubscriptionPolicy } from './firmware.js';
import type { PeripheralProfile } from './profile.js';
import { type ProxyIdentity, proxyCapabilities, proxyDeviceInfo, proxyFeatureFlags } from './proxy-identity.js';
import { SimulatedAdvertiser } from './simulated-advertiser.js';
import { SimulatedGatt } from './simulated-gatt.js';
import { type ConnectBehaviour, REASON, SimulatedLinks } from './simulated-links.js';
import { SimulatedPeripheral } from './simulated-peripheral.js';
import { TimerSet } from './timer-set.js';

export { ALL_PROXY_FEATURES } from './proxy-identity.js';
export { ADVERTISEMENT_BATCH_SIZE, ADVERTISEMENT_FLUSH_MS } from './simulated-advertiser.js';
export type { ConnectBehaviour } from './simulated-links.js';

/**
 * protobuf-ts reads a uint64 address of 2^63 or more as a negative number, which it then refuses to encode
 * in a reply or slot list: one such request would break every later session. No device has such an address.
 */
function isBluetoothAddress(address: number): boolean {
  return Number.isSafeInteger(address) && address >= 0 && address < 2 ** 48;
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

/**
 * The Bluetooth half of a simulated ESPHome proxy, plugged into an ApiServer: it dispatches each request through
 * the message table to the part that owns it — the subscription and its audience (bluetooth-audience), the
 * scanner (simulated-advertiser), the connection slots (simulated-links) and GATT (simulated-gatt) — and reports
 * the proxy's identity (proxy-identity).
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
  readonly #board: BoardProfile;
  readonly #timers = new TimerSet();
  readonly #audience: BluetoothAudience;
  readonly #advertiser: SimulatedAdvertiser;
  readonly #links: SimulatedLinks;
  readonly #gatt: SimulatedGatt;
  /** Requests every proxy handles: the advertisement subscription and the scanner. */
  readonly #scanRequests = new MessageDispatcher<ApiSession>();
  /** Requests only the connection half handles (slot query included): unanswered on a board without it. */
  readonly #connectionRequests = new MessageDispatcher<ApiSession>();

  constructor(options: SimulatedProxyOptions = {}) {
    this.firmware = options.firmware === undefined ? undefined : firmwareProfile(options.firmware);
    this.board = options.board ?? 'esp32';
    this.#board = boardProfile(this.board);
    this.featureFlags = proxyFeatureFlags(options.featureFlags, this.firmware, this.#board);
    this.subscriptionPolicy = options.subscriptionPolicy ?? this.firmware?.subscriptionPolicy ?? 'first-wins';
    this.bluetoothMac = options.bluetoothMac ?? 'AA:BB:CC:00:00:01';
    this.limit = options.slots ?? this.#board.slots ?? 3;
    const random = options.random;
    this.peripherals = (options.peripherals ?? []).map((p) => new SimulatedPeripheral(p, random ? { random } : {}));
    const shared = { peripherals: this.peripherals, timers: this.#timers, firmware: this.firmware };
    this.#audience = new BluetoothAudience(this.firmware?.bluetoothAnswers === 'all-clients');
    this.#links = new SimulatedLinks({ ...shared, audience: this.#audience, limit: this.limit, busy: options.slotsBusy ?? 0 });
    this.#advertiser = new SimulatedAdvertiser({
      ...shared,
      audience: this.#audience,
      featureFlags: this.featureFlags,
      advertise: options.advertise !== false,
      rssiOffset: options.rssiOffset ?? 0,
      scannerMode: options.scannerMode ?? 'active',
      isConnected: (address) => this.#links.connected(address) !== undefined,
    });
    this.#gatt = new SimulatedGatt({ ...shared, audience: this.#audience, links: this.#links, featureFlags: this.featureFlags });
    this.#registerHandlers();
  }

  /** Addresses holding a slot (phantoms first), as the proxy reports them. */
  get allocated(): number[] {
    return this.#links.allocated;
  }

  /** Addresses holding a slot for a link or a connect attempt (no phantoms). */
  get linkAddresses(): number[] {
    return this.#links.linkAddresses;
  }

  /** Free slots. */
  get free(): number {
    return this.#links.free;
  }

  /** The session that holds the Bluetooth subscription (before 2023.6: the first of those that subscribed). */
  get subscriber(): ApiSession | undefined {
    return this.#audience.subscriber;
  }

  /** Overrides connect behaviour for one address (undefined clears it). */
  setBehaviour(address: number, behaviour: ConnectBehaviour | undefined): void {
    this.#links.setBehaviour(address, behaviour);
  }

  /** Occupies or frees phantom slots at run time (another client grabbing slots; held only while somebody is subscribed). */
  setBusySlots(count: number): void {
    this.#links.setBusySlots(count);
  }

  /** Drops an established link as if the peripheral went out of range. */
  dropLink(address: number, reason: number = REASON.supervisionTimeout): void {
    this.#links.dropLink(address, reason);
  }

  /** Sends prepared advertisement batches straight to the subscriber (benchmarks); dropped for a subscriber that is behind. */
  sendRawBatch(batch: PartialMessage<BluetoothLERawAdvertisementsResponse>): void {
    this.#advertiser.sendRawBatch(batch);
  }

  deviceInfo(): Partial<DeviceInfoResponse> {
    return proxyDeviceInfo(this.#identity());
  }

  capabilities(): PartialMessage<DeviceCapabilitiesResponse> {
    return proxyCapabilities(this.#identity());
  }

  onMessage(session: ApiSession, type: number, payload: Uint8Array): boolean {
    this.#audience.attach(session.server);
    if (this.#scanRequests.dispatch(type, payload, session)) return true;
    // No handler compiled: the node skips the request silently, as it does any id it does not know.
    return this.#board.connections && this.#connectionRequests.dispatch(type, payload, session);
  }

  onClose(session: ApiSession): void {
    if (this.#audience.answersToAll) {
      this.#stopAdvertisingTo(session);
      this.#links.scheduleOrphanCheck();
    } else if (this.#audience.holds(session)) {
      this.#unsubscribe();
    }
  }

  close(): void {
    this.#timers.close();
    this.#advertiser.stop();
    this.#links.close();
    for (const peripheral of this.peripherals) peripheral.close();
  }

  #registerHandlers(): void {
    const scan = this.#scanRequests;
    scan.on(SubscribeBluetoothLEAdvertisementsRequest, (m, session) => this.#subscribe(session, m.flags));
    scan.on(UnsubscribeBluetoothLEAdvertisementsRequest, (_m, session) => {
      if (this.#audience.answersToAll) this.#stopAdvertisingTo(session);
      else if (this.#audience.holds(session)) this.#unsubscribe();
    });
    scan.on(BluetoothScannerSetModeRequest, (m) =>
      this.#advertiser.setMode(m.mode === BluetoothScannerMode.ACTIVE ? BluetoothScannerMode.ACTIVE : BluetoothScannerMode.PASSIVE),
    );
    const gatt = this.#gatt;
    this.#connectionRequests.on(SubscribeBluetoothConnectionsFreeRequest, (_m, session) =>
      session.send(BluetoothConnectionsFreeResponse, this.#links.slotsMessage()),
    );
    this.#addressed(BluetoothDeviceRequest, (m) => this.#deviceRequest(m));
    this.#addressed(BluetoothGATTGetServicesRequest, (m, session) => {
      this.servicesRequests++;
      gatt.getServices(m.address, session);
    });
    this.#addressed(BluetoothGATTReadRequest, (m) => gatt.read(m));
    this.#addressed(BluetoothGATTWriteRequest, (m) => gatt.write(m));
    this.#addressed(BluetoothGATTReadDescriptorRequest, (m) => gatt.readDescriptor(m));
    this.#addressed(BluetoothGATTWriteDescriptorRequest, (m) => gatt.writeDescriptor(m));
    this.#addressed(BluetoothGATTNotifyRequest, (m) => gatt.notify(m));
    this.#addressed(BluetoothSetConnectionParamsRequest, (m) => gatt.setConnectionParams(m.address));
  }

  /** A connection-half request naming a device: one whose address no device can have is dropped unanswered. */
  #addressed<T extends { address: number }>(type: MessageType<T>, handler: (message: T, session: ApiSession) => void): void {
    this.#connectionRequests.on(type, (m, session) => {
      if (isBluetoothAddress(m.address)) handler(m, session);
    });
  }

  #deviceRequest(m: BluetoothDeviceRequest): void {
    const links = this.#links;
    switch (m.requestType) {
      case BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE:
      case BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE:
        this.connectRequests++;
        links.connect(m.address, m.hasAddressType, m.requestType === BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE);
        return;
      case BluetoothDeviceRequestType.CONNECT:
        links.connectionResponse(m.address, false, 0, 0);
        return;
      case BluetoothDeviceRequestType.DISCONNECT:
        links.disconnect(m.address);
        return;
      case BluetoothDeviceRequestType.PAIR:
        this.#gatt.pair(m.address);
        return;
      case BluetoothDeviceRequestType.UNPAIR:
        this.#gatt.unpair(m.address);
        return;
      case BluetoothDeviceRequestType.CLEAR_CACHE:
        this.#gatt.clearCache(m.address);
        return;
    }
  }

  #subscribe(session: ApiSession, flags: number): void {
    if (this.#audience.subscribe(session, this.subscriptionPolicy)) this.#advertiser.start(flags);
  }

  #unsubscribe(): void {
    this.#audience.unsubscribe();
    this.#advertiser.stop();
    this.#links.scheduleOrphanCheck();
  }

  /** Before 2023.6: `session` gets no more advertisements (unsubscribed or gone); the links stay. */
  #stopAdvertisingTo(session: ApiSession): void {
    if (this.#audience.removeAdSession(session)) this.#advertiser.stop();
  }

  #identity(): ProxyIdentity {
    const { board, firmware, featureFlags, bluetoothMac } = this;
    return { board, boardProfile: this.#board, firmware, featureFlags, bluetoothMac };
  }
}
