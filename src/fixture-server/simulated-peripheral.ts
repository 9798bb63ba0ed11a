import { BleDisconnectedError, InvalidArgumentError } from '../errors.js';
import { type CallOptions, withDeadline } from '../util/abort.js';
import { AdvertisingSchedule, type SimulatedAdvertisement } from './advertising-schedule.js';
import {
  ATT_UPDATE_HEADER,
  awaitConfirmation,
  type CharacteristicProgram,
  type CharacteristicState,
  copyOf,
  HeldUpdates,
  INDICATION_TIMEOUT_MS,
  type LinkEvent,
  type Subscription,
} from './characteristic-program.js';
import { buildGattTable, type GattAttribute, uuidBytes } from './gatt-table.js';
import {
  CCCD_UUID,
  type GattCharacteristicProfile,
  type GattDescriptorProfile,
  type GattServiceProfile,
  MAX_ATTRIBUTE_LENGTH,
  normalizeUuid,
  type PeripheralProfile,
  PROPERTY_BITS,
} from './profile.js';

export { type SimulatedAdvertisement, seededRandom } from './advertising-schedule.js';
export type { CharacteristicProgram, LinkEvent, Subscription } from './characteristic-program.js';

/** Link state of a simulated peripheral. */
export type ConnectionState = 'disconnected' | 'connected';

/** Outcome of a connect attempt, shaped like BluetoothDeviceConnectionResponse. */
export type ConnectResult = { readonly connected: true; readonly mtu: number } | { readonly connected: false; readonly error: number };

/** A read answered with data or a GATT status. */
export type ReadResult = { readonly data: Uint8Array } | { readonly error: number };

/** A write acknowledged or refused with a GATT status. */
export type WriteResult = { readonly ok: true } | { readonly error: number };

/** Outcome of a pairing request, shaped like BluetoothDevicePairingResponse. */
export interface PairResult {
  readonly paired: boolean;
  readonly error: number;
}

export type { GattAttribute } from './gatt-table.js';

/** Receives notification/indication data for a characteristic value handle. */
export type NotifyListener = (handle: number, data: Uint8Array) => void;

/** Options of a simulated peripheral. */
export interface SimulatedPeripheralOptions {
  /** Uniform [0, 1) source for RSSI jitter and advertising phase; pass seededRandom() for determinism. */
  random?: () => number;
}

// Statuses from spec §6.14.
const INVALID_HANDLE = 0x01;
const READ_NOT_PERMITTED = 0x02;
const WRITE_NOT_PERMITTED = 0x03;
const INSUFFICIENT_AUTHENTICATION = 0x05;
const INVALID_ATTRIBUTE_LENGTH = 0x0d;
const CCCD_IMPROPERLY_CONFIGURED = 0xfd;
/** ESP_GATT_ERROR: what an open towards a non-connectable device ends with (spec §6.7). */
const NOT_CONNECTABLE_ERROR = 0x85;
/** ESP_GATT_CONN_TERMINATE_LOCAL_HOST: what a link ended by the proxy's side reports. */
const LOCAL_HOST_REASON = 0x16;
/** ESP_GATT_CONN_TIMEOUT: a lost link is a supervision timeout. */
const LINK_LOSS_REASON = 0x08;

/** A peripheral answers a write before it reacts to it: echoes and updates sent from a write hook wait this much longer. */
const REACTION_DELAY_MS = 5;

/** Default shift of mutateDatabase(): large enough that every cached handle points elsewhere. */
const DEFAULT_HANDLE_SHIFT = 16;

const CCCD_NOTIFY = 0x0001;
const CCCD_INDICATE = 0x0002;

/**
 * The wire-independent behaviour of one simulated BLE peripheral: advertising, the GATT database,
 * notifications and connection knobs. The fixture proxy turns its results into protobuf messages.
 */
export class SimulatedPeripheral {
  /** The (normalised) profile this peripheral was built from. */
  readonly profile: PeripheralProfile;
  /** 48-bit address as the API carries it. */
  readonly address: number;
  readonly addressType: number;

