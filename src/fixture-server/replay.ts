import type { PartialMessage } from '@protobuf-ts/runtime';
import { type MessageTypeInfo, messageId, messageInfoById } from '../frame/message-types.js';
import {
  AuthenticationRequest,
  DeviceCapabilitiesRequest,
  DeviceCapabilitiesResponse,
  DeviceInfoRequest,
  DeviceInfoResponse,
  DisconnectRequest,
  DisconnectResponse,
  GetTimeResponse,
  HelloRequest,
  ListEntitiesRequest,
  PingRequest,
  PingResponse,
  SubscribeBluetoothLEAdvertisementsRequest,
} from '../gen/api_pb.js';
import type { ApiSession, SessionPlugin } from '../server/api-server.js';
import { ReplayFallback, type UnrecordedAnswer } from './replay-fallback.js';
import { type ReplayKnowledge, replayKnowledge } from './replay-knowledge.js';
import { entryToWire, type Transcript, type TranscriptEntry } from './transcript.js';

export type { UnrecordedAnswer } from './replay-fallback.js';

/** Options of the replayer. */
export interface ReplayOptions {
  /** Playback speed relative to the recording; Infinity sends replies at once (default 1). */
  speed?: number;
  /** Among the recorded requests a client message may match, how many ahead an identical one is preferred (default 8). */
  lookahead?: number;
  /** Told about every request the recording has no segment for, with what was answered instead (serve prints it). */
  onUnrecorded?: (answer: UnrecordedAnswer) => void;
  /** How long a connect to a device the recording never connected waits for its 0x100 (default the firmware's 20 s). */
  establishTimeout?: number;
}

/** A client message the recording did not expect, or a recorded request no client sent. */
export interface ReplayMismatch {
  readonly type: string;
  /** Position among the session's received messages (mismatches) or of the entry in the transcript (unplayed). */
  readonly index: number;
}

interface Segment {
  readonly request: TranscriptEntry | undefined;
  /** Index of the request in the transcript. */
  readonly index: number;
  readonly responses: readonly TranscriptEntry[];
  consumed: boolean;
}

interface ScheduledSend {
  readonly timer: NodeJS.Timeout;
  readonly id: number;
  readonly payload: Uint8Array;
}

interface ReplayState {
  readonly segments: Segment[];
  /** Replies waiting for their recorded moment, oldest first. */
  readonly scheduled: ScheduledSend[];
  /** The firmware's answers to what the recording does not hold, from this session's state. */
  readonly fallback: ReplayFallback;
}

/** Messages the fixture server answers itself when the recording has no (more) of them: Hello, disconnect, ping. */
const LIFECYCLE_IDS = new Set([HelloRequest, DisconnectRequest, DisconnectResponse, PingRequest, PingResponse].map(messageId));
/** Set-up messages the server answers itself from the recorded device info: login, DeviceInfo, ListEntities, GetTime, capabilities. */
const SERVER_ANSWERED_IDS = new Set(
  [AuthenticationRequest, DeviceInfoRequest, ListEntitiesRequest, GetTimeResponse, DeviceCapabilitiesRequest].map(messageId),
);
/** Wire id of SubscribeBluetoothLEAdvertisementsRequest: the session is the subscriber from then on. */
const SUBSCRIBE_ID = messageId(SubscribeBluetoothLEAdvertisementsRequest);
const HELLO_ID = messageId(HelloRequest);

/**
 * Replays a recorded session: each client request that matches a recorded one not played yet (same type, and for
 * Bluetooth requests the same device, handle or request kind; an identical one preferred within the lookahead) is
 * answered with the device messages that followed it, at the recorded pace. Replies still waiting from earlier
 * requests are sent first, so the device's messages always keep their recorded order. A request the recording has no
 * segment for is answered as the firmware would in the session's state (ReplayFallback): never left hanging for
 * lack of a recording, and reported to `onUnrecorded`.
 */
