import { createHash } from 'node:crypto';
import type { PartialMessage } from '@protobuf-ts/runtime';
import type { DeviceCapabilitiesResponse, DeviceInfoResponse } from '../gen/api_pb.js';
import type { ApiSession } from './api-server.js';
import type { ApiServerEvent } from './server-events.js';
import type { BacklogLimits } from './session-backlog.js';

/** ESPHome version an API server reports unless told otherwise (the firmware generation it mimics). */
export const DEFAULT_ESPHOME_VERSION = '2026.8.0';

/**
 * The firmware drops a connection that is not authenticated (transport handshake done, HelloRequest processed,
 * and the password where one is set) 60 s after accept (spec §2; api_connection.cpp HANDSHAKE_TIMEOUT_MS); pings
 * do not extend it. Without it an idle socket stays forever.
 */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 60_000;

/**
 * How long a graceful close waits for clients to answer its DisconnectRequest. Clients answer at once from their
 * read loop (aioesphomeapi, ours); one silent for 2 s is gone or stuck, and a shutdown should not wait on it longer.
 */
export const DEFAULT_CLOSE_DISCONNECT_TIMEOUT_MS = 2_000;

/**
 * Sessions an API server accepts at once unless told otherwise: the firmware default of the platform it plays
 * (ESP32: 5, spec §2). The firmware accepts a connection beyond it and closes it at once; so does the server.
 */
export const DEFAULT_MAX_CONNECTIONS = 5;

/** A behaviour plugged into every session of an API server (the simulated Bluetooth proxy, a replayer, the relay). */
export interface SessionPlugin {
  /** Extra DeviceInfo fields (feature flags, Bluetooth MAC...). */
  deviceInfo?(): Partial<DeviceInfoResponse>;
  /** Capabilities for API >= 1.15 clients. */
  capabilities?(): PartialMessage<DeviceCapabilitiesResponse>;
  /**
   * Asked after each client frame the session handled: true holds the client's input (`session.holdInput()`) until
   * the plugin calls `session.releaseInput()` (the relay, while its upstream does not take what it forwards).
   */
  holdInput?(session: ApiSession): boolean;
  /** Sees every client message before the built-in handling (replay); return true when handled. */
  intercept?(session: ApiSession, type: number, payload: Uint8Array): boolean;
  /**
   * The session's first HelloRequest decoded and was answered: called once, synchronously, before anything else the
   * client sent in the same read is handled (a relay reports its client from here).
   */
  onHello?(session: ApiSession): void;
  /** A message that passed authentication; return true when handled. */
  onMessage?(session: ApiSession, type: number, payload: Uint8Array): boolean;
  /** The session closed. */
  onClose?(session: ApiSession): void;
  /** Called once when the server closes. */
  close?(): void | Promise<void>;
}

/** Options of an API server. */
export interface ApiServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Node name (HelloResponse / DeviceInfo / Noise server hello). */
  name?: string;
  friendlyName?: string;
  /** Network MAC `AA:BB:CC:DD:EE:FF`; derived from the name when omitted. */
  mac?: string;
  /** Base64 Noise key; absent = plaintext device. */
  psk?: string;
  /** Legacy password: emulates pre-2026.1 firmware that requires AuthenticationRequest. */
  password?: string;
  /** Firmware before 2025: only an AuthenticationRequest authenticates, even without a password (answered with AuthenticationResponse). */
  legacyLogin?: boolean;
  /** Ids this firmware has no handler for, before authentication: 2024 firmware skips them, 2025+ closes the session (default). */
  unknownBeforeAuth?: 'ignore' | 'close';
  apiVersion?: { major: number; minor: number };
  esphomeVersion?: string;
  model?: string;
  /** Which Noise server-hello generation to send (firmware history, spec §4.5). */
  serverHelloGeneration?: 'protocol-only' | 'name' | 'mac';
  /** Send a GetTimeRequest right after authentication, as devices with a homeassistant time source do. */
  requestTime?: boolean;
  /** Time from accept to authentication (transport handshake, HelloRequest, password) before the session is dropped (default 60 s, as the firmware). */
  handshakeTimeout?: number;
  /** Plugged behaviours (the simulated proxy, a replayer...). */
  plugins?: SessionPlugin[];
  /** Keep every received message id in `session.received` (default true, for tests: it grows with every message, so `serve` and the relay turn it off). */
  recordReceived?: boolean;
  /** Sees each error that made a session drop its client (logging, fuzzing); the session closes either way. */
  onSessionError?: (session: ApiSession, error: unknown) => void;
  /** Misbehaviour on purpose (fault tests, the soak run); `server.faults` can be changed while it runs. */
  faults?: SessionFaults;
  /** Sessions at once (default 5, the ESP32 firmware's `max_connections`); a connection beyond it is closed at once. */
  maxConnections?: number;
  /**
   * When the listener is full, a newcomer takes the place of the oldest session not authenticated yet (reported as
   * `sessionDropped`, reason 'evicted') instead of being refused; refused still when every place is authenticated.
   * Off by default: the firmware refuses the newcomer. Idle or stalled sockets then cannot keep a keyed client out.
   */
  evictUnauthenticated?: boolean;
  /** Silence of an authenticated session before it is pinged; it is dropped after 2.5 times this (default 60 s, as the firmware; 0: never). */
  keepaliveInterval?: number;
  /** What may wait to be written to one client before advertisements are dropped, reading stops, the session closes (bytes). */
  backlog?: Partial<BacklogLimits>;
  /** Listen beyond loopback without a key (`psk`): refused unless asked for explicitly, since anyone who reaches it may use it. */
  allowPlaintext?: boolean;
  /** What this listener is, in messages (default 'API server'). */
  label?: string;
  /** Sees each connection refused at the limit and each session the server closed on its own, with the reason. */
  onEvent?: (event: ApiServerEvent, session: ApiSession | undefined) => void;
}

/** Faults an API server injects into each session; counts are 1-based and per session. */
export interface SessionFaults {
  /** Hold every write to the client this long (a slow or overloaded proxy). */
  replyDelayMs?: number;
  /** Drop the TCP connection instead of handling the `count`-th client message of `type` (e.g. a GATT read: mid-GATT). */
  dropOnReceive?: { type: number; count?: number };
  /** Drop the TCP connection right after sending the `count`-th message of `type` (e.g. notifications: mid-notify). */
  dropOnSend?: { type: number; count?: number };
  /** Drop the TCP connection once this many bytes were written (e.g. right after the Noise server hello: mid-handshake). */
  dropAfterBytes?: number;
}

/** What a firmware generation changes on the wire: the versions in HelloResponse and DeviceInfo and how a session logs in. */
export type FirmwareIdentity = Pick<ApiServerOptions, 'apiVersion' | 'esphomeVersion' | 'legacyLogin' | 'unknownBeforeAuth'>;

/** What `esphome-ble serve` prints when it is ready. */
export interface ListeningInfo {
  event: 'listening';
  host: string;
  port: number;
  name: string;
  mac: string;
  encryption: 'noise' | 'plaintext';
}

/** Derives a stable locally-administered MAC from a name. */
export function macFromName(name: string): string {
  const digest = createHash('sha256').update(name).digest();
  const bytes = [...digest.subarray(0, 6)];
  bytes[0] = ((bytes[0] ?? 0) & 0xfc) | 0x02;
  return bytes.map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
}
