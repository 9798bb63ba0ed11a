import { RAW_ADVERTISEMENTS_MESSAGE_ID } from '../bluetooth/raw-advertisements.js';
import { type ConnectPhase, DEFAULT_API_PORT, type MessageTap } from '../connection/connection.js';
import { messageId, messageInfoById } from '../frame/message-types.js';
import { AuthenticationRequest, NoiseEncryptionSetKeyRequest } from '../gen/api_pb.js';
import type { Output } from './output.js';

/** Longest field text of one trace line: a GATT table or an advertisement batch stays one readable line. */
const MAX_FIELDS_CHARS = 240;
/** Advertisements named per batch line (the rest are counted). */
const ADVERTISEMENTS_NAMED = 3;
/** Fields that hold secrets (AuthenticationRequest.password, NoiseEncryptionSetKeyRequest.key): never printed. */
const SECRET_FIELDS = new Set(['password', 'key', 'psk']);
/** AuthenticationRequest and NoiseEncryptionSetKeyRequest: their size would tell a password's (or key's) length. */
const SECRET_MESSAGE_IDS = new Set([messageId(AuthenticationRequest), messageId(NoiseEncryptionSetKeyRequest)]);

let sink: Output | undefined;
let started = 0;

/**
 * Turns the --verbose trace on for this process: every API session the CLI opens from now on writes one stderr line
 * per message (direction, peer, name, wire id, size, decoded fields) and per connect phase.
 */
export function enableTrace(out: Output): void {
  sink = out;
  started = performance.now();
}

/** Whether --verbose is on. */
export function traceEnabled(): boolean {
  return sink !== undefined;
}

/** A tap writing the trace of one session to `host:port`, or undefined when --verbose is off. */
export function traceTapFor(target: { host: string; port?: number | undefined }): MessageTap | undefined {
  const out = sink;
  if (out === undefined) return undefined;
  const peer = `${target.host}:${target.port ?? DEFAULT_API_PORT}`;
  return (direction, id, payload) => out.error(traceLine(peer, direction, id, payload));
}

/** Writes one connect phase of `host:port` to the trace (nothing when --verbose is off). */
export function tracePhase(target: { host: string; port?: number | undefined }, phase: ConnectPhase): void {
  sink?.error(`${stamp()} ${target.host}:${target.port ?? DEFAULT_API_PORT} .. ${PHASE_TEXT[phase]}`);
}

const PHASE_TEXT: Readonly<Record<ConnectPhase, string>> = {
  tcp: 'opening the TCP connection',
  handshake: 'TCP connected; Noise handshake sent, waiting for the reply',
  hello: 'HelloRequest sent, waiting for HelloResponse',
  deviceInfo: 'Hello answered, waiting for the device info',
  ready: 'session ready',
};

/** One trace line: `+1.234s 127.0.0.1:6053 -> HelloRequest (1) 27 B {"clientInfo":"esphome-ble",…}`. */
export function traceLine(peer: string, direction: 'c2d' | 'd2c', id: number, payload: Uint8Array): string {
  const info = messageInfoById(id);
  const arrow = direction === 'c2d' ? '->' : '<-';
  const name = info?.name ?? 'unknown message';
  const size = SECRET_MESSAGE_IDS.has(id) ? 'size hidden' : `${payload.length} B`;
  return `${stamp()} ${peer} ${arrow} ${name} (${id}) ${size}${fieldsText(id, payload)}`;
}

function fieldsText(id: number, payload: Uint8Array): string {
  const info = messageInfoById(id);
  if (info === undefined || payload.length === 0) return '';
  let json: unknown;
  try {
    json = info.type.toJson(info.type.fromBinary(payload), { emitDefaultValues: false });
  } catch {
    return ' (does not decode)';
  }
  if (id === RAW_ADVERTISEMENTS_MESSAGE_ID) return advertisementSummary(json);
  const text = JSON.stringify(redact(json));
  return ` ${text.length > MAX_FIELDS_CHARS ? `${text.slice(0, MAX_FIELDS_CHARS)}…` : text}`;
}

function advertisementSummary(json: unknown): string {
  const ads = ((json as { advertisements?: Array<{ address?: string; rssi?: number }> }).advertisements ?? []).map(
    (ad) => `${macOf(ad.address)} ${ad.rssi ?? 0}`,
  );
  const more = ads.length > ADVERTISEMENTS_NAMED ? `, +${ads.length - ADVERTISEMENTS_NAMED} more` : '';
  return ` ${ads.length} advertisement${ads.length === 1 ? '' : 's'}: ${ads.slice(0, ADVERTISEMENTS_NAMED).join(', ')}${more}`;
}

function macOf(address: string | undefined): string {
  const hex = BigInt(address ?? '0')
    .toString(16)
    .padStart(12, '0');
  return hex.match(/../g)!.join(':').toUpperCase();
}

function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_FIELDS.has(k) ? '***' : redact(v)]));
}

function stamp(): string {
  return `+${((performance.now() - started) / 1000).toFixed(3)}s`;
}
