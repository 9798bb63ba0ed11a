import { BluetoothProxyFeature } from '../bluetooth/features.js';
import { messageId, messageInfoById } from '../frame/message-types.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceClearCacheResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothGATTErrorResponse,
  BluetoothGATTGetServicesDoneResponse,
  BluetoothGATTNotifyResponse,
  BluetoothScannerSetModeRequest,
  BluetoothScannerStateResponse,
  BluetoothSetConnectionParamsResponse,
} from '../gen/api_pb.js';
import type { ApiSession } from '../server/api-session.js';
import { answerKey, type ReplayKnowledge } from './replay-knowledge.js';
import { entryToWire } from './transcript.js';

/**
 * How long the firmware's stack tries to reach a device that does not answer before it gives up with 0x100
 * (ESPHome's default connection timeout, 20 s: esphome#18640 logs the cancel 20.0 s after the connect).
 */
export const REPLAY_ESTABLISH_TIMEOUT_MS = 20_000;

/** `esp_gatt_status_t` / ESPHome codes the answers use (spec §6.14). */
const NOT_CONNECTED = -1;
const INVALID_HANDLE = 0x01;
const GATT_ERROR = 0x85;
const TERMINATED_BY_PROXY = 0x16;
const CONN_CANCEL = 0x100;
/** GATT property bits of notify and indicate. */
const NOTIFY_OR_INDICATE = 0x10 | 0x20;

/** What the replayer answered to a request the recording has no segment for (serve prints it). */
export interface UnrecordedAnswer {
  /** The request's message name. */
  readonly request: string;
  /** What was sent back, in words ("no answer: ..." when the firmware sends none). */
  readonly answer: string;
}

type Json = Record<string, unknown>;

/**
 * The firmware's answers to requests a recording does not hold, from the state the replayed session is in: links and
 * slots the replay has reported, the recorded service tables and answers. What the firmware decides alone (slots,
 * disconnects, not connected, the scanner mode, cache clearing) is answered as it would; what needs the device and is
 * not recorded is refused with a GATT error, and a device the recording never connected does not answer, so its
 * connect ends as the firmware's does: 0x100 after the stack's establishment timeout.
 */
export class ReplayFallback {
  readonly #knowledge: ReplayKnowledge;
  readonly #establishMs: number;
  #subscribed = false;
  readonly #connected = new Map<string, number>();
  readonly #allocated = new Set<string>();
  readonly #pending = new Map<string, NodeJS.Timeout>();
  #scannerMode: string | undefined;

  constructor(knowledge: ReplayKnowledge, options: { establishTimeoutMs?: number | undefined } = {}) {
    this.#knowledge = knowledge;
    this.#establishMs = options.establishTimeoutMs ?? REPLAY_ESTABLISH_TIMEOUT_MS;
  }

  /** Follows what the replay sent the client (recorded messages included), so the answers fit the session's state. */
  observe(id: number, payload: Uint8Array): void {
    const name = messageInfoById(id)?.name;
    if (name === 'BluetoothDeviceConnectionResponse') {
      const m = BluetoothDeviceConnectionResponse.fromBinary(payload);
      const address = String(m.address);
      if (m.connected) this.#connected.set(address, m.mtu);
      else this.#connected.delete(address);
    } else if (name === 'BluetoothConnectionsFreeResponse') {
      const m = BluetoothConnectionsFreeResponse.fromBinary(payload);
      if (m.allocated.length > 0 || m.free === m.limit) {
        this.#allocated.clear();
        for (const address of m.allocated) this.#allocated.add(String(address));
      }
    } else if (name === 'BluetoothScannerStateResponse') {
      this.#scannerMode = BluetoothScannerStateResponse.fromBinary(payload).mode === 1 ? 'ACTIVE' : 'PASSIVE';
    }
  }

  /** Notes a recorded subscribe the client sent (the session is then the Bluetooth subscriber). */
  subscribed(): void {
    this.#subscribed = true;
  }