  readonly #random: () => number;
  readonly #characteristics = new Map<number, CharacteristicState>();
  readonly #descriptorValues = new Map<number, Uint8Array>();
  readonly #notifyListeners = new Set<NotifyListener>();
  readonly #linkLossListeners = new Set<(reason: number) => void>();
  readonly #linkListeners = new Set<(event: LinkEvent) => void>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  /** Echoes and updates sent from write hooks, released after the write's reply (one rule for both). */
  readonly #reactions = new HeldUpdates(() => this.profile.behaviour.responseDelayMs + REACTION_DELAY_MS);
  #state: ConnectionState = 'disconnected';
  /** Why the last link ended (what a queued indication reports). */
  #lastReason = LOCAL_HOST_REASON;
  #connectAttempts = 0;
  #bonded = false;
  #closed = false;
  #shift = 0;
  #generation = 0;
  #services: readonly GattServiceProfile[] = [];
  #attributes = new Map<number, GattAttribute>();
  readonly #advertising: AdvertisingSchedule;

  constructor(profile: PeripheralProfile, options: SimulatedPeripheralOptions = {}) {
    this.profile = profile;
    this.address = profile.address;
    this.addressType = profile.addressType;
    this.#random = options.random ?? Math.random;
    this.#advertising = new AdvertisingSchedule(profile, this.#random);
    // State is keyed by the profile's handles; mutateDatabase() only shifts what the outside sees.
    for (const service of profile.gatt.services) {
      for (const characteristic of service.characteristics) {
        this.#characteristics.set(characteristic.handle, {
          profile: characteristic,
          value: characteristic.value,
          registered: false,
          cccd: 0,
          notifyIndex: 0,
          timer: undefined,
          program: undefined,
          subscribed: false,
          indication: Promise.resolve(),
        });
        for (const descriptor of characteristic.descriptors) this.#descriptorValues.set(descriptor.handle, descriptor.value);
      }
    }
    this.#rebuild();
  }

  /** `AA:BB:CC:DD:EE:FF`. */
  get mac(): string {
    return this.profile.mac;
  }

  /** ATT MTU reported on connect. */
  get mtu(): number {
    return this.profile.gatt.mtu;
  }

  /** Advertised/GAP name from the profile. */
  get name(): string {
    return this.profile.name;
  }

  /** Whether connect() can succeed at all. */
  get connectable(): boolean {
    return this.profile.connectable;
  }

  /** How often the peripheral advertises. */
  get advertisingIntervalMs(): number {
    return this.profile.advertisingIntervalMs;
  }

  /** How long the proxy should take before calling connect() (link set-up, MTU exchange, discovery). */
  get connectDelayMs(): number {
    return this.profile.behaviour.connectDelayMs;
  }

  /** The profile's connect failure reason (0 = none); connect() also applies `connectErrorAttempts`. */
  get connectError(): number {
    return this.profile.behaviour.connectError;
  }

  /** How long the proxy should wait before answering a GATT request or a pairing. */
  get responseDelayMs(): number {
    return this.profile.behaviour.responseDelayMs;
  }

  /** The link drops this long after connect() succeeded; undefined = never. */
  get linkLossAfterMs(): number | undefined {
    return this.profile.behaviour.linkLossAfterMs;
  }

  /** Current service table, with handles as a client discovers them now. */
  get services(): readonly GattServiceProfile[] {
    return this.#services;
  }

  /** Bumped by every mutateDatabase(). */
  get databaseGeneration(): number {
    return this.#generation;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Whether a bond exists (pair() succeeded and unpair() was not called since). */
  get bonded(): boolean {
    return this.#bonded;
  }

  /** Whether the peripheral is on the air now (most stop advertising while connected). */
  get isAdvertising(): boolean {
    return this.advertisingEnabled && (this.#state !== 'connected' || this.profile.behaviour.advertiseWhileConnected);
  }

  /** Whether advertising is switched on (advertise() / stopAdvertising()); a connected peripheral may still be quiet. */
  get advertisingEnabled(): boolean {
    return this.#advertising.enabled && !this.#closed;
  }

  /** The AD payloads sent in rotation now (the profile's until advertise() replaced them). */
  get advertisements(): readonly Uint8Array[] {
    return this.#advertising.payloads;
  }

  /**
   * Starts advertising again, optionally with new AD payloads (each 1..62 bytes of AD structures), as a device
   * does when it changes what it announces. Throws InvalidArgumentError for malformed payloads.
   */
  advertise(payloads?: readonly Uint8Array[]): void {
    this.#advertising.start(payloads);
  }

  /** Stops advertising (a device that left commissioning mode); connects still work, as on air for a known address. */
  stopAdvertising(): void {
    this.#advertising.stop();
  }

  /** When the next advertisement is due, in the clock passed to nextAdvertisement(); 0 before the first one. */
  get nextAdvertisementAt(): number {
    return this.#advertising.nextAt;
  }

  /**
   * The next report: payloads in rotation, RSSI with jitter. The first call picks a random phase
   * within one interval so a neighbourhood of peripherals does not advertise in lockstep.
   */
  nextAdvertisement(now: number): SimulatedAdvertisement {
    return this.#advertising.next(now);
  }

  /**
   * The proxy's connect delay has elapsed: does the link come up? Fails with the profile's
   * `connectError` (for the first `connectErrorAttempts` attempts, or always) and with 0x85 when the
   * peripheral is not connectable. On success starts the link-loss timer (`linkLossAfterMs` → onLinkLoss).
   */
  connect(): ConnectResult {
    if (this.#state === 'connected') return { connected: true, mtu: this.mtu };
    if (this.#closed) return { connected: false, error: NOT_CONNECTABLE_ERROR };
    const error = this.#connectError();
    if (error !== 0) return { connected: false, error };
    this.#state = 'connected';
    const { linkLossAfterMs } = this.profile.behaviour;
    if (linkLossAfterMs !== undefined) this.#setTimer(() => this.loseLink(LINK_LOSS_REASON), linkLossAfterMs);
    this.#emitLink({ type: 'connected', mtu: this.mtu });
    return { connected: true, mtu: this.mtu };
  }

  /**
   * Puts code behind a characteristic (by UUID, any spelling, or by its current value handle): writes reach
   * `onWrite`, reads `onRead`, and subscription changes `onSubscribe`/`onUnsubscribe`. One program per
   * characteristic; returns the function that removes it. Throws InvalidArgumentError when there is no such
   * characteristic or it already has a program.
   */
  program(characteristic: string | number, program: CharacteristicProgram): () => void {
    const state = this.#resolve(characteristic);
    if (state.program !== undefined)
      throw new InvalidArgumentError(`${this.mac}: characteristic ${state.profile.uuid} already has a program`);
    state.program = program;
    return () => {
      if (state.program === program) state.program = undefined;
    };
  }

  /** The current subscription of a characteristic, or undefined when its updates are off. */
  subscription(characteristic: string | number): Subscription | undefined {
    const state = this.#resolve(characteristic);
    return this.#active(state) ? this.#subscriptionOf(state) : undefined;
  }

  /**
   * Sends a notification from code. Returns false (nothing sent) unless the client enabled notifications
   * (registration plus CCCD bit 0x0001), as a GATT server does. The value becomes the characteristic's value.
   * Sent from a write hook, the update goes after the write's reply (as an echo does), and updates sent while
   * such a reaction is held queue behind it. Throws InvalidArgumentError when `data` exceeds the link's MTU - 3.
   */
  notify(characteristic: string | number, data: Uint8Array): boolean {
    const state = this.#resolve(characteristic);
    this.#checkUpdateLength(state, data);
    const copy = copyOf(data);
    state.value = copy;
    if (!this.#active(state) || (state.cccd & CCCD_NOTIFY) === 0) return false;
    if (this.#reactions.holding) this.#reactions.hold(() => this.#emit(state, copy));
    else this.#emit(state, copy);
    return true;
  }

  /**
   * Sends an indication from code and resolves once the client confirmed it (the proxy's stack confirms on
   * receipt). Indications of one characteristic go one at a time; one sent from a write hook goes after the
   * write's reply, like notify(). Rejects with InvalidArgumentError when the
   * client did not enable indications (CCCD bit 0x0002) or `data` exceeds MTU - 3, with BleDisconnectedError
   * when the link goes before the confirmation, and honours `signal`/`timeout` (default 30 s, ATT's timeout).
   */
  indicate(characteristic: string | number, data: Uint8Array, options: CallOptions = {}): Promise<void> {
    let state: CharacteristicState;
    try {
      options.signal?.throwIfAborted();
      state = this.#resolve(characteristic);
      this.#checkUpdateLength(state, data);
      this.#checkIndications(state);
    } catch (error) {
      return Promise.reject(error);
    }
    const copy = copyOf(data);
    // Sent from a write hook (or behind such updates): after the write's reply, as a device reacts.
    const released = this.#reactions.holding ? new Promise<void>((resolve) => this.#reactions.hold(resolve)) : undefined;
    const sent = state.indication.then(async () => {
      await released;
      return withDeadline(`Indication of ${state.profile.uuid} on ${this.mac}`, options, INDICATION_TIMEOUT_MS, (signal) =>
        this.#indicateNow(state, copy, signal),
      );
    });
    state.indication = sent.catch(() => undefined);
    return sent;
  }

  /** Listens for the link coming up and going away (whoever ended it); returns the unsubscribe function. */
  onLink(listener: (event: LinkEvent) => void): () => void {
    this.#linkListeners.add(listener);
    return () => this.#linkListeners.delete(listener);
  }

  /** What sits at `handle` now: service, characteristic declaration, characteristic value or descriptor. */
  findByHandle(handle: number): GattAttribute | undefined {
    return this.#attributes.get(handle);
  }

  /**
   * ATT read of any handle (the proxy only forwards requests for a connected link). Errors: 0x01 nothing there, the configured read error,
   * 0x05 encrypted and not bonded, 0x02 no read property. A CCCD reads as its current 2-byte value.
   */
  read(handle: number): ReadResult {
    const attribute = this.#attributes.get(handle);
    switch (attribute?.kind) {
      case undefined:
        return { error: INVALID_HANDLE };
      case 'service':
        return { data: uuidBytes(attribute.service.uuid) };
      case 'declaration': {
        const { characteristic } = attribute;
        const head = [characteristic.properties, characteristic.handle & 0xff, characteristic.handle >> 8];
        return { data: Uint8Array.from([...head, ...uuidBytes(characteristic.uuid)]) };
      }
      case 'characteristic': {
        const { characteristic } = attribute;
        if (characteristic.error.read !== undefined) return { error: characteristic.error.read };
        if (characteristic.encrypted && !this.#bonded) return { error: INSUFFICIENT_AUTHENTICATION };
        if ((characteristic.properties & PROPERTY_BITS.read) === 0) return { error: READ_NOT_PERMITTED };
        const state = this.#charState(characteristic);
        const answer = state.program?.onRead?.();
        if (answer instanceof Uint8Array) return { data: copyOf(answer) };
        if (answer !== undefined) return { error: answer.error };
        return { data: state.value.slice() };
      }
      case 'descriptor': {
        if (attribute.descriptor.uuid === CCCD_UUID) {
          const { cccd } = this.#charState(attribute.characteristic);
          return { data: Uint8Array.of(cccd & 0xff, cccd >> 8) };
        }
        return { data: this.#descriptorValue(attribute.descriptor).slice() };
      }
    }
  }

  /** Descriptor read: the same ATT read as read(); the proxy does not check the attribute kind (spec §6.9). */
  readDescriptor(handle: number): ReadResult {
    return this.read(handle);
  }

  /**
   * ATT write. A characteristic needs the write (0x08) property for `withResponse` and
   * write-without-response (0x04) otherwise, else 0x03. The value is stored (so reads see it) and,
   * with `echoTo`, copied to that characteristic (or, with `reply`, answered there with that value) and notified
   * if it is subscribed.
   */
  write(handle: number, data: Uint8Array, withResponse: boolean): WriteResult {
    const attribute = this.#attributes.get(handle);
    if (attribute === undefined) return { error: INVALID_HANDLE };
    if (data.length > MAX_ATTRIBUTE_LENGTH) return { error: INVALID_ATTRIBUTE_LENGTH };
    switch (attribute.kind) {
      case 'service':
      case 'declaration':
        return { error: WRITE_NOT_PERMITTED };
      case 'descriptor':
        return this.#writeDescriptor(attribute.characteristic, attribute.descriptor, data);
      case 'characteristic':
        return this.#writeCharacteristic(attribute.characteristic, data, withResponse);
    }
  }

  /**
   * Descriptor write (always acknowledged). A CCCD takes `01 00` (notify), `02 00` (indicate) or
   * `00 00`; other values, or a mode the characteristic lacks, get 0xFD. Other descriptors need `writable`.
   */
  writeDescriptor(handle: number, data: Uint8Array): WriteResult {
    return this.write(handle, data, true);
  }

  /** The proxy's registration for notifications (request 78); data flows only when the CCCD is enabled too. */
  registerNotify(handle: number, enable: boolean): WriteResult {
    const attribute = this.#attributes.get(handle);
    if (attribute?.kind !== 'characteristic') return { error: INVALID_HANDLE };
    const state = this.#charState(attribute.characteristic);
    state.registered = enable;
    this.#updateNotifyTimer(state);
    this.#updateSubscription(state);
    return { ok: true };
  }

  /** True while notifications for this value handle are both registered and enabled in the CCCD. */
  isNotifying(handle: number): boolean {
    const attribute = this.#attributes.get(handle);
    return attribute?.kind === 'characteristic' && this.#active(this.#charState(attribute.characteristic));
  }

  /** Listens for notification/indication data; returns the unsubscribe function. */
  onNotify(listener: NotifyListener): () => void {
    this.#notifyListeners.add(listener);
    return () => this.#notifyListeners.delete(listener);
  }

  /** Listens for the link dropping by itself (reason 0x08 after `linkLossAfterMs`); returns the unsubscribe function. */
  onLinkLoss(listener: (reason: number) => void): () => void {
    this.#linkLossListeners.add(listener);
    return () => this.#linkLossListeners.delete(listener);
  }

  /** Drops the link now as if the peripheral went out of range: reset(), then listeners get `reason`. No-op unless connected. */
  loseLink(reason = LINK_LOSS_REASON): void {
    if (this.#state !== 'connected') return;
    this.reset(reason);
    for (const listener of [...this.#linkLossListeners]) listener(reason);
  }

  /** Pairs (Just Works) or fails with `pairingError` when the profile says "fail"; already bonded → paired. */
  pair(): PairResult {
    if (this.#bonded) return { paired: true, error: 0 };
    const { pairing, pairingError } = this.profile.behaviour;
    if (pairing === 'fail') return { paired: false, error: pairingError };
    this.#bonded = true;
    return { paired: true, error: 0 };
  }

  /** Deletes the bond (works without a connection). */
  unpair(): { success: boolean; error: number } {
    this.#bonded = false;
    return { success: true, error: 0 };
  }

  /**
   * Simulates a firmware update that changed the GATT database: every handle moves up by `shift`
   * (cached handles now point elsewhere or nowhere) and subscriptions are dropped. Returns the new table.
   */
  mutateDatabase(shift = DEFAULT_HANDLE_SHIFT): readonly GattServiceProfile[] {
    let highest = 0;
    for (const attribute of this.#attributes.keys()) highest = Math.max(highest, attribute);
    if (!Number.isInteger(shift) || shift < 1 || highest + shift > 0xffff) {
      throw new InvalidArgumentError(`Cannot shift the GATT handles of ${this.mac} by ${shift}: handles must stay within 1..65535`);
    }
    this.#clearSubscriptions();
    this.#shift += shift;
    this.#generation++;
    this.#rebuild();
    return this.#services;
  }

  /**
   * The link went away (`reason` as the proxy reports it): forget notify registrations and CCCD state, stop
   * timers, cancel pending work, tell link listeners. Values and bond stay.
   */
  reset(reason = LOCAL_HOST_REASON): void {
    const wasConnected = this.#state === 'connected';
    if (wasConnected) this.#lastReason = reason;
    this.#state = 'disconnected';
    this.#clearSubscriptions();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#reactions.release();
    if (wasConnected) this.#emitLink({ type: 'disconnected', reason });
  }

  /** Stops everything for good and drops all listeners. Idempotent. */
  close(): void {
    this.#closed = true;
    this.reset();
    this.#notifyListeners.clear();
    this.#linkLossListeners.clear();
    this.#linkListeners.clear();
  }

  #connectError(): number {
    this.#connectAttempts++;
    const { connectError, connectErrorAttempts } = this.profile.behaviour;
    if (connectError !== 0 && (connectErrorAttempts === undefined || this.#connectAttempts <= connectErrorAttempts)) return connectError;
    return this.profile.connectable ? 0 : NOT_CONNECTABLE_ERROR;
  }

  #writeCharacteristic(characteristic: GattCharacteristicProfile, data: Uint8Array, withResponse: boolean): WriteResult {
    if (characteristic.error.write !== undefined) return { error: characteristic.error.write };
    if (characteristic.encrypted && !this.#bonded) return { error: INSUFFICIENT_AUTHENTICATION };
    const needed = withResponse ? PROPERTY_BITS.write : PROPERTY_BITS['write-without-response'];
    if ((characteristic.properties & needed) === 0) return { error: WRITE_NOT_PERMITTED };
    const state = this.#charState(characteristic);
    const onWrite = state.program?.onWrite;
    const refused = onWrite === undefined ? undefined : this.#reactions.during(() => onWrite(copyOf(data), { withResponse }));
    if (refused !== undefined && refused !== 0) return { error: refused };
    state.value = copyOf(data);
    if (characteristic.echoTo !== undefined) {
      const target = this.#characteristics.get(characteristic.echoTo - this.#shift);
      if (target !== undefined) {
        const echoed = copyOf(characteristic.reply ?? data);
        target.value = echoed;
        if (this.#active(target)) this.#reactions.hold(() => this.#emit(target, echoed));
      }
    }
    return { ok: true };
  }

  #writeDescriptor(characteristic: GattCharacteristicProfile, descriptor: GattDescriptorProfile, data: Uint8Array): WriteResult {
    if (descriptor.uuid !== CCCD_UUID) {
      if (!descriptor.writable) return { error: WRITE_NOT_PERMITTED };
      this.#descriptorValues.set(descriptor.handle - this.#shift, copyOf(data));
      return { ok: true };
    }
    if (data.length !== 2) return { error: INVALID_ATTRIBUTE_LENGTH };
    const value = data[0]! | (data[1]! << 8);
    const wantsNotify = (value & CCCD_NOTIFY) !== 0;
    const wantsIndicate = (value & CCCD_INDICATE) !== 0;
    if (
      (value & ~(CCCD_NOTIFY | CCCD_INDICATE)) !== 0 ||
      (wantsNotify && (characteristic.properties & PROPERTY_BITS.notify) === 0) ||
      (wantsIndicate && (characteristic.properties & PROPERTY_BITS.indicate) === 0)
    ) {
      return { error: CCCD_IMPROPERLY_CONFIGURED };
    }
    const state = this.#charState(characteristic);
    state.cccd = value;
    this.#updateNotifyTimer(state);
    this.#updateSubscription(state);
    return { ok: true };
  }

  #active(state: CharacteristicState): boolean {
    return state.registered && state.cccd !== 0;
  }

  #updateNotifyTimer(state: CharacteristicState): void {
    const notify = state.profile.notify;
    if (this.#active(state) && notify !== undefined && state.timer === undefined) {
      state.timer = setInterval(() => {
        const value = notify.values[state.notifyIndex % notify.values.length]!;
        state.notifyIndex = (state.notifyIndex + 1) % notify.values.length;
        state.value = value;
        this.#emit(state, value);
      }, notify.intervalMs);
    } else if (!this.#active(state) && state.timer !== undefined) {
      clearInterval(state.timer);
      state.timer = undefined;
    }
  }

  #emit(state: CharacteristicState, data: Uint8Array): void {
    if (!this.#active(state)) return;
    const handle = state.profile.handle + this.#shift;
    for (const listener of [...this.#notifyListeners]) listener(handle, data.slice());
  }

  #clearSubscriptions(): void {
    for (const state of this.#characteristics.values()) {
      state.registered = false;
      state.cccd = 0;
      if (state.timer !== undefined) clearInterval(state.timer);
      state.timer = undefined;
      this.#updateSubscription(state);
    }
  }

  /** Tells the program when updates of `state` switch on or off. */
  #updateSubscription(state: CharacteristicState): void {
    const active = this.#active(state);
    if (active === state.subscribed) return;
    state.subscribed = active;
    if (active) state.program?.onSubscribe?.(this.#subscriptionOf(state));
    else state.program?.onUnsubscribe?.();
  }

  #subscriptionOf(state: CharacteristicState): Subscription {
    return { notify: (state.cccd & CCCD_NOTIFY) !== 0, indicate: (state.cccd & CCCD_INDICATE) !== 0, mtu: this.mtu };
  }

  #checkUpdateLength(state: CharacteristicState, data: Uint8Array): void {
    if (data.length > this.mtu - ATT_UPDATE_HEADER) {
      throw new InvalidArgumentError(
        `${this.mac}: an update of ${state.profile.uuid} carries at most ${this.mtu - ATT_UPDATE_HEADER} bytes (MTU ${this.mtu}), got ${data.length}`,
      );
    }
  }

  #checkIndications(state: CharacteristicState): void {
    if (!this.#active(state) || (state.cccd & CCCD_INDICATE) === 0) {
      throw new InvalidArgumentError(`${this.mac}: the client has not enabled indications of ${state.profile.uuid}`);
    }
  }

  /** Sends one queued indication; the queue may have waited past a link loss or an unsubscribe. */
  #indicateNow(state: CharacteristicState, data: Uint8Array, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.#state !== 'connected') {
      throw new BleDisconnectedError(`${this.mac}: the link went away before the indication was sent`, this.address, this.#lastReason);
    }
    this.#checkIndications(state);
    state.value = data;
    const confirmed = awaitConfirmation(
      (listener) => this.onLink(listener),
      () => this.#state === 'connected',
      signal,
      (reason) => new BleDisconnectedError(`${this.mac}: the link went away before the indication was confirmed`, this.address, reason),
    );
    this.#emit(state, data);
    return confirmed;
  }

  #emitLink(event: LinkEvent): void {
    for (const listener of [...this.#linkListeners]) listener(event);
  }

  /** A characteristic by value handle (as the client sees it now) or UUID. */
  #resolve(characteristic: string | number): CharacteristicState {
    if (typeof characteristic === 'number') {
      const attribute = this.#attributes.get(characteristic);
      if (attribute?.kind === 'characteristic') return this.#charState(attribute.characteristic);
    } else {
      const uuid = normalizeUuid(characteristic);
      for (const state of this.#characteristics.values()) if (state.profile.uuid === uuid) return state;
    }
    throw new InvalidArgumentError(`${this.mac} has no characteristic ${characteristic}`);
  }

  #setTimer(callback: () => void, delayMs: number): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      callback();
    }, delayMs);
    this.#timers.add(timer);
  }

  /** State of a characteristic from the current (shifted) table. */
  #charState(characteristic: GattCharacteristicProfile): CharacteristicState {
    return this.#characteristics.get(characteristic.handle - this.#shift)!;
  }

  #descriptorValue(descriptor: GattDescriptorProfile): Uint8Array {
    return this.#descriptorValues.get(descriptor.handle - this.#shift) ?? descriptor.value;
  }

  #rebuild(): void {
    const table = buildGattTable(this.profile.gatt.services, this.#shift);
    this.#services = table.services;
    this.#attributes = table.attributes;
  }
}
