import { type Channel, ChannelType, type NetInterface, type TransportInterface } from '@matter/main';
import {
  Ble,
  BleChannel,
  BleError,
  BtpCodec,
  BtpFlowError,
  BtpSessionHandler,
  CommissioningMode,
  type CommissioningModeInstanceData,
  type InstanceBroadcaster,
  type Scanner,
} from '@matter/main/protocol';
import type { FromDevice, MatterDeviceEvent, ToDevice } from './matter-ipc.js';

/** A BTP handshake request is 9 bytes starting with flags 0x65 (H, M, E, B) and opcode 0x6c (Core spec 4.19.4.3). */
const HANDSHAKE_FLAGS = 0x65;
const HANDSHAKE_OPCODE = 0x6c;
const HANDSHAKE_REQUEST_LENGTH = 9;
/** ATT header of an indication: a BTP segment is at most MTU - 3 bytes. */
const ATT_HEADER = 3;
/** A handshake request must be followed by the C2 subscription within this time (Core spec: BTP_CONN_RSP_TIMEOUT). */
const HANDSHAKE_SUBSCRIBE_TIMEOUT_MS = 5_000;

/** The device process's side of the IPC channel to the proxy process. */
export interface DeviceLink {
  send(message: FromDevice): void;
}

/** What the device process knows of the Bluetooth link; shared by the successive peripherals of one BridgeBle. */
interface LinkState {
  /** Number of the current (or last) link, as the proxy process counts them. */
  id: number;
  connected: boolean;
  mtu: number;
  /** The link this process asked to end last (asked once). */
  dropped: number;
}

/**
 * matter.js's BLE layer for a device whose radio is a simulated peripheral in another process: the broadcaster's
 * advertisement becomes the peripheral's, C1 writes and the C2 subscription arrive as IPC messages, and BTP runs
 * here in matter.js's own BtpSessionHandler. The central role is not available (this process is a device).
 * matter.js closes the BLE transport and broadcaster once commissioned; after a factory reset (the last fabric
 * removed) it asks for them again and gets new ones, so a decommissioned device can be commissioned again.
 */
export class BridgeBle extends Ble {
  readonly #link: DeviceLink;
  readonly #state: LinkState = { id: 0, connected: false, mtu: 23, dropped: 0 };
  #peripheral: BridgePeripheral;
  #broadcaster: BridgeBroadcaster | undefined;

  constructor(link: DeviceLink) {
    super();
    this.#link = link;
    this.#peripheral = new BridgePeripheral(link, this.#state);
  }

  /** Feeds a message from the proxy process. */
  receive(message: ToDevice): void {
    const state = this.#state;
    if (message.type === 'connected') Object.assign(state, { id: message.link, connected: true, mtu: message.mtu });
    else if (message.type === 'subscribed' && message.link === state.id) state.mtu = message.mtu;
    else if (message.type === 'disconnected' && message.link === state.id) state.connected = false;
    this.#peripheral.receive(message);
  }

  getBlePeripheralInterface(): TransportInterface {
    if (this.#peripheral.closed) this.#peripheral = new BridgePeripheral(this.#link, this.#state);
    return this.#peripheral;
  }

  getBleCentralInterface(): NetInterface {
    throw new BleError('A simulated Matter device has no central role');
  }

  getBleBroadcaster(additionalAdvertisementData?: Uint8Array): InstanceBroadcaster {
    if (this.#broadcaster === undefined || this.#broadcaster.closed) {
      this.#broadcaster = new BridgeBroadcaster(this.#link, additionalAdvertisementData ?? new Uint8Array(0));
    }
    return this.#broadcaster;
  }

  getBleScanner(): Scanner {
    throw new BleError('A simulated Matter device has no central role');
  }
}

/** An open BTP session and the link it runs on. */
interface Session {
  readonly link: number;
  handler: BtpSessionHandler | undefined;
}

/** The peripheral side of BTP: one link, one BTP session at a time. */
class BridgePeripheral extends BleChannel<Uint8Array> implements TransportInterface {
  readonly #link: DeviceLink;
  readonly #state: LinkState;
  #listener: ((channel: Channel<Uint8Array>, data: Uint8Array) => void) | undefined;
  #handshake: { readonly link: number; readonly data: Uint8Array } | undefined;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #session: Session | undefined;
  /**
   * The session being set up, with the writes that arrived meanwhile: it exists once the handshake response is
   * confirmed, and the commissioner's first write can reach this process in the same IPC read as that confirmation.
   */
  #opening: { readonly early: Uint8Array[] } | undefined;
  #nextIndication = 1;
  readonly #confirmations = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  #closed = false;

