import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DEFAULT_API_PORT, type MessageTap } from '../connection/connection.js';
import { decodeMessage, MessageDispatcher } from '../frame/dispatch.js';
import { messageInfoById } from '../frame/message-types.js';
import { AuthenticationRequest, DeviceInfoResponse, HelloResponse, PingRequest, PingResponse } from '../gen/api_pb.js';
import { formatTranscript, type Transcript, type TranscriptEntry, type TranscriptHeader } from './transcript.js';

/** Environment variable: a `.jsonl` path makes every API session the CLI opens record itself there. */
export const RECORD_ENV = 'ESPHOME_BLE_RECORD';

/** What the recorder writes instead of a non-empty API password. */
export const REDACTED = '<redacted>';

/** The keep-alive pair: their number and timing depend only on how long the session idled. */
const KEEPALIVES: ReadonlySet<object> = new Set([PingRequest, PingResponse]);

/** What a recorded message tells the recorder: the message to write, and the session's name or MAC when it carries them. */
interface Noted {
  message: object;
  name?: string;
  mac?: string;
}

/** Empty strings are what protobuf leaves out: they name nothing and hide no password. */
const NOTES = new MessageDispatcher<Noted>()
  .on(AuthenticationRequest, (m, noted) => {
    if (m.password !== '') noted.message = { ...m, password: REDACTED };
  })
  .on(HelloResponse, (m, noted) => {
    if (m.name !== '') noted.name = m.name;
  })
  .on(DeviceInfoResponse, (m, noted) => {
    if (m.macAddress !== '') noted.mac = m.macAddress;
  });

/** Options of a SessionRecorder. */
export interface SessionRecorderOptions {
  /**
   * Keep PingRequest/PingResponse (default false). Keep-alives are timing noise: they appear only
   * after 20 s of silence, so a replay would expect them at moments no client reproduces.
   */
  includePings?: boolean;
  /** Round `t` to this many ms (default 1); coarser values make recordings of the simulator diff cleanly. */
  resolution?: number;
  /** Clock in ms (tests inject one). */
  now?: () => number;
}

/** Header fields a recorder is created with; `name: ''` and an absent `mac` are filled from the session. */
export type RecorderHeader = Omit<TranscriptHeader, 'format' | 'version'>;

/**
 * Records one API session as a transcript: pass `recorder.tap` as the `tap` of ApiConnection.connect().
 * Times are ms since the first recorded message. Messages with ids the schema does not know are
 * skipped (counted in `skipped`), keep-alive pings are dropped unless `includePings`, and a
 * non-empty AuthenticationRequest password is replaced by `<redacted>`.
 * An empty header `name` is taken from the HelloResponse, an absent `mac` from the DeviceInfoResponse.
 */
export class SessionRecorder {
  /** Pass as ApiConnection.connect({ tap }). */
  readonly tap: MessageTap;
  /** Messages not recorded because the schema does not know their id. */
  skipped = 0;
  readonly #header: RecorderHeader;
  readonly #entries: TranscriptEntry[] = [];
  readonly #includePings: boolean;
  readonly #resolution: number;
  readonly #now: () => number;
  #start: number | undefined;
  #name: string | undefined;
  #mac: string | undefined;

  constructor(header: RecorderHeader, options: SessionRecorderOptions = {}) {
    this.#header = header;
    this.#includePings = options.includePings ?? false;
    this.#resolution = options.resolution !== undefined && options.resolution > 0 ? options.resolution : 1;
    this.#now = options.now ?? (() => performance.now());
    this.tap = (direction, id, payload) => this.#record(direction, id, payload);
  }

  /** Messages recorded so far. */
  get size(): number {
    return this.#entries.length;
  }

  /** The session so far as a transcript. */
  transcript(): Transcript {
    const { name, mac, ...rest } = this.#header;
    const filledMac = mac ?? this.#mac;
    const header: TranscriptHeader = {
      format: 'esphome-ble-transcript',
      version: 1,
      name: name !== '' ? name : (this.#name ?? 'unknown'),
      ...(filledMac === undefined ? {} : { mac: filledMac }),
      ...rest,
    };
    return { header, entries: [...this.#entries] };
  }

  /** Writes the transcript as JSON lines, creating the directory. */
  async save(path: string): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, formatTranscript(this.transcript()));
  }

  /** Synchronous save, for process exit. */
  saveSync(path: string): void {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, formatTranscript(this.transcript()));
  }

