import { afterEach, describe, expect, it } from 'vitest';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { BluetoothGATTWriteRequest, DeviceInfoRequest, DeviceInfoResponse } from '../../src/gen/api_pb.js';
import { UPSTREAM_HOLD_BYTES } from '../../src/relay/relay-proxy.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

const DEMO = 0xc0ffee000001;
const STEP_MS = 3000;
/** Time for 16 MiB to cross loopback into the kernel buffers under a loaded suite (a deadline, not a measurement). */
const FLOOD_WAIT_MS = 25_000;

const closers: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe('relay/upstream-hold', () => {
  it('relay - GATT writes without response to a stalled upstream hold the writing client: the upstream queue stays bounded, nothing is lost', async () => {
    const upstream = await startSimulatedProxy({ name: 'slow-esp32', advertise: false });
    closers.push(() => upstream.server.close());
    const relay = new RelayServer({ proxies: [{ host: '127.0.0.1', port: upstream.server.address.port }] });
    closers.push(() => relay.close());
    const [listening] = await relay.start({ timeout: STEP_MS });
    const api = await ApiConnection.connect({ host: '127.0.0.1', port: listening!.port, timeout: STEP_MS });
    closers.push(() => api.destroy());
    const proxy = await BluetoothProxy.attach(api, { timeout: STEP_MS });
    await proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
    // The proxy stops reading the relay, as an ESP32 that takes writes slower than the LAN delivers them.
    const relayAtUpstream = [...upstream.server.sessions][0]!;
    relayAtUpstream.holdInput();
    const before = relayAtUpstream.messagesReceived;
    const write = BluetoothGATTWriteRequest.toBinary(
      BluetoothGATTWriteRequest.create({ address: DEMO, handle: 12, response: false, data: new Uint8Array(500) }),
    );
    // 16 MiB of writes: more than the loopback buffers between client, relay and proxy take.
    const count = Math.ceil((16 * 1024 * 1024) / write.length);
    for (let i = 0; i < count; i++) api.sendRaw(75, write);
    const upstreamApi = relay.proxies[0]!.bluetooth!.api;
    const downstream = [...relay.proxies[0]!.server!.sessions][0]!;
    let peak = 0;
    const sample = setInterval(() => (peak = Math.max(peak, upstreamApi.sendBacklog)), 2);
    closers.push(() => clearInterval(sample));
    await until(() => downstream.inputHeld, 'the writing client to be held', FLOOD_WAIT_MS);
    // Held for good while the proxy reads nothing: the queue does not grow past the level.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(downstream.inputHeld).toBe(true);
    // ApiSession.holdInput() stalled the proxy's side: it handled nothing since.
    expect(relayAtUpstream.messagesReceived).toBe(before);
    expect(peak).toBeGreaterThan(UPSTREAM_HOLD_BYTES);
    // One frame past the level at most (the check runs after each frame the client sent).
    expect(peak).toBeLessThanOrEqual(UPSTREAM_HOLD_BYTES + write.length + 16);
    // The proxy reads again: the client is read again and every write arrives.
    relayAtUpstream.releaseInput();
    await until(() => relayAtUpstream.messagesReceived - before === count, 'every write at the proxy', FLOOD_WAIT_MS);
    clearInterval(sample);
    expect(downstream.inputHeld).toBe(false);
    expect(peak).toBeLessThanOrEqual(UPSTREAM_HOLD_BYTES + write.length + 16);
  }, 40_000);
  it('relay - only the client whose frames go upstream is held; another is answered meanwhile, and a held client outlives the keep-alive', async () => {
    const upstream = await startSimulatedProxy({ name: 'slow-esp32', advertise: false });
    closers.push(() => upstream.server.close());
    // Pinged after 300 ms of silence, dropped after 750 ms: far shorter than the hold below.
    const relay = new RelayServer({ proxies: [{ host: '127.0.0.1', port: upstream.server.address.port }], clientKeepaliveInterval: 300 });
    closers.push(() => relay.close());
    const [listening] = await relay.start({ timeout: STEP_MS });
    const port = listening!.port;
    const api = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: STEP_MS });
    closers.push(() => api.destroy());
    const proxy = await BluetoothProxy.attach(api, { timeout: STEP_MS });
    await proxy.connect(DEMO, { addressType: 1, timeout: STEP_MS });
    const other = await RawClient.connect(port, { localAddress: '127.0.0.2', track: (c) => closers.push(() => c.close()) });
    const relayAtUpstream = [...upstream.server.sessions][0]!;
    relayAtUpstream.holdInput();
    const write = BluetoothGATTWriteRequest.toBinary(
      BluetoothGATTWriteRequest.create({ address: DEMO, handle: 12, response: false, data: new Uint8Array(500) }),
    );
    const count = Math.ceil((16 * 1024 * 1024) / write.length);
    for (let i = 0; i < count; i++) api.sendRaw(75, write);
    const sessions = [...relay.proxies[0]!.server!.sessions];
    const writer = sessions.find((s) => s.clientInfo !== 'raw-test-client')!;
    const reader = sessions.find((s) => s.clientInfo === 'raw-test-client')!;
    await until(() => writer.inputHeld, 'the writing client to be held', FLOOD_WAIT_MS);
    // The other client's requests are the relay's to answer: each one is, and it is never held.
    for (let i = 0; i < 3; i++) {
      const mark = other.received.length;
      other.send(DeviceInfoRequest, {});
      await other.next(DeviceInfoResponse, () => true, mark);
      expect(reader.inputHeld).toBe(false);
    }
    // Held three times the keep-alive's drop delay: the writer is still there, and so is the other client.
    await new Promise((resolve) => setTimeout(resolve, 2_300));
    expect(writer.inputHeld).toBe(true);
    expect(writer.isClosed).toBe(false);
    expect(reader.isClosed).toBe(false);
    relayAtUpstream.releaseInput();
    await until(() => !writer.inputHeld, 'the writer read again', FLOOD_WAIT_MS);
    expect(writer.isClosed).toBe(false);
  }, 40_000);
});
