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

/**
 * matter.js's BLE layer for a device whose radio is a simulated peripheral in another process: the broadcaster's
 * advertisement becomes the peripheral's, C1 writes and the C2 subscription arrive as IPC messages, and BTP runs
 * here in matter.js's own BtpSessionHandler. The central role is not available (this process is a device).
 */
export class BridgeBle extends Ble {
  readonly #peripheral: BridgePeripheral;
  #broadcaster: BridgeBroadcaster | undefined;

  constructor(link: DeviceLink) {
    super();
    this.#peripheral = new BridgePeripheral(link);
  }

  /** Feeds a message from the proxy process. */
  receive(message: ToDevice): void {
    this.#peripheral.receive(message);
  }

  getBlePeripheralInterface(): TransportInterface {
    return this.#peripheral;
  }

  getBleCentralInterface(): NetInterface {
    throw new BleError('A simulated Matter device has no central role');
  }

  getBleBroadcaster(additionalAdvertisementData?: Uint8Array): InstanceBroadcaster {
    this.#broadcaster ??= new BridgeBroadcaster(this.#peripheral.link, additionalAdvertisementData ?? new Uint8Array(0));
    return this.#broadcaster;
  }

  getBleScanner(): Scanner {
    throw new BleError('A simulated Matter device has no central role');
  }
}

/** The peripheral side of BTP: one link, one BTP session at a time. */
class BridgePeripheral extends BleChannel<Uint8Array> implements TransportInterface {
  readonly link: DeviceLink;
  #listener: ((channel: Channel<Uint8Array>, data: Uint8Array) => void) | undefined;
  #handshake: Uint8Array | undefined;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #session: BtpSessionHandler | undefined;
  /**
   * Writes that arrived while the session was being set up: it exists once the handshake response is confirmed,
   * and the commissioner's first write can reach this process in the same IPC read as that confirmation.
   */
  #early: Uint8Array[] | undefined;
  #mtu = 23;
  #nextIndication = 1;
  readonly #confirmations = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  #closed = false;

  constructor(link: DeviceLink) {
    super();
    this.link = link;
  }

  get name(): string {
    return `${ChannelType.BLE}://simulated-central`;
  }

  receive(message: ToDevice): void {
    switch (message.type) {
      case 'connected':
        this.#mtu = message.mtu;
        return;
      case 'write':
        this.#onWrite(message.data);
        return;
      case 'subscribed':
        this.#mtu = message.mtu;
        this.#onSubscribe().catch((error) => this.#fail(error));
        return;
      case 'unsubscribed':
      case 'disconnected':
        void this.#endSession();
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
    if (this.#session === undefined) throw new BtpFlowError('No BTP session: the commissioner is not connected');
    await this.#session.sendMatterMessage(data);
  }

  /** matter.js closes the BLE transport once commissioned: the device drops the link and stops taking new ones. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#endSession();
    this.link.send({ type: 'disconnect' });
  }

  #onWrite(data: Uint8Array): void {
    if (this.#closed) return;
    if (data.length === HANDSHAKE_REQUEST_LENGTH && data[0] === HANDSHAKE_FLAGS && data[1] === HANDSHAKE_OPCODE) {
      // The response goes out on C2, so it waits for the commissioner to subscribe there.
      this.#handshake = data;
      clearTimeout(this.#handshakeTimer);
      this.#handshakeTimer = setTimeout(() => {
        this.#handshake = undefined;
        this.link.send({ type: 'disconnect' });
      }, HANDSHAKE_SUBSCRIBE_TIMEOUT_MS);
      return;
    }
    if (this.#early !== undefined) {
      this.#early.push(data);
      return;
    }
    if (this.#session === undefined) {
      this.#fail(new BtpFlowError('BTP data before a BTP session was established'));
      return;
    }
    void this.#session.handleIncomingBleData(data);
  }

  async #onSubscribe(): Promise<void> {
    const handshake = this.#handshake;
    if (handshake === undefined || this.#closed) throw new BtpFlowError('C2 subscription without a BTP handshake request');
    if (this.#session !== undefined) throw new BtpFlowError('C2 subscription while a BTP session is open');
    clearTimeout(this.#handshakeTimer);
    this.#handshake = undefined;
    const segmentSize = this.#mtu - ATT_HEADER;
    const early: Uint8Array[] = [];
    this.#early = early;
    const session = await BtpSessionHandler.createFromHandshakeRequest(
      segmentSize,
      handshake,
      (segment) => this.#indicate(segment),
      async () => {
        this.#session = undefined;
        this.link.send({ type: 'disconnect' });
      },
      async (message) => this.#listener?.(this, message),
    ).finally(() => {
      this.#early = undefined;
    });
    this.#session = session;
    for (const data of early) void session.handleIncomingBleData(data);
    this.#event({ type: 'btpSession', attMtu: segmentSize });
  }

  /** One BTP segment as a C2 indication; resolves once the proxy side confirmed it. */
  #indicate(segment: Uint8Array): Promise<void> {
    const id = this.#nextIndication++;
    return new Promise((resolve, reject) => {
      this.#confirmations.set(id, { resolve, reject });
      this.link.send({ type: 'indicate', id, data: segment.slice() });
    });
  }

  async #endSession(): Promise<void> {
    clearTimeout(this.#handshakeTimer);
    this.#handshake = undefined;
    for (const waiter of this.#confirmations.values()) waiter.reject(new BleError('The Bluetooth link went away'));
    this.#confirmations.clear();
    const session = this.#session;
    this.#session = undefined;
    await session?.close().catch(() => undefined);
  }

  #event(event: MatterDeviceEvent): void {
    this.link.send({ type: 'event', event });
  }

  #fail(error: unknown): void {
    this.#event({ type: 'btpError', message: (error as Error).message });
    void this.#endSession();
    this.link.send({ type: 'disconnect' });
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
