import { readFile } from 'node:fs/promises';
import type { JsonValue } from '@protobuf-ts/runtime';
import { InvalidArgumentError } from '../errors.js';
import { messageInfoById, messageInfoByName } from '../frame/message-types.js';

/** Direction of a recorded message: client → device or device → client. */
export type TranscriptDirection = 'c2d' | 'd2c';

/** One recorded message: direction, ms since the session started, schema name and protobuf JSON. */
export interface TranscriptEntry {
  readonly dir: TranscriptDirection;
  readonly t: number;
  readonly type: string;
  readonly msg: JsonValue;
}

/** First line of a transcript: who was recorded. */
export interface TranscriptHeader {
  readonly format: 'esphome-ble-transcript';
  readonly version: 1;
  readonly name: string;
  readonly mac?: string;
  readonly encryption: 'noise' | 'plaintext';
  readonly recordedAt?: string;
  readonly description?: string;
}

/** A whole recorded session. */
export interface Transcript {
  readonly header: TranscriptHeader;
  readonly entries: readonly TranscriptEntry[];
}

/** Builds an entry from a wire message (id + payload). */
export function entryFromWire(dir: TranscriptDirection, t: number, id: number, payload: Uint8Array): TranscriptEntry | undefined {
  const info = messageInfoById(id);
  if (info === undefined) return undefined;
  return { dir, t: Math.round(t), type: info.name, msg: info.type.toJson(info.type.fromBinary(payload), { emitDefaultValues: false }) };
}

/** Encodes an entry back to its wire id and payload. */
export function entryToWire(entry: TranscriptEntry): { id: number; payload: Uint8Array } {
  const info = messageInfoByName(entry.type);
  if (info === undefined) throw new InvalidArgumentError(`Transcript names unknown message type ${entry.type}`);
  return { id: info.id, payload: info.type.toBinary(info.type.fromJson(entry.msg)) };
}

/** Serialises a transcript as JSON lines (header first). */
export function formatTranscript(transcript: Transcript): string {
  return [JSON.stringify(transcript.header), ...transcript.entries.map((e) => JSON.stringify(e))].join('\n') + '\n';
}

/** Parses JSON-lines text into a transcript, validating every line. */
export function parseTranscript(text: string, source = 'transcript'): Transcript {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  if (lines.length === 0) throw new InvalidArgumentError(`${source} is empty`);
  const header = parseLine(lines[0]!, source, 1) as TranscriptHeader;
  if (header.format !== 'esphome-ble-transcript') throw new InvalidArgumentError(`${source}:1 is not an esphome-ble transcript header`);
  const entries = lines.slice(1).map((line, i) => {
    const entry = parseLine(line, source, i + 2) as TranscriptEntry;
    if ((entry.dir !== 'c2d' && entry.dir !== 'd2c') || typeof entry.t !== 'number' || typeof entry.type !== 'string') {
      throw new InvalidArgumentError(`${source}:${i + 2} needs "dir" (c2d|d2c), "t" (ms) and "type"`);
    }
    if (messageInfoByName(entry.type) === undefined)
      throw new InvalidArgumentError(`${source}:${i + 2} names unknown message type ${entry.type}`);
    return entry;
  });
  return { header, entries };
}

/** Reads a transcript file. */
export async function loadTranscript(path: string): Promise<Transcript> {
  return parseTranscript(await readFile(path, 'utf8'), path);
}

function parseLine(line: string, source: string, lineNo: number): unknown {
  try {
    return JSON.parse(line);
  } catch (error) {
    throw new InvalidArgumentError(`${source}:${lineNo} is not valid JSON: ${(error as Error).message}`);
  }
}