export class ReplayPlugin implements SessionPlugin {
  readonly transcript: Transcript;
  /** Client messages the recording did not expect. */
  readonly mismatches: ReplayMismatch[] = [];
  /** Recorded requests that a closed session never sent. */
  readonly unplayed: ReplayMismatch[] = [];
  readonly #options: ReplayOptions;
  readonly #knowledge: ReplayKnowledge;
  readonly #sessions = new Map<ApiSession, ReplayState>();

  constructor(transcript: Transcript, options: ReplayOptions = {}) {
    this.transcript = transcript;
    this.#options = options;
    this.#knowledge = replayKnowledge(transcript.entries);
  }

  /** The recorded DeviceInfo, for a client that asks for it again (the server answers with it). */
  deviceInfo(): Partial<DeviceInfoResponse> {
    const entry = this.transcript.entries.find((e) => e.type === DeviceInfoResponse.typeName);
    return entry === undefined ? {} : DeviceInfoResponse.fromJson(entry.msg);
  }

  /** The recorded capabilities, likewise. */
  capabilities(): PartialMessage<DeviceCapabilitiesResponse> {
    const entry = this.transcript.entries.find((e) => e.type === DeviceCapabilitiesResponse.typeName);
    return entry === undefined ? {} : DeviceCapabilitiesResponse.fromJson(entry.msg);
  }

  intercept(session: ApiSession, type: number, payload: Uint8Array): boolean {
    const state = this.#state(session);
    const info = messageInfoById(type);
    if (info === undefined) return true;
    const segment = this.#match(state, info, payload);
    if (segment !== undefined) {
      segment.consumed = true;
      if (type === HELLO_ID) this.#hello(session, payload);
      if (type === SUBSCRIBE_ID) state.fallback.subscribed();
      this.#flush(session, state);
      this.#play(session, segment.request!.t, segment.responses, state);
      return true;
    }
    if (LIFECYCLE_IDS.has(type)) return false;
    this.mismatches.push({ type: info.name, index: session.messagesReceived - 1 });
    if (SERVER_ANSWERED_IDS.has(type)) return false;
    this.#flush(session, state);
    const answer = state.fallback.answer(session, type, payload) ?? {
      request: info.name,
      answer: 'no answer: the firmware has none for this request',
    };
    this.#options.onUnrecorded?.(answer);
    return true;
  }

  onClose(session: ApiSession): void {
    const state = this.#sessions.get(session);
    if (state === undefined) return;
    for (const send of state.scheduled) clearTimeout(send.timer);
    state.scheduled.length = 0;
    state.fallback.close();
    for (const segment of state.segments) {
      if (!segment.consumed && segment.request !== undefined) this.unplayed.push({ type: segment.request.type, index: segment.index });
    }
    this.#sessions.delete(session);
  }

  close(): void {
    for (const session of [...this.#sessions.keys()]) this.onClose(session);
  }

  #state(session: ApiSession): ReplayState {
    let state = this.#sessions.get(session);
    if (state === undefined) {
      state = {
        segments: segmentsOf(this.transcript.entries),
        scheduled: [],
        fallback: new ReplayFallback(this.#knowledge, { establishTimeoutMs: this.#options.establishTimeout }),
      };
      this.#sessions.set(session, state);
    }
    return state;
  }

  /**
   * The first recorded request not played yet with this type and key (requestKey), preferring an identical one among
   * the first `lookahead` of them.
   */
  #match(state: ReplayState, info: MessageTypeInfo, payload: Uint8Array): Segment | undefined {
    const lookahead = this.#options.lookahead ?? 8;
    let msg: unknown;
    try {
      msg = info.type.toJson(info.type.fromBinary(payload), { emitDefaultValues: false });
    } catch {
      return undefined;
    }
    const key = requestKey(info.name, msg);
    const candidates = state.segments.filter(
      (segment) => !segment.consumed && segment.request?.type === info.name && requestKey(info.name, segment.request.msg) === key,
    );
    const json = JSON.stringify(msg);
    return candidates.slice(0, lookahead).find((segment) => JSON.stringify(segment.request!.msg) === json) ?? candidates[0];
  }

  #hello(session: ApiSession, payload: Uint8Array): void {
    try {
      const hello = HelloRequest.fromBinary(payload);
      session.clientInfo = hello.clientInfo;
      session.clientApiVersion = { major: hello.apiVersionMajor, minor: hello.apiVersionMinor };
    } catch {
      // The recording answers regardless.
    }
    if (session.state === 'new' || session.state === 'setup') session.state = 'authenticated';
  }

