import { type MessageTypeInfo, messageInfoById } from '../frame/message-types.js';
import { HelloRequest } from '../gen/api_pb.js';
import type { ApiSession, SessionPlugin } from '../server/api-server.js';
import { entryToWire, type Transcript, type TranscriptEntry } from './transcript.js';

/** Options of the replayer. */
export interface ReplayOptions {
  /** Playback speed relative to the recording; Infinity sends replies at once (default 1). */
  speed?: number;
  /** How many unconsumed requests ahead a client message may match (clients reorder a little). */
  lookahead?: number;
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
}

/** Messages the fixture server answers itself when the recording has no (more) of them: Hello, disconnect, ping. */
const LIFECYCLE_IDS = new Set([1, 5, 6, 7, 8]);

/**
 * Replays a recorded session: each client request that matches the next recorded request (by type,
 * preferring one with the same content within the lookahead) is answered with the device messages
 * that followed it, at the recorded pace. Replies still waiting from earlier requests are sent first,
 * so the device's messages always keep their recorded order.
 */
export class ReplayPlugin implements SessionPlugin {
  readonly transcript: Transcript;
  /** Client messages the recording did not expect. */
  readonly mismatches: ReplayMismatch[] = [];
  /** Recorded requests that a closed session never sent. */
  readonly unplayed: ReplayMismatch[] = [];
  readonly #options: ReplayOptions;
  readonly #sessions = new Map<ApiSession, ReplayState>();

  constructor(transcript: Transcript, options: ReplayOptions = {}) {
    this.transcript = transcript;
    this.#options = options;
  }

  intercept(session: ApiSession, type: number, payload: Uint8Array): boolean {
    const state = this.#state(session);
    const info = messageInfoById(type);
    if (info === undefined) return true;
    const segment = this.#match(state, info, payload);
    if (segment !== undefined) {
      segment.consumed = true;
      if (type === 1) this.#hello(session, payload);
      this.#flush(session, state);
      this.#play(session, segment.request!.t, segment.responses, state);
      return true;
    }
    if (LIFECYCLE_IDS.has(type)) return false;
    this.mismatches.push({ type: info.name, index: session.messagesReceived - 1 });
    return true;
  }

  onClose(session: ApiSession): void {
    const state = this.#sessions.get(session);
    if (state === undefined) return;
    for (const send of state.scheduled) clearTimeout(send.timer);
    state.scheduled.length = 0;
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
      state = { segments: segmentsOf(this.transcript.entries), scheduled: [] };
      this.#sessions.set(session, state);
    }
    return state;
  }

  /** The first unconsumed recorded request of this type within the lookahead, preferring an identical one. */
  #match(state: ReplayState, info: MessageTypeInfo, payload: Uint8Array): Segment | undefined {
    const lookahead = this.#options.lookahead ?? 8;
    const window: Segment[] = [];
    for (const segment of state.segments) {
      if (segment.consumed || segment.request === undefined) continue;
      window.push(segment);
      if (window.length >= lookahead) break;
    }
    const candidates = window.filter((segment) => segment.request!.type === info.name);
    if (candidates.length <= 1) return candidates[0];
    let json: string | undefined;
    try {
      json = JSON.stringify(info.type.toJson(info.type.fromBinary(payload), { emitDefaultValues: false }));
    } catch {
      json = undefined;
    }
    return candidates.find((segment) => JSON.stringify(segment.request!.msg) === json) ?? candidates[0];
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
    sendBatch(session, state.scheduled.splice(0));
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
          if (at >= 0) sendBatch(session, state.scheduled.splice(0, at + 1));
        }, delay),
      };
      state.scheduled.push(send);
    }
    sendBatch(session, now);
  }
}

/** Sends replies due at the same moment in one TCP write, as the firmware batches its send buffer. */
function sendBatch(session: ApiSession, sends: ReadonlyArray<{ id: number; payload: Uint8Array; timer?: NodeJS.Timeout }>): void {
  if (sends.length === 0) return;
  session.socket.cork();
  try {
    for (const send of sends) {
      if (send.timer !== undefined) clearTimeout(send.timer);
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
