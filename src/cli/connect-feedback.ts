import {
  ApiConnection,
  type ConnectOptions,
  type ConnectPhase,
  DEFAULT_API_PORT,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type MessageTap,
} from '../connection/connection.js';
import { recordingTapFromEnv } from '../fixture-server/recorder.js';
import { messageId } from '../frame/message-types.js';
import { DeviceInfoResponse, HelloResponse } from '../gen/api_pb.js';
import { formatDuration } from '../util/duration.js';
import type { CommandContext } from './command.js';
import { paint } from './output.js';
import { tracePhase, traceTapFor } from './trace.js';

/**
 * How long a connect may stay silent before the CLI says what it waits for. A node on the LAN answers Hello in tens of
 * milliseconds and an ESP32 finishes a Noise handshake in a few hundred; two seconds is ten times that, and short
 * enough that nobody wonders whether the command hangs.
 */
export const SILENCE_NOTE_MS = 2_000;

/**
 * The message tap of one new API session of the CLI: the recording (`record`, $ESPHOME_BLE_RECORD) and the
 * --verbose trace, each when on. Pass as `tapFor` to pools, inspectors and relays.
 */
export function cliTapFor(target: { host: string; port?: number | undefined; psk?: string | undefined }): MessageTap | undefined {
  const taps = [recordingTapFromEnv(target), traceTapFor(target)].filter((t): t is MessageTap => t !== undefined);
  if (taps.length <= 1) return taps[0];
  return (direction, id, payload) => {
    for (const tap of taps) tap(direction, id, payload);
  };
}

/** What a silent connect is waiting for, in words. */
const WAITING_FOR: Readonly<Record<Exclude<ConnectPhase, 'ready'>, string>> = {
  tcp: 'the TCP connection: nothing answers yet (a host that is off or a firewall that drops packets looks like this)',
  handshake: 'its reply to the Noise handshake: the port accepted the connection but says nothing',
  hello: 'its HelloResponse: the port accepted the connection but says nothing (an ESPHome node answers at once)',
  deviceInfo: 'its device info after Hello',
};

/** Wire ids the phases are read from. */
const HELLO_RESPONSE_ID = messageId(HelloResponse);
const DEVICE_INFO_RESPONSE_ID = messageId(DeviceInfoResponse);

/**
 * What the sessions of a pool wait for, read from their message taps: the pool does not pass its connect phases on,
 * but each attempt takes a fresh tap, Hello goes out once TCP (and the Noise handshake) are through, and the replies
 * come back through the same tap. Keyed by `host:port`.
 */
export class SessionPhases {
  readonly #phases = new Map<string, { phase: ConnectPhase; keyed: boolean }>();

  /** A tap for a new connect attempt to `target` (pass with `cliTapFor`'s through the pool's `tapFor`). */
  tapFor(target: { host: string; port?: number | undefined; psk?: string | undefined }): MessageTap {
    const key = `${target.host}:${target.port ?? DEFAULT_API_PORT}`;
    const state = { phase: 'tcp' as ConnectPhase, keyed: target.psk !== undefined };
    this.#phases.set(key, state);
    return (direction, id) => {
      if (direction === 'c2d') {
        if (state.phase === 'tcp') state.phase = 'hello';
      } else if (id === HELLO_RESPONSE_ID) state.phase = 'deviceInfo';
      else if (id === DEVICE_INFO_RESPONSE_ID) state.phase = 'ready';
    };
  }

  /** What the latest attempt to `host:port` waits for, in words (undefined before the first attempt or once ready). */
  waitingFor(host: string, port: number): string | undefined {
    const state = this.#phases.get(`${host}:${port}`);
    if (state === undefined || state.phase === 'ready') return undefined;
    // With a key, Hello waits for the handshake: no message out yet means either step.
    if (state.phase === 'tcp' && state.keyed) return `the TCP connection or ${WAITING_FOR.handshake}`;
    return WAITING_FOR[state.phase];
  }
}

/**
 * ApiConnection.connect for a command: with the recording and trace taps, and a stderr note when the node stays
 * silent past SILENCE_NOTE_MS, naming what the connect waits for, until when, and the flag that sets that deadline
 * (`deadlineFlag`, default `--timeout`).
 */
export async function connectNode(ctx: CommandContext, options: ConnectOptions, deadlineFlag = '--timeout'): Promise<ApiConnection> {
  const where = `${options.host}:${options.port ?? DEFAULT_API_PORT}`;
  let phase: ConnectPhase = 'tcp';
  const deadline = options.timeout ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const started = Date.now();
  const timer = setTimeout(() => {
    if (phase === 'ready') return;
    const left = formatDuration(Math.max(0, deadline - (Date.now() - started)));
    ctx.out.error(
      `${paint(ctx.out, 'yellow', 'note')} ${where}: no answer for ${formatDuration(SILENCE_NOTE_MS)}; waiting for ${WAITING_FOR[phase]}; giving up in ${left} (${deadlineFlag})`,
    );
  }, SILENCE_NOTE_MS);
  try {
    return await ApiConnection.connect({
      ...options,
      tap: cliTapFor(options),
      onPhase: (next) => {
        phase = next;
        tracePhase(options, next);
        options.onPhase?.(next);
      },
    });
  } finally {
    clearTimeout(timer);
  }
}
