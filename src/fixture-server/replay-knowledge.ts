import type { TranscriptEntry } from './transcript.js';

/** A recorded GATT request's answer: the device messages that followed it for the same address and handle. */
type AnswerKey = `${string}/${number}/${string}`;

/** What a recording says about the proxy and its devices, gathered once for every replayed session. */
export interface ReplayKnowledge {
  /** Feature flags the recording reported (DeviceInfo or capabilities). */
  readonly features: number;
  /** Slots the proxy had (the firmware's default 3 when the recording has no slot report). */
  readonly slotLimit: number;
  /** The last scanner state the recording holds. */
  readonly scanner: { state: string; mode: string; configuredMode: string } | undefined;
  /** MTU of every device the recording connected (by decimal address). */
  readonly connectable: ReadonlyMap<string, number>;
  /** The GetServices answers per address, as recorded (71s without the 72). */
  readonly services: ReadonlyMap<string, readonly TranscriptEntry[]>;
  /** Attribute handles of each address's service table, with the characteristic properties (0 for services and descriptors). */
  readonly handles: ReadonlyMap<string, ReadonlyMap<number, number>>;
  /** The latest recorded answer to a request, by `address/handle/request type`. */
  readonly answers: ReadonlyMap<AnswerKey, readonly TranscriptEntry[]>;
}

/** The request types whose answers are kept by address and handle, with the answers that belong to them. */
const GATT_ANSWERS: Readonly<Record<string, readonly string[]>> = {
  BluetoothGATTReadRequest: ['BluetoothGATTReadResponse', 'BluetoothGATTErrorResponse'],
  BluetoothGATTReadDescriptorRequest: ['BluetoothGATTReadResponse', 'BluetoothGATTErrorResponse'],
  BluetoothGATTWriteRequest: ['BluetoothGATTWriteResponse', 'BluetoothGATTErrorResponse'],
  BluetoothGATTWriteDescriptorRequest: ['BluetoothGATTWriteResponse', 'BluetoothGATTErrorResponse'],
  BluetoothGATTNotifyRequest: ['BluetoothGATTNotifyResponse', 'BluetoothGATTErrorResponse'],
};

/** The firmware's default `connection_slots`. */
const DEFAULT_SLOT_LIMIT = 3;

type Json = Record<string, unknown>;

/** The key of a recorded answer. */
export function answerKey(address: string, handle: number, request: string): AnswerKey {
  return `${address}/${handle}/${request}`;
}

/** Gathers what a recording knows, for the replayer's answers to requests it holds no segment for. */
export function replayKnowledge(entries: readonly TranscriptEntry[]): ReplayKnowledge {
  let features = 0;
  let slotLimit: number | undefined;
  let scanner: ReplayKnowledge['scanner'];
  const connectable = new Map<string, number>();
  const services = new Map<string, TranscriptEntry[]>();
  const handles = new Map<string, Map<number, number>>();
  const answers = new Map<AnswerKey, TranscriptEntry[]>();
  let request: { type: string; address: string; handle: number } | undefined;
  for (const entry of entries) {
    const msg = (entry.msg ?? {}) as Json;
    if (entry.dir === 'c2d') {
      request =
        entry.type in GATT_ANSWERS ? { type: entry.type, address: String(msg.address ?? '0'), handle: Number(msg.handle ?? 0) } : undefined;
      continue;
    }
    switch (entry.type) {
      case 'DeviceInfoResponse':
        features ||= Number(msg.bluetoothProxyFeatureFlags ?? 0);
        break;
      case 'DeviceCapabilitiesResponse':
        features ||= Number((msg.bluetoothProxy as Json | undefined)?.featureFlags ?? 0);
        break;
      case 'BluetoothConnectionsFreeResponse':
        slotLimit = Number(msg.limit ?? 0) || slotLimit;
        break;
      case 'BluetoothScannerStateResponse':
        scanner = {
          state: String(msg.state ?? 'BLUETOOTH_SCANNER_STATE_IDLE'),
          mode: String(msg.mode ?? 'BLUETOOTH_SCANNER_MODE_PASSIVE'),
          configuredMode: String(msg.configuredMode ?? 'BLUETOOTH_SCANNER_MODE_PASSIVE'),
        };
        break;
      case 'BluetoothDeviceConnectionResponse':
        if (msg.connected === true)
          connectable.set(String(msg.address), Number(msg.mtu ?? 0) || connectable.get(String(msg.address)) || 23);
        break;
      case 'BluetoothGATTGetServicesResponse': {
        const address = String(msg.address ?? '0');
        if (!services.has(address)) services.set(address, []);
        services.get(address)!.push(entry);
        addHandles(handles, address, msg);
        break;
      }
    }
    if (request !== undefined && GATT_ANSWERS[request.type]!.includes(entry.type)) {
      if (String(msg.address ?? '0') === request.address && Number(msg.handle ?? 0) === request.handle) {
        answers.set(answerKey(request.address, request.handle, request.type), [entry]);
      }
    }
  }
  return { features, slotLimit: slotLimit ?? DEFAULT_SLOT_LIMIT, scanner, connectable, services, handles, answers };
}

function addHandles(handles: Map<string, Map<number, number>>, address: string, msg: Json): void {
  let table = handles.get(address);
  if (table === undefined) {
    table = new Map();
    handles.set(address, table);
  }
  for (const service of (msg.services ?? []) as Json[]) {
    table.set(Number(service.handle ?? 0), 0);
    for (const characteristic of (service.characteristics ?? []) as Json[]) {
      table.set(Number(characteristic.handle ?? 0), Number(characteristic.properties ?? 0));
      for (const descriptor of (characteristic.descriptors ?? []) as Json[]) table.set(Number(descriptor.handle ?? 0), 0);
    }
  }
}