  /** Sends at once every reply still waiting: they were recorded before the request that just came in. */
  #flush(session: ApiSession, state: ReplayState): void {
    sendBatch(session, state.scheduled.splice(0), state.fallback);
  }

  #play(session: ApiSession, since: number, responses: readonly TranscriptEntry[], state: ReplayState): void {
    const speed = this.#options.speed ?? 1;
    const now: Array<{ id: number; payload: Uint8Array }> = [];
    for (const entry of responses) {
      const { id, payload } = entryToWire(entry);
      const delay = Number.isFinite(speed) && speed > 0 ? Math.max(0, (entry.t - since) / speed) : 0;
      // Anything queued ahead of this reply must go first, even when this one is due now.
      if (delay < 1 && state.scheduled.length === 0) {
        now.push({ id, payload });
        continue;
      }
      const send: ScheduledSend = {
        id,
        payload,
        timer: setTimeout(() => {
          // Timers of equal or rounded delays may fire out of order: send everything due up to this reply.
          const at = state.scheduled.indexOf(send);
          if (at >= 0) sendBatch(session, state.scheduled.splice(0, at + 1), state.fallback);
        }, delay),
      };
      state.scheduled.push(send);
    }
    sendBatch(session, now, state.fallback);
  }
}

/**
 * What a client request must share with a recorded one to be answered by it besides its type: the device, and the
 * handle or the kind of device request (a connect with or without cache is one kind). Other requests match by type.
 */
function requestKey(type: string, msg: unknown): string {
  const m = (msg ?? {}) as Record<string, unknown>;
  if (m.address === undefined && m.handle === undefined && type !== 'BluetoothDeviceRequest') return '';
  const address = String(m.address ?? '0');
  if (type === 'BluetoothDeviceRequest') {
    const kind = String(m.requestType ?? 'BLUETOOTH_DEVICE_REQUEST_TYPE_CONNECT');
    return `${address}/${kind.includes('CONNECT') && !kind.includes('DISCONNECT') ? 'connect' : kind}`;
  }
  return `${address}/${String(m.handle ?? 0)}`;
}

/** Sends replies due at the same moment in one TCP write, as the firmware batches its send buffer. */
function sendBatch(
  session: ApiSession,
  sends: ReadonlyArray<{ id: number; payload: Uint8Array; timer?: NodeJS.Timeout }>,
  fallback: ReplayFallback,
): void {
  if (sends.length === 0) return;
  session.socket.cork();
  try {
    for (const send of sends) {
      if (send.timer !== undefined) clearTimeout(send.timer);
      fallback.observe(send.id, send.payload);
      session.sendRaw(send.id, send.payload);
    }
  } finally {
    session.socket.uncork();
  }
}

function segmentsOf(entries: readonly TranscriptEntry[]): Segment[] {
  const segments: Segment[] = [];
  let current: { request: TranscriptEntry | undefined; index: number; responses: TranscriptEntry[] } = {
    request: undefined,
    index: -1,
    responses: [],
  };
  for (const [index, entry] of entries.entries()) {
    if (entry.dir === 'c2d') {
      if (current.request !== undefined || current.responses.length > 0) segments.push({ ...current, consumed: false });
      current = { request: entry, index, responses: [] };
    } else {
      current.responses.push(entry);
    }
  }
  if (current.request !== undefined || current.responses.length > 0) segments.push({ ...current, consumed: false });
  return segments;
}