  /** Answers an unrecorded request as the firmware would; undefined for messages it has no answer for. */
  answer(session: ApiSession, type: number, payload: Uint8Array): UnrecordedAnswer | undefined {
    const info = messageInfoById(type);
    if (info === undefined) return undefined;
    const request = info.name;
    const json = info.type.toJson(info.type.fromBinary(payload), { emitDefaultValues: true }) as Json;
    const answer = (text: string): UnrecordedAnswer => ({ request, answer: text });
    if (request === 'SubscribeBluetoothConnectionsFreeRequest') {
      this.#sendSlots(session);
      return answer('the slot report (answered to any client)');
    }
    if (request === 'SubscribeBluetoothLEAdvertisementsRequest') {
      this.#subscribed = true;
      if (!this.#has(BluetoothProxyFeature.FEATURE_STATE_AND_MODE)) return answer('nothing: no advertisements are recorded');
      this.#sendScanner(session, this.#scannerMode);
      return answer('the scanner state; no advertisements are recorded');
    }
    if (request === 'UnsubscribeBluetoothLEAdvertisementsRequest') {
      this.#subscribed = false;
      // Without a subscriber the firmware drops every link it holds.
      for (const address of [...this.#connected.keys(), ...this.#pending.keys()]) this.#disconnected(session, address, TERMINATED_BY_PROXY);
      return answer('no answer (none in the firmware); its links are dropped');
    }
    // Every other Bluetooth answer goes to the subscriber only (spec §6.3).
    if (!this.#subscribed && request.startsWith('Bluetooth')) {
      return answer('no answer: the firmware answers Bluetooth requests to its subscriber only, and this client did not subscribe');
    }
    const address = String(json.address ?? '0');
    const handle = Number(json.handle ?? 0);
    switch (request) {
      case 'BluetoothDeviceRequest':
        return answer(this.#deviceRequest(session, BluetoothDeviceRequest.fromBinary(payload)));
      case 'BluetoothGATTGetServicesRequest':
        return answer(this.#services(session, address));
      case 'BluetoothGATTReadRequest':
      case 'BluetoothGATTReadDescriptorRequest':
      case 'BluetoothGATTWriteRequest':
      case 'BluetoothGATTWriteDescriptorRequest':
        if (request === 'BluetoothGATTWriteRequest' && json.response !== true) return answer('no answer (a write without response)');
        return answer(this.#gatt(session, request, address, handle));
      case 'BluetoothGATTNotifyRequest':
        return answer(this.#notify(session, request, address, handle));
      case 'BluetoothScannerSetModeRequest': {
        if (!this.#has(BluetoothProxyFeature.FEATURE_STATE_AND_MODE)) return answer('no answer: the proxy cannot switch its scanner');
        const mode = BluetoothScannerSetModeRequest.fromBinary(payload).mode === 1 ? 'ACTIVE' : 'PASSIVE';
        this.#sendScanner(session, mode);
        return answer(`the scanner state, now ${mode.toLowerCase()}`);
      }
      case 'BluetoothSetConnectionParamsRequest':
        session.send(BluetoothSetConnectionParamsResponse, {
          address: Number(address),
          error: this.#connected.has(address) ? 0 : NOT_CONNECTED,
        });
        return answer(this.#connected.has(address) ? 'accepted (error 0)' : 'error -1: not connected');
      default:
        return undefined;
    }
  }

  /** Ends the session's timers. */
  close(): void {
    for (const timer of this.#pending.values()) clearTimeout(timer);
    this.#pending.clear();
  }

  #deviceRequest(session: ApiSession, request: BluetoothDeviceRequest): string {
    const address = String(request.address);
    const wire = request.address;
    switch (request.requestType) {
      case BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE:
      case BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE:
        if (!this.#has(BluetoothProxyFeature.ACTIVE_CONNECTIONS))
          return 'no answer: the proxy has no connection slots (advertisement-only)';
        return this.#connect(session, address, request.hasAddressType);
      case BluetoothDeviceRequestType.DISCONNECT:
        if (this.#connected.has(address) || this.#pending.has(address)) {
          this.#disconnected(session, address, TERMINATED_BY_PROXY);
          return 'connected=false 0x16 (terminated by the proxy), the slot freed';
        }
        session.send(BluetoothDeviceConnectionResponse, { address: wire, connected: false, error: 0 });
        this.#sendSlots(session);
        return 'connected=false error 0 and the slots (no slot held for it)';
      case BluetoothDeviceRequestType.PAIR:
        if (!this.#has(BluetoothProxyFeature.PAIRING)) return 'no answer: the proxy cannot pair';
        if (!this.#connected.has(address)) return 'no answer: the firmware does not answer PAIR without a link';
        session.send(BluetoothDevicePairingResponse, { address: wire, paired: false, error: GATT_ERROR });
        return 'paired=false 0x85: the pairing is not recorded';
      case BluetoothDeviceRequestType.UNPAIR:
        if (!this.#has(BluetoothProxyFeature.PAIRING)) return 'no answer: the proxy cannot unpair';
        // ESPHome answers with the result of esp_ble_remove_bond_device, which only queues the removal: ESP_OK.
        session.send(BluetoothDevicePairingResponse, { address: wire, paired: true, error: 0 });
        return 'bond removed (the firmware answers at once)';
      case BluetoothDeviceRequestType.CLEAR_CACHE:
        if (!this.#has(BluetoothProxyFeature.CACHE_CLEARING)) return 'no answer: the proxy has no cache to clear';
        session.send(BluetoothDeviceClearCacheResponse, { address: wire, success: true, error: 0 });
        return 'cache cleared (the firmware answers at once)';
      default:
        session.send(BluetoothDeviceConnectionResponse, { address: wire, connected: false, error: 0 });
        return 'connected=false error 0 (the v1 connect is gone from the firmware)';
    }
  }

  #connect(session: ApiSession, address: string, hasAddressType: boolean): string {
    const wire = Number(address);
    if (this.#connected.has(address)) {
      session.send(BluetoothDeviceConnectionResponse, { address: wire, connected: true, mtu: 0 });
      this.#sendSlots(session);
      return 'connected=true (already connected)';
    }
    if (this.#pending.has(address)) return 'no answer: already connecting (as the firmware)';
    if (!hasAddressType || this.#allocated.size >= this.#knowledge.slotLimit) {
      session.send(BluetoothDeviceConnectionResponse, { address: wire, connected: false, error: 0 });
      return hasAddressType ? 'connected=false error 0: no free slot' : 'connected=false error 0: has_address_type not set';
    }
    this.#allocated.add(address);
    this.#sendSlots(session);
    const mtu = this.#knowledge.connectable.get(address);
    if (mtu !== undefined) {
      session.send(BluetoothDeviceConnectionResponse, { address: wire, connected: true, mtu });
      this.#connected.set(address, mtu);
      this.#sendSlots(session);
      return 'connected=true: the recording connected this device';
    }
    const timer = setTimeout(() => {
      this.#pending.delete(address);
      this.#disconnected(session, address, CONN_CANCEL);
    }, this.#establishMs);
    timer.unref();
    this.#pending.set(address, timer);
    return `a slot, then connected=false 0x100 after ${this.#establishMs} ms: the recording never connected this device, so it does not answer`;
  }

  #services(session: ApiSession, address: string): string {
    const wire = Number(address);
    if (!this.#connected.has(address)) {
      session.send(BluetoothGATTErrorResponse, { address: wire, handle: 0, error: NOT_CONNECTED });
      return 'GATT error -1: not connected';
    }
    const recorded = this.#knowledge.services.get(address) ?? [];
    for (const entry of recorded) {
      const { id, payload } = entryToWire(entry);
      session.sendRaw(id, payload);
    }
    session.send(BluetoothGATTGetServicesDoneResponse, { address: wire });
    return recorded.length > 0 ? 'the recorded services' : 'no services: none are recorded for this device';
  }

  #gatt(session: ApiSession, request: string, address: string, handle: number): string {
    const refusal = this.#refusal(session, request, address, handle);
    if (refusal !== undefined) return refusal;
    this.#sendError(session, address, handle, GATT_ERROR);
    return `GATT error 0x85: the recording holds no answer of the device to this request for handle ${handle}`;
  }

  #notify(session: ApiSession, request: string, address: string, handle: number): string {
    const refusal = this.#refusal(session, request, address, handle);
    if (refusal !== undefined) return refusal;
    // Registering for notifications is the proxy's own business (its stack), the device is not asked.
    session.send(BluetoothGATTNotifyResponse, { address: Number(address), handle });
    const properties = this.#knowledge.handles.get(address)?.get(handle) ?? 0;
    return (properties & NOTIFY_OR_INDICATE) === 0 ? 'registered, though the characteristic neither notifies nor indicates' : 'registered';
  }

  /** The firmware's own refusals and the recorded answer, in that order; undefined when neither applies. */
  #refusal(session: ApiSession, request: string, address: string, handle: number): string | undefined {
    if (!this.#connected.has(address)) {
      this.#sendError(session, address, handle, NOT_CONNECTED);
      return 'GATT error -1: not connected';
    }
    const recorded = this.#knowledge.answers.get(answerKey(address, handle, request));
    if (recorded !== undefined) {
      for (const entry of recorded) {
        const { id, payload } = entryToWire(entry);
        session.sendRaw(id, payload);
      }
      return 'the recorded answer again';
    }
    const table = this.#knowledge.handles.get(address);
    if (table !== undefined && !table.has(handle)) {
      this.#sendError(session, address, handle, INVALID_HANDLE);
      return `GATT error 0x01: handle ${handle} is not in the recorded service table`;
    }
    return undefined;
  }

  #disconnected(session: ApiSession, address: string, reason: number): void {
    clearTimeout(this.#pending.get(address));
    this.#pending.delete(address);
    this.#connected.delete(address);
    this.#allocated.delete(address);
    const message = { address: Number(address), connected: false, error: reason };
    // The firmware reports the disconnect event and then the close event (spec §6.7), then frees the slot.
    session.send(BluetoothDeviceConnectionResponse, message);
    session.send(BluetoothDeviceConnectionResponse, message);
    this.#sendSlots(session);
  }

  #sendError(session: ApiSession, address: string, handle: number, error: number): void {
    session.send(BluetoothGATTErrorResponse, { address: Number(address), handle, error });
  }

  #sendSlots(session: ApiSession): void {
    const limit = this.#knowledge.slotLimit;
    session.send(BluetoothConnectionsFreeResponse, {
      free: Math.max(0, limit - this.#allocated.size),
      limit,
      allocated: [...this.#allocated].map((a) => Number(a)),
    });
  }

  #sendScanner(session: ApiSession, mode: string | undefined): void {
    const recorded = this.#knowledge.scanner;
    const current = mode ?? recorded?.mode ?? 'BLUETOOTH_SCANNER_MODE_ACTIVE';
    const full = (m: string): string => (m.startsWith('BLUETOOTH_') ? m : `BLUETOOTH_SCANNER_MODE_${m}`);
    const message = BluetoothScannerStateResponse.fromJson({
      state: 'BLUETOOTH_SCANNER_STATE_RUNNING',
      mode: full(current),
      configuredMode: full(recorded?.configuredMode ?? current),
    });
    session.sendRaw(messageId(BluetoothScannerStateResponse), BluetoothScannerStateResponse.toBinary(message));
  }

  #has(feature: number): boolean {
    return (this.#knowledge.features & feature) !== 0;
  }
}
