import type { MessageType } from '@protobuf-ts/runtime';
import { type AttachOptions, BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import type { ApiConnection, MessageTap } from '../../src/connection/connection.js';
import type { SimulatedNode, SimulatedNodeOptions } from '../../src/fixture-server/fleet.js';
import { messageId, messageInfoById } from '../../src/frame/message-types.js';
import { encodePlaintextFrame } from '../../src/frame/plaintext.js';
import { readVarint } from '../../src/frame/varint.js';
import { BluetoothDeviceRequest } from '../../src/gen/api_pb.js';
import { RelayServer, type RelayServerOptions } from '../../src/relay/relay-server.js';
import type { RelayStatus } from '../../src/relay/relay-status.js';
import type { Closers } from './closers.js';
import { openApi, startProxy } from './fleet.js';
import { varint } from './protobuf-wire.js';
import { sleep, until as waitUntil } from './wait.js';

export type { Closers } from './closers.js';
/** The default profile's connectable demo peripheral (fixtures/profiles/README.md) and a connect request for it. */
export { connectRequest, DEMO } from './fleet.js';
/** The clones of profileWithDevices() (fixtures/profiles/README.md). */
export const CLONE = 0xc0ffee000100;
export const CLONE2 = 0xc0ffee000101;
/** Reads 'ready' until a write to WRITE_HANDLE is echoed into it. */
export const STATUS_HANDLE = 12;
export const WRITE_HANDLE = 14;
/** The counter characteristic (read, notify) and its CCCD. */
export const COUNTER_HANDLE = 18;
export const COUNTER_CCCD_HANDLE = 19;
/** Fast upstream reconnects so restart tests take milliseconds. */
export const FAST_BACKOFF = { initialDelay: 20, maxDelay: 100, jitter: 0, expectedDisconnectDelay: 20 } as const;
export const STEP_MS = 3000;

/** A simulated proxy (2 slots unless told otherwise), closed after the test. */
export function startUpstream(closers: Closers, options: SimulatedNodeOptions = {}): Promise<SimulatedNode> {
  return startProxy(closers, { name: 'relay-upstream', slots: 2, ...options });
}

/**
 * A started relay in front of `node` (reached with `upstreamPsk` if given), closed after the test; `port` is its
 * listener, `events` every status event it has sent so far.
 */
export async function startRelay(
  closers: Closers,
  node: SimulatedNode,
  options: Partial<RelayServerOptions> = {},
  upstreamPsk?: string,
): Promise<{ relay: RelayServer; port: number; events: RelayStatus[] }> {
  const relay = new RelayServer({
    proxies: [{ host: '127.0.0.1', port: node.server.address.port, ...(upstreamPsk === undefined ? {} : { psk: upstreamPsk }) }],
    backoff: FAST_BACKOFF,
    statsInterval: 100,
    ...options,
  });
  const events: RelayStatus[] = [];
  const watching = (async () => {
    for await (const event of relay.status()) events.push(event);
  })();
  closers.push(async () => {
    await relay.close();
    await watching;
  });
  const [listening] = await relay.start({ timeout: STEP_MS });
  return { relay, port: listening!.port, events };
}

/** A raw-frame client, closed after the test (`localAddress: HOME_ASSISTANT` makes it another host than ours). */
export { rawClient } from './raw-client.js';

/** Loopback addresses that the relay sees as other hosts than 127.0.0.1 (Linux routes all of 127/8 to lo). */
export const HOME_ASSISTANT = '127.0.0.2';
export const OTHER_HOST = '127.0.0.3';

/** Our own client (with the listener's key if given), attached as a Bluetooth subscriber, destroyed after the test. */
export async function ourClient(
  closers: Closers,
  port: number,
  psk?: string,
  options: { attach?: AttachOptions; tap?: MessageTap } = {},
): Promise<{ api: ApiConnection; proxy: BluetoothProxy }> {
  const api = await openApi(closers, port, { psk, timeout: STEP_MS, ...(options.tap === undefined ? {} : { tap: options.tap }) });
  const proxy = await BluetoothProxy.attach(api, { timeout: STEP_MS, ...options.attach });
  return { api, proxy };
}

/** One request as the upstream proxy received it: wire id, the bytes, and their decode. */
export interface ReceivedRequest {
  readonly type: number;
  readonly payload: Uint8Array;
  readonly message: Record<string, unknown> | undefined;
}

/** Records every message the upstream proxy receives from here on (the relay's requests), decoded. */
export function recordUpstream(node: SimulatedNode): ReceivedRequest[] {
  const received: ReceivedRequest[] = [];
  node.server.plugins.unshift({
    intercept: (_session, type, payload) => {
      const info = messageInfoById(type);
      const copy = new Uint8Array(payload);
      received.push({ type, payload: copy, message: info?.type.fromBinary(copy) as Record<string, unknown> | undefined });
      return false;
    },
  });
  return received;
}

/** Upstream requests that name `address` (any Bluetooth request with an address field). */
export function addressing(received: readonly ReceivedRequest[], address: number): ReceivedRequest[] {
  return received.filter((r) => r.message?.address === address);
}

/**
 * `message` encoded with its address field repeated: first `first`, then the message's own fields, then
 * `last` — the shape of the attack: a reader of the first occurrence sees `first`, every protobuf decoder `last`.
 */
export function repeatedAddress<T extends { address: number }>(type: MessageType<T>, message: T, first: number, last: number): Uint8Array {
  const body = type.toBinary({ ...message, address: 0 });
  return Uint8Array.from([0x08, ...varint(first), ...body, 0x08, ...varint(last)]);
}

/** How often a payload carries field 1 (the relay must never send it upstream more than once). */
export function addressFieldCount(payload: Uint8Array): number {
  let count = 0;
  let at = 0;
  const read = (): number => {
    const { value, length } = readVarint(payload, at, 10);
    if (length < 0) throw new Error('truncated varint');
    at += length;
    return value;
  };
  while (at < payload.length) {
    const tag = read();
    const wireType = tag % 8;
    if (Math.floor(tag / 8) === 1) count++;
    if (wireType === 0) read();
    else if (wireType === 2) {
      const length = read(); // read() moves `at`: `at += read()` would add to the old cursor
      at += length;
    } else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
  }
  return count;
}

/** Polls `check` every 5 ms until it holds, or fails naming `what` after `ms` (one relay step by default). */
export const until = (check: () => boolean, what: string, ms = STEP_MS): Promise<void> => waitUntil(check, what, ms);

/** Waits `ms` (for "nothing more arrives" checks). */
export const settle = (ms = 100): Promise<void> => sleep(ms);

/** Every address the relay's first proxy books to one of its clients. */
export const booked = (relay: RelayServer): string[] => relay.snapshot().proxies[0]!.clients.flatMap((client) => client.slots);

/** One plaintext frame of a BluetoothDeviceRequest (several can go out in one write). */
export const deviceRequestFrame = (request: Parameters<typeof BluetoothDeviceRequest.create>[0]): Uint8Array =>
  encodePlaintextFrame(messageId(BluetoothDeviceRequest), BluetoothDeviceRequest.toBinary(BluetoothDeviceRequest.create(request)));