  #record(direction: 'c2d' | 'd2c', id: number, payload: Uint8Array): void {
    const info = messageInfoById(id);
    if (info === undefined) {
      this.skipped++;
      return;
    }
    if (!this.#includePings && KEEPALIVES.has(info.type)) return;
    const now = this.#now();
    this.#start ??= now;
    const t = Math.round((now - this.#start) / this.#resolution) * this.#resolution;
    let noted: Noted;
    let entry: TranscriptEntry;
    try {
      // Decoded and written as JSON at once: the payload may alias a socket buffer reused after the tap returns.
      noted = { message: decodeMessage(info.type, payload) };
      NOTES.dispatchDecoded({ info, message: noted.message }, noted);
      entry = { dir: direction, t: Math.round(t), type: info.name, msg: info.type.toJson(noted.message, { emitDefaultValues: false }) };
    } catch {
      this.skipped++;
      return;
    }
    if (noted.name !== undefined) this.#name ??= noted.name;
    if (noted.mac !== undefined) this.#mac ??= noted.mac;
    this.#entries.push(entry);
  }
}

/** Options of a process-wide recording (the `record` command, $ESPHOME_BLE_RECORD). */
export interface RecordingOptions extends SessionRecorderOptions {
  /** Header description of every recorded session. */
  description?: string;
}

/** One file a recording wrote. */
export interface RecordedFile {
  readonly path: string;
  readonly name: string;
  readonly messages: number;
}

interface RecordingTarget {
  readonly path: string;
  readonly options: RecordingOptions;
  readonly sessions: SessionRecorder[];
  saved: boolean;
}

let active: RecordingTarget | undefined;

/**
 * Starts recording every API session the CLI opens from now on (through `withRecording`) into `path`;
 * a second session goes to `<path minus .jsonl>.2.jsonl`, and so on. Stop with stopRecording().
 */
export function startRecording(path: string, options: RecordingOptions = {}): void {
  active = { path, options, sessions: [], saved: false };
}

/** Saves every recorded session and ends the recording; resolves with the files written. */
export async function stopRecording(): Promise<RecordedFile[]> {
  const target = active;
  active = undefined;
  if (target === undefined || target.saved) return [];
  target.saved = true;
  const files = filesOf(target);
  for (const { session, file } of files) await session.save(file.path);
  return files.map(({ file }) => file);
}

/**
 * A tap recording one new session when a recording is running (the `record` command) or
 * $ESPHOME_BLE_RECORD names a file, else undefined. Sessions recorded through the environment
 * variable are written when the process exits.
 */
export function recordingTapFromEnv(
  connect: { host?: string; port?: number | undefined; psk?: string | undefined } = {},
): MessageTap | undefined {
  const target = active ?? targetFromEnv();
  if (target === undefined) return undefined;
  const where = connect.host === undefined ? '' : ` from ${connect.host}:${connect.port ?? DEFAULT_API_PORT}`;
  const recorder = new SessionRecorder(
    {
      name: '',
      encryption: connect.psk === undefined ? 'plaintext' : 'noise',
      recordedAt: new Date().toISOString(),
      description: target.options.description ?? `Recorded by esphome-ble${where}`,
    },
    target.options,
  );
  target.sessions.push(recorder);
  return recorder.tap;
}

/** Returns ApiConnection.connect() options with a recording tap added when recording is on (unchanged otherwise). */
export function withRecording<
  T extends { host: string; port?: number | undefined; psk?: string | undefined; tap?: MessageTap | undefined },
>(options: T): T {
  const tap = recordingTapFromEnv(options);
  if (tap === undefined) return options;
  const previous = options.tap;
  return {
    ...options,
    tap:
      previous === undefined
        ? tap
        : (direction: 'c2d' | 'd2c', id: number, payload: Uint8Array) => {
            previous(direction, id, payload);
            tap(direction, id, payload);
          },
  };
}

/** Path of the n-th (0-based) session of a recording into `path`. */
export function sessionPath(path: string, index: number): string {
  if (index === 0) return path;
  const base = path.endsWith('.jsonl') ? path.slice(0, -'.jsonl'.length) : path;
  return `${base}.${index + 1}.jsonl`;
}

/** Sessions that recorded anything (a connect that failed before the handshake has nothing), numbered in order. */
function filesOf(target: RecordingTarget): Array<{ session: SessionRecorder; file: RecordedFile }> {
  return target.sessions
    .filter((session) => session.size > 0)
    .map((session, i) => {
      const transcript = session.transcript();
      return { session, file: { path: sessionPath(target.path, i), name: transcript.header.name, messages: transcript.entries.length } };
    });
}

function targetFromEnv(): RecordingTarget | undefined {
  const path = process.env[RECORD_ENV];
  if (path === undefined || path === '') return undefined;
  const target: RecordingTarget = { path, options: {}, sessions: [], saved: false };
  active = target;
  // Commands end in many ways (Ctrl-C, errors, a finished stream): the exit hook catches them all.
  process.once('exit', () => {
    if (target.saved) return;
    target.saved = true;
    for (const { session, file } of filesOf(target)) {
      try {
        session.saveSync(file.path);
      } catch (error) {
        process.stderr.write(`Cannot write recording ${file.path}: ${(error as Error).message}\n`);
      }
    }
  });
  return target;
}