  constructor(link: DeviceLink, state: LinkState) {
    super();
    this.#link = link;
    this.#state = state;
  }

  get name(): string {
    return `${ChannelType.BLE}://simulated-central`;
  }

  /** Whether matter.js closed this transport (commissioned). */
  get closed(): boolean {
    return this.#closed;
  }

  receive(message: ToDevice): void {
    switch (message.type) {
      case 'connected':
        // Whatever ran on the previous link is over (ending it asks for no disconnect: that link has gone).
        void this.#endSession();
        return;
      case 'disconnected':
        if (message.link === this.#state.id) void this.#endSession();
        return;
      case 'write':
        if (message.link === this.#state.id) this.#onWrite(message.link, message.data);
        return;
      case 'subscribed':
        if (message.link === this.#state.id) this.#onSubscribe(message.link).catch((error) => this.#fail(message.link, error));
        return;
      case 'unsubscribed':
        if (message.link === this.#state.id) void this.#endSession();
        return;
      case 'confirmed': {
        const waiter = this.#confirmations.get(message.id);
        this.#confirmations.delete(message.id);
        if (message.error === undefined) waiter?.resolve();
        else waiter?.reject(new BleError(message.error));
        return;
      }
      case 'stop':
        return;
    }
  }

  // TransportInterface
  onData(listener: (channel: Channel<Uint8Array>, data: Uint8Array) => void): TransportInterface.Listener {
    this.#listener = listener;
    return { close: () => this.close() };
  }

  supports(type: ChannelType): boolean {
    return type === ChannelType.BLE;
  }

  // Channel
  async send(data: Uint8Array): Promise<void> {
    const handler = this.#session?.handler;
    if (handler === undefined) throw new BtpFlowError('No BTP session: the commissioner is not connected');
    await handler.sendMatterMessage(data);
  }

  /** matter.js closes the BLE transport once commissioned: the device drops the link and stops taking new ones. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#endSession();
    this.#dropLink(this.#state.id);
  }

  #onWrite(link: number, data: Uint8Array): void {
    if (this.#closed) return;
    if (data.length === HANDSHAKE_REQUEST_LENGTH && data[0] === HANDSHAKE_FLAGS && data[1] === HANDSHAKE_OPCODE) {
      // The response goes out on C2, so it waits for the commissioner to subscribe there.
      this.#handshake = { link, data };
      clearTimeout(this.#handshakeTimer);
      this.#handshakeTimer = setTimeout(() => {
        this.#handshake = undefined;
        this.#dropLink(link);
      }, HANDSHAKE_SUBSCRIBE_TIMEOUT_MS);
      return;
    }
    if (this.#opening !== undefined) {
      this.#opening.early.push(data);
      return;
    }
    const session = this.#session;
    if (session?.handler === undefined) {
      this.#fail(link, new BtpFlowError('BTP data before a BTP session was established'));
      return;
    }
    this.#deliver(session.handler, link, data);
  }

  /**
   * One C1 write into BTP. matter.js's handler closes the session on any error it meets and swallows its own
   * protocol errors, but rethrows the rest (a segment too short to decode is a RangeError): those end the link too.
   */
  #deliver(handler: BtpSessionHandler, link: number, data: Uint8Array): void {
    handler.handleIncomingBleData(data).catch((error: unknown) => this.#fail(link, error));
  }

  async #onSubscribe(link: number): Promise<void> {
    const handshake = this.#handshake;
    if (handshake === undefined || handshake.link !== link || this.#closed) {
      throw new BtpFlowError('C2 subscription without a BTP handshake request');
    }
    if (this.#session !== undefined || this.#opening !== undefined) throw new BtpFlowError('C2 subscription while a BTP session is open');
    clearTimeout(this.#handshakeTimer);
    this.#handshake = undefined;
    const segmentSize = this.#state.mtu - ATT_HEADER;
    const session: Session = { link, handler: undefined };
    const opening = { early: [] as Uint8Array[] };
    this.#opening = opening;
    let cancelled = false;
    const handler = await BtpSessionHandler.createFromHandshakeRequest(
      segmentSize,
      handshake.data,
      (segment) => this.#indicate(link, segment),
      async () => {
        if (this.#session === session) this.#session = undefined;
        this.#dropLink(link);
      },
      async (message) => this.#listener?.(this, message),
    ).finally(() => {
      cancelled = this.#opening !== opening;
      if (!cancelled) this.#opening = undefined;
    });
    session.handler = handler;
    if (cancelled || this.#closed || !this.#current(link)) {
      // The link went (or another came up) while the handshake response was out: this session belongs to nobody.
      await handler.close();
      return;
    }
    this.#session = session;
    for (const data of opening.early) this.#deliver(handler, link, data);
    this.#event({ type: 'btpSession', attMtu: segmentSize });
  }

  /** One BTP segment as a C2 indication of `link`; resolves once the proxy side confirmed it. */
  #indicate(link: number, segment: Uint8Array): Promise<void> {
    if (!this.#current(link)) return Promise.reject(new BleError('The Bluetooth link went away'));
    const id = this.#nextIndication++;
    return new Promise((resolve, reject) => {
      this.#confirmations.set(id, { resolve, reject });
      this.#link.send({ type: 'indicate', id, link, data: segment.slice() });
    });
  }

  async #endSession(): Promise<void> {
    clearTimeout(this.#handshakeTimer);
    this.#handshake = undefined;
    this.#opening = undefined;
    for (const waiter of this.#confirmations.values()) waiter.reject(new BleError('The BTP session ended'));
    this.#confirmations.clear();
    const session = this.#session;
    this.#session = undefined;
    await session?.handler?.close().catch(() => undefined);
  }

  /** Whether `link` is the link that is up now. */
  #current(link: number): boolean {
    return this.#state.connected && link === this.#state.id;
  }

  /** Asks the proxy side to end `link`, unless it has gone already (then the request could hit the next one). */
  #dropLink(link: number): void {
    if (!this.#current(link) || this.#state.dropped === link) return;
    this.#state.dropped = link;
    this.#link.send({ type: 'disconnect', link });
  }

  #event(event: MatterDeviceEvent): void {
    this.#link.send({ type: 'event', event });
  }

  /** The commissioner broke BTP on `link`: report it and hang up (nothing to do when that link has gone). */
  #fail(link: number, error: unknown): void {
    if (!this.#current(link)) return;
    this.#event({ type: 'btpError', message: error instanceof Error ? error.message : String(error) });
    void this.#endSession();
    this.#dropLink(link);
  }
}

/** The device's BLE advertisement, forwarded to the simulated peripheral. */
class BridgeBroadcaster implements InstanceBroadcaster {
  readonly #link: DeviceLink;
  readonly #additionalData: Uint8Array;
  #announcement: { discriminator: number; vendorId: number; productId: number } | undefined;
  #closed = false;

  constructor(link: DeviceLink, additionalData: Uint8Array) {
    this.#link = link;
    this.#additionalData = additionalData;
  }

  /** Whether matter.js closed this broadcaster (commissioned). */
  get closed(): boolean {
    return this.#closed;
  }

  async setCommissionMode(mode: CommissioningMode, data: CommissioningModeInstanceData): Promise<void> {
    // Only basic commissioning mode is announced over BLE (Core spec 5.4.2.5); the others go quiet.
    if (mode !== CommissioningMode.Basic) {
      await this.expireCommissioningAnnouncement();
      return;
    }
    this.#announcement = { discriminator: data.discriminator, vendorId: data.vendorId, productId: data.productId };
  }

  async setFabrics(): Promise<void> {
    await this.expireCommissioningAnnouncement();
  }

  async setCommissionerInfo(): Promise<void> {
    this.#announcement = undefined;
  }

  async announce(): Promise<void> {
    const a = this.#announcement;
    if (a === undefined || this.#closed) return;
    const data = BtpCodec.encodeBleAdvertisementData(a.discriminator, a.vendorId, a.productId, this.#additionalData.length > 0);
    this.#link.send({ type: 'advertise', data, additionalData: this.#additionalData });
  }

  async expireFabricAnnouncement(): Promise<void> {
    // operational announcements are mDNS only
  }

  async expireCommissioningAnnouncement(): Promise<void> {
    this.#announcement = undefined;
    if (!this.#closed) this.#link.send({ type: 'stopAdvertising' });
  }

  async expireAllAnnouncements(): Promise<void> {
    await this.expireCommissioningAnnouncement();
  }

  async close(): Promise<void> {
    await this.expireAllAnnouncements();
    this.#closed = true;
  }
}
