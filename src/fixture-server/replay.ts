import { messageInfoById } from '../frame/message-types.js';
import type { FixtureSession, SessionPlugin } from './server.js';
import { entryToWire, type Transcript, type TranscriptEntry } from './transcript.js';

/** Options of the replayer. */
export interface ReplayOptions {
  /** Playback speed relative to the recording; Infinity sends replies at once (default 1). */
  speed?: number;
  /** How many unconsumed requests ahead a client message may match (clients reorder a little). */
  lookahead?: number;
}

/** A client message the recording did not expect. */
export interface ReplayMismatch {
  readonly type: string;
  readonly index: number;
}

interface Segment {
  readonly request: TranscriptEntry | undefined;
  readonly responses: readonly TranscriptEntry[];
  consumed: boolean;
}

/** Messages every device answers itself, recorded or not. */
const LIFECYCLE_IDS = new Set([5, 6, 7, 8]);

/**
 * Replays a recorded session: each client request that matches the next recorded request (by type)
 * is answered with the device messages that followed it, at the recorded pace.
 */
export class ReplayPlugin implements SessionPlugin {
  readonly transcript: Transcript;
  readonly mismatches: ReplayMismatch[] = [];
  readonly #options: ReplayOptions;
  readonly #sessions = new Map<FixtureSession, { segments: Segment[]; timers: Set<NodeJS.Timeout> }>();

  constructor(transcript: Transcript, options: ReplayOptions = {}) {
    this.transcript = transcript;
    this.#options = options;
  }

  intercept(session: FixtureSession, type: number, _payload: Uint8Array): boolean {
    const state = this.#state(session);
    const name = messageInfoById(type)?.name;
    if (name === undefined) return true;
    const lookahead = this.#options.lookahead ?? 8;
    let seen = 0;
    for (const segment of state.segments) {
      if (segment.consumed || segment.request === undefined) continue;
      if (segment.request.type === name) {
        segment.consumed = true;
        if (type === 1) session.state = 'authenticated';
        this.#play(session, segment.request.t, segment.responses, state.timers);
        return true;
      }
      if (++seen >= lookahead) break;
    }
    if (LIFECYCLE_IDS.has(type)) return false;
    this.mismatches.push({ type: name, index: session.received.length - 1 });
    return true;
  }

  onClose(session: FixtureSession): void {
    const state = this.#sessions.get(session);
    if (state === undefined) return;
    for (const timer of state.timers) clearTimeout(timer);
    this.#sessions.delete(session);
  }

  close(): void {
    for (const session of [...this.#sessions.keys()]) this.onClose(session);
  }

  #state(session: FixtureSession): { segments: Segment[]; timers: Set<NodeJS.Timeout> } {
    let state = this.#sessions.get(session);
    if (state === undefined) {
      state = { segments: segmentsOf(this.transcript.entries), timers: new Set() };
      this.#sessions.set(session, state);
    }
    return state;
  }

  #play(session: FixtureSession, since: number, responses: readonly TranscriptEntry[], timers: Set<NodeJS.Timeout>): void {
    const speed = this.#options.speed ?? 1;
    for (const entry of responses) {
      const { id, payload } = entryToWire(entry);
      const delay = Number.isFinite(speed) && speed > 0 ? Math.max(0, (entry.t - since) / speed) : 0;
      if (delay < 1) {
        session.sendRaw(id, payload);
        continue;
      }
      const timer = setTimeout(() => {
        timers.delete(timer);
        session.sendRaw(id, payload);
      }, delay);
      timers.add(timer);
    }
  }
}

function segmentsOf(entries: readonly TranscriptEntry[]): Segment[] {
  const segments: Segment[] = [];
  let current: { request: TranscriptEntry | undefined; responses: TranscriptEntry[] } = { request: undefined, responses: [] };
  for (const entry of entries) {
    if (entry.dir === 'c2d') {
      if (current.request !== undefined || current.responses.length > 0) segments.push({ ...current, consumed: false });
      current = { request: entry, responses: [] };
    } else {
      current.responses.push(entry);
    }
  }
  if (current.request !== undefined || current.responses.length > 0) segments.push({ ...current, consumed: false });
  return segments;
}
