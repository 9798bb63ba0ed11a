import { describe, expect, it } from 'vitest';
import { formatMac } from '../../src/bluetooth/address.js';
import type { SimulatedNode } from '../../src/fixture-server/fleet.js';
import { messageId } from '../../src/frame/message-types.js';
import { encodePlaintextFrame } from '../../src/frame/plaintext.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  DisconnectRequest,
  PingRequest,
} from '../../src/gen/api_pb.js';
import { RELAY_OUT_OF_SLOTS_ERROR, UPSTREAM_LOST_REASON } from '../../src/relay/relay-proxy.js';
import type { RelayServer } from '../../src/relay/relay-server.js';
import type { ApiSession } from '../../src/server/api-server.js';
import { useClosers } from '../helpers/closers.js';
import { profileWithDevices } from '../helpers/fleet.js';
import type { RawClient } from '../helpers/raw-client.js';
import {
  addressing,
  booked,
  CLONE,
  connectRequest,
  DEMO,
  deviceRequestFrame,
  HOME_ASSISTANT,
  OTHER_HOST,
  rawClient,
  recordUpstream,
  settle,
  startRelay,
  startUpstream,
  until,
} from '../helpers/relay.js';

const closers = useClosers();

const CONNECTION_ID = messageId(BluetoothDeviceConnectionResponse);
const SLOTS_ID = messageId(BluetoothConnectionsFreeResponse);
const PING_ID = messageId(PingRequest);
const DEVICE_REQUEST_ID = messageId(BluetoothDeviceRequest);
const isConnect = (r: { type: number; message: Record<string, unknown> | undefined }): boolean =>
  r.type === DEVICE_REQUEST_ID &&
  (r.message?.requestType === BluetoothDeviceRequestType.CONNECT_V3_WITH_CACHE ||
    r.message?.requestType === BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE);
const isDisconnect = (r: { type: number; message: Record<string, unknown> | undefined }): boolean =>
  r.type === DEVICE_REQUEST_ID && r.message?.requestType === BluetoothDeviceRequestType.DISCONNECT;

/** The relay's session of its one client (to see when it has read what the client sent). */
const relaySession = (relay: RelayServer): ApiSession => [...(relay.proxies[0]!.server?.sessions ?? [])][0]!;

/**
 * A client of the relay from another host that holds a link to CLONE: the proxy is never all free then, so a slot
 * report never tells by itself that the client's other address holds nothing (firmware before 2025 lists no addresses).
 */
async function clientHoldingClone(port: number): Promise<RawClient> {
  const client = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
  client.send(BluetoothDeviceRequest, connectRequest(CLONE));
  await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);
  return client;
}

/**
 * Firmware before 2025 behind the relay, a client holding CLONE, and a connect of it to DEMO that the proxy refuses.
 * The proxy answers the ping behind the refused connect, then reads nothing more of the relay (its settling DISCONNECT
 * included) until the test releases `held`: whatever the client sends meanwhile crosses the relay's settling.
 * Resolves once the relay has sent that DISCONNECT.
 */
async function refusedWhileSettling(): Promise<{
  node: SimulatedNode;
  relay: RelayServer;
  client: RawClient;
  upstream: ReturnType<typeof recordUpstream>;
  since: number;
  held: ApiSession;
}> {
  const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3, firmware: '2024.10' });
  let settling = false;
  const { relay, port } = await startRelay(closers, node, {
    tapFor: () => (direction, id, payload) => {
      const request = direction === 'c2d' && id === DEVICE_REQUEST_ID ? BluetoothDeviceRequest.fromBinary(payload) : undefined;
      if (request?.address === DEMO && request.requestType === BluetoothDeviceRequestType.DISCONNECT) settling = true;
    },
  });
  const client = await clientHoldingClone(port);
  const upstream = recordUpstream(node);
  let refused = false;
  let pingAfterRefusal = false;
  let held: ApiSession | undefined;
  node.server.plugins.unshift({
    intercept: (_session, type) => {
      if (type === DEVICE_REQUEST_ID) refused = true;
      else if (type === PING_ID && refused) pingAfterRefusal = true;
      return false;
    },
    holdInput: (session) => {
      if (!pingAfterRefusal || held !== undefined) return false;
      held = session;
      return true;
    },
  });
  refuseNextConnect(node, DEMO, () => false);
  const since = client.received.length;
  client.send(BluetoothDeviceRequest, connectRequest(DEMO));
  expect(await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO, since)).toMatchObject({ connected: false });
  await until(() => settling && held !== undefined, 'the relay to send its settling DISCONNECT');
  return { node, relay, client, upstream, since, held: held! };
}

/** The connection states the client heard for `address` from index `since` on. */
const statesOf = (client: RawClient, address: number, since: number): BluetoothDeviceConnectionResponse[] =>
  client.received
    .slice(since)
    .filter((m) => m.type === CONNECTION_ID)
    .map((m) => BluetoothDeviceConnectionResponse.fromBinary(m.payload))
    .filter((m) => m.address === address);

/**
 * Makes the simulated proxy refuse the next connect for `address` as a full proxy does (connected=false, error 0, no
 * slot report): every slot is taken by phantom links right before it reads the connect, and free again right after.
 * `holdAfter` then decides whether the proxy stops reading the relay after the connect (released by the caller).
 */
function refuseNextConnect(node: SimulatedNode, address: number, holdAfter: () => boolean): { held: () => ApiSession | undefined } {
  let refusing = false;
  let done = false;
  let held: ApiSession | undefined;
  node.server.plugins.unshift({
    intercept: (_session, type, payload) => {
      if (type !== DEVICE_REQUEST_ID || done) return false;
      const request = BluetoothDeviceRequest.fromBinary(payload);
      if (request.address === address && request.requestType === BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE) {
        refusing = true;
        node.bluetooth.setBusySlots(node.bluetooth.limit);
      }
      return false;
    },
    holdInput: (session) => {
      if (refusing) {
        refusing = false;
        done = true;
        node.bluetooth.setBusySlots(0);
      }
      if (held !== undefined || !holdAfter()) return false;
      held = session;
      return true;
    },
  });
  return { held: () => held };
}

describe('relay connect order: firmware before 2025 (slot reports without `allocated`)', () => {
  it('relay connect order - a client that retries at once after a refusal, before the proxy handled the refused connect: its retry is not killed', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3, firmware: '2024.10' });
    const { relay, port } = await startRelay(closers, node);
    const client = await clientHoldingClone(port);
    const upstream = recordUpstream(node);
    // The proxy reads nothing more of the relay after the refused connect (the ping behind it included) until the
    // relay has read the client's retry: the retry reaches the relay while the refused connect is in flight.
    let retried = false;
    const proxy = refuseNextConnect(node, DEMO, () => !retried);
    const since = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    const refusal = await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO, since);
    expect(refusal).toMatchObject({ connected: false, error: 0 });
    const read = relaySession(relay).messagesReceived;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await until(() => relaySession(relay).messagesReceived > read, 'the relay to read the retry');
    retried = true;
    await until(() => proxy.held() !== undefined, 'the proxy to hold the relay');
    proxy.held()!.releaseInput();

    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, since);
    await settle(300);
    // The refusal, then the retry's link: nothing ends it.
    expect(statesOf(client, DEMO, since).map((m) => m.connected)).toEqual([false, true]);
    expect(node.bluetooth.linkAddresses.sort()).toEqual([CLONE, DEMO].sort());
    expect(booked(relay).sort()).toEqual([formatMac(CLONE), formatMac(DEMO)].sort());
    // The retry went out once the refused connect was handled, and settled it: no DISCONNECT of the relay's own.
    expect(addressing(upstream, DEMO).map((r) => (isConnect(r) ? 'connect' : isDisconnect(r) ? 'disconnect' : r.type))).toEqual([
      'connect',
      'connect',
    ]);
  });

  it('relay connect order - a client that retries after the relay began settling a refused connect: the settling is not its news and does not end its retry', async () => {
    const { node, relay, client, upstream, since, held } = await refusedWhileSettling();
    // A client slower than the proxy: its retry leaves once the relay has sent its DISCONNECT.
    const read = relaySession(relay).messagesReceived;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await until(() => relaySession(relay).messagesReceived > read, 'the relay to read the retry');
    held.releaseInput();

    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, since);
    await settle(300);
    // The client hears the refusal and its retry's link, not the DISCONNECT's answer.
    expect(statesOf(client, DEMO, since).map((m) => m.connected)).toEqual([false, true]);
    expect(node.bluetooth.linkAddresses.sort()).toEqual([CLONE, DEMO].sort());
    expect(booked(relay).sort()).toEqual([formatMac(CLONE), formatMac(DEMO)].sort());
    expect(addressing(upstream, DEMO).map((r) => (isConnect(r) ? 'connect' : isDisconnect(r) ? 'disconnect' : r.type))).toEqual([
      'connect',
      'disconnect',
      'connect',
    ]);
  });
});

/** How the upstream proxy saw the requests for `address`: connect / disconnect / the message id. */
const steps = (received: ReturnType<typeof recordUpstream>, address: number): Array<string | number> =>
  addressing(received, address).map((r) => (isConnect(r) ? 'connect' : isDisconnect(r) ? 'disconnect' : r.type));

describe("relay connect order: a client's DISCONNECT", () => {
  for (const firmware of [undefined, '2024.10'] as const) {
    it(`relay connect order - connect, connect, DISCONNECT in one write (${firmware ?? 'current'} firmware): the waiting connect is dropped and the link stays closed, as on the proxy itself`, async () => {
      const options = {
        profile: await profileWithDevices(1, { connectDelayMs: 400 }),
        slots: 3,
        ...(firmware === undefined ? {} : { firmware }),
      };
      const frames = Buffer.concat([
        deviceRequestFrame(connectRequest(CLONE)),
        deviceRequestFrame(connectRequest(CLONE)),
        deviceRequestFrame({ address: CLONE, requestType: 1 }),
      ]);
      // The firmware reads them in order: it ignores the second connect (the address is connecting), the DISCONNECT
      // ends the attempt.
      const direct = await startUpstream(closers, options);
      const own = await rawClient(closers, direct.server.address.port);
      own.socket.write(frames);
      await settle(1000);
      const firmwareStates = statesOf(own, CLONE, 0).map((m) => `${m.connected}/${m.error}`);
      expect(firmwareStates.length).toBeGreaterThan(0);
      expect(direct.bluetooth.linkAddresses).toEqual([]);

      const node = await startUpstream(closers, options);
      const { relay, port } = await startRelay(closers, node);
      const client = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
      const upstream = recordUpstream(node);
      const since = client.received.length;
      client.socket.write(frames);
      // Long enough for a connect sent after the DISCONNECT to open its link (connectDelayMs).
      await settle(1000);
      expect(steps(upstream, CLONE)).toEqual(['connect', 'disconnect']);
      expect(node.bluetooth.linkAddresses).toEqual([]);
      expect(statesOf(client, CLONE, since).map((m) => `${m.connected}/${m.error}`)).toEqual(firmwareStates);
      expect(booked(relay)).toEqual([]);
    });
  }

  it('relay connect order - a DISCONNECT while the relay settles a refused connect and the retry waits (firmware before 2025): the retry is dropped, nothing reopens the link', async () => {
    const { node, relay, client, upstream, since, held } = await refusedWhileSettling();
    const read = relaySession(relay).messagesReceived;
    client.socket.write(Buffer.concat([deviceRequestFrame(connectRequest(DEMO)), deviceRequestFrame({ address: DEMO, requestType: 1 })]));
    await until(() => relaySession(relay).messagesReceived >= read + 2, 'the relay to read the retry and the DISCONNECT');
    held.releaseInput();

    await settle(500);
    expect(steps(upstream, DEMO)).toEqual(['connect', 'disconnect', 'disconnect']);
    expect(statesOf(client, DEMO, since).every((m) => !m.connected)).toBe(true);
    // The client hears its DISCONNECT answered (the firmware answers one for an address without a slot).
    expect(statesOf(client, DEMO, since).length).toBeGreaterThanOrEqual(2);
    expect(node.bluetooth.linkAddresses).toEqual([CLONE]);
    expect(booked(relay)).toEqual([formatMac(CLONE)]);
  });
});

/**
 * Firmware before 2025: the proxy refuses `client`'s connect to DEMO; it reads the relay's settling DISCONNECT only
 * once the client's retry waits behind it, and leaves the ping behind that DISCONNECT unread (`heldAgain`) until the
 * test releases it. Resolves once the DISCONNECT's answer (connected=false: no slot) has ended the client's entry, so
 * the retry still waits while the client no longer holds the address.
 */
async function retryWaitingBehindSettledRefusal(
  node: SimulatedNode,
  relay: RelayServer,
  client: RawClient,
): Promise<{ since: number; refusal: BluetoothDeviceConnectionResponse; afterRefusal: number; heldAgain: ApiSession }> {
  let pingAfterRefusal = false;
  let refused = false;
  let disconnectRead = false;
  let retried = false;
  let held: ApiSession | undefined;
  let heldAgain: ApiSession | undefined;
  node.server.plugins.unshift({
    intercept: (_session, type, payload) => {
      if (type === DEVICE_REQUEST_ID) {
        const request = BluetoothDeviceRequest.fromBinary(payload);
        if (request.address === DEMO && request.requestType === BluetoothDeviceRequestType.DISCONNECT) disconnectRead = true;
        else refused = true;
      } else if (type === PING_ID && refused) pingAfterRefusal = true;
      return false;
    },
    holdInput: (session) => {
      if (pingAfterRefusal && !retried && held === undefined) {
        held = session;
        return true;
      }
      if (disconnectRead && heldAgain === undefined) {
        heldAgain = session;
        return true;
      }
      return false;
    },
  });
  refuseNextConnect(node, DEMO, () => false);
  const since = client.received.length;
  client.send(BluetoothDeviceRequest, connectRequest(DEMO));
  const refusal = await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO, since);
  await until(() => held !== undefined, 'the proxy to answer the ping behind the refused connect');
  const afterRefusal = client.received.length;
  const read = relaySession(relay).messagesReceived;
  client.send(BluetoothDeviceRequest, connectRequest(DEMO));
  await until(() => relaySession(relay).messagesReceived > read, 'the relay to read the retry');
  retried = true;
  held!.releaseInput();
  await until(() => heldAgain !== undefined && !booked(relay).includes(formatMac(DEMO)), 'the settling DISCONNECT to be answered');
  return { since, refusal, afterRefusal, heldAgain: heldAgain! };
}

describe('relay connect order: a waiting connect belongs to the holder it waited under', () => {
  it("relay connect order - the address goes to another client while a connect of its old holder waits (firmware before 2025): that connect is refused at once, and the new holder's connects and states are its own", async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3, firmware: '2024.10' });
    const { relay, port } = await startRelay(closers, node);
    const first = await clientHoldingClone(port);
    const second = await rawClient(closers, port, { localAddress: OTHER_HOST });
    const { since, refusal, afterRefusal, heldAgain } = await retryWaitingBehindSettledRefusal(node, relay, first);
    expect(refusal).toMatchObject({ connected: false, error: 0 });

    // Another client takes the address, and asks again while its connect is in flight (that one waits in turn).
    const other = second.received.length;
    second.send(BluetoothDeviceRequest, connectRequest(DEMO));
    // The first client's retry is no longer behind a connect of its own: it is judged now, as the connect of a
    // client for an address another holds.
    const retryAnswer = await first.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO, afterRefusal);
    expect(statesOf(first, DEMO, since).map((m) => `${m.connected}/${m.error}`)).toEqual(['false/0', `false/${RELAY_OUT_OF_SLOTS_ERROR}`]);
    expect(retryAnswer.error).toBe(RELAY_OUT_OF_SLOTS_ERROR);
    second.send(BluetoothDeviceRequest, connectRequest(DEMO));
    heldAgain.releaseInput();

    await second.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, other);
    await settle(300);
    expect(statesOf(second, DEMO, other).map((m) => m.connected)).toEqual([true]);
    expect(statesOf(first, DEMO, since)).toHaveLength(2);
    expect(node.bluetooth.linkAddresses.sort()).toEqual([CLONE, DEMO].sort());
    const holders = relay.snapshot().proxies[0]!.clients.map((c) => c.slots);
    expect(holders).toContainEqual([formatMac(CLONE)]);
    expect(holders).toContainEqual([formatMac(DEMO)]);
  });

  it('relay connect order - a DISCONNECT after the settling answer ended its entry, its retry still waiting (firmware before 2025): the retry is dropped, no link reopens', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3, firmware: '2024.10' });
    const { relay, port } = await startRelay(closers, node);
    const client = await clientHoldingClone(port);
    const upstream = recordUpstream(node);
    // The client no longer holds the address once the settling answer ended its entry; its retry still waits.
    const { since, heldAgain } = await retryWaitingBehindSettledRefusal(node, relay, client);
    const readAgain = relaySession(relay).messagesReceived;
    client.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await until(() => relaySession(relay).messagesReceived > readAgain, "the relay to read the client's DISCONNECT");
    heldAgain.releaseInput();
    await settle(500);
    // As the proxy reading them in order: connect (refused), the relay's DISCONNECT; the retry never goes out.
    expect(steps(upstream, DEMO)).toEqual(['connect', 'disconnect']);
    expect(statesOf(client, DEMO, since).every((m) => !m.connected)).toBe(true);
    expect(node.bluetooth.linkAddresses).toEqual([CLONE]);
    expect(booked(relay)).toEqual([formatMac(CLONE)]);
  });
});

describe('relay connect order: every connect gets an answer', () => {
  it('relay connect order - a connect that cannot go upstream is refused as out of slots, between two slot reports, and nothing stays booked', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3 });
    // The upstream session refuses to write the next connect (its message tap throws, as a failing trace sink would;
    // in the field: the session closing under the request).
    let failNext = false;
    const { relay, port } = await startRelay(closers, node, {
      tapFor: () => (direction, id) => {
        if (failNext && direction === 'c2d' && id === DEVICE_REQUEST_ID) {
          failNext = false;
          throw new Error('trace sink failed');
        }
      },
    });
    // It holds a link already: the proxy has listed its slots, so refusals come between two reports.
    const client = await clientHoldingClone(port);
    const upstream = recordUpstream(node);
    failNext = true;
    const since = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    const answer = await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO, since);
    expect(answer).toMatchObject({ connected: false, error: RELAY_OUT_OF_SLOTS_ERROR });
    const around = client.received.slice(since).map((m) => m.type);
    expect(around.slice(around.indexOf(CONNECTION_ID) - 1, around.indexOf(CONNECTION_ID) + 2)).toEqual([SLOTS_ID, CONNECTION_ID, SLOTS_ID]);
    expect(booked(relay)).toEqual([formatMac(CLONE)]);
    expect(addressing(upstream, DEMO)).toEqual([]);
    // Nothing stayed booked: the client's next try takes the slot.
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, since);
    expect(booked(relay).sort()).toEqual([formatMac(CLONE), formatMac(DEMO)].sort());
  });

  it("relay connect order - a held-back connect whose turn comes as the proxy says goodbye (DisconnectRequest and the pong in one write): refused as out of slots, then the link's end", async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1, { connectDelayMs: 400 }), slots: 3 });
    const { relay, port } = await startRelay(closers, node);
    const client = await clientHoldingClone(port);
    // The proxy answers the ping behind the first connect for DEMO, but says DisconnectRequest first (a proxy shutting
    // down), in the same write: the relay's session ends on the first message, and the pong behind it still lets the
    // held-back connect go on, to a session that can no longer take it.
    let goodbye = false;
    let connectRead = false;
    node.server.plugins.unshift({
      intercept: (session, type, payload) => {
        if (type === DEVICE_REQUEST_ID && BluetoothDeviceRequest.fromBinary(payload).address === DEMO) connectRead = true;
        else if (type === PING_ID && connectRead && !goodbye) {
          goodbye = true;
          session.send(DisconnectRequest, {});
        }
        return false;
      },
    });
    const api = relay.proxies[0]!.bluetooth!.api;
    const since = client.received.length;
    client.socket.write(Buffer.concat([deviceRequestFrame(connectRequest(DEMO)), deviceRequestFrame(connectRequest(DEMO))]));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.error === UPSTREAM_LOST_REASON, since);
    expect(api.isClosed).toBe(true);
    const states = statesOf(client, DEMO, since);
    expect(states.map((m) => `${m.connected}/${m.error}`)).toEqual([`false/${RELAY_OUT_OF_SLOTS_ERROR}`, `false/${UPSTREAM_LOST_REASON}`]);
    // The refusal comes between a full view and the client's own, as every refusal of the relay's.
    const after = client.received.slice(since).map((m) => m.type);
    const refusal = after.indexOf(CONNECTION_ID);
    expect(after.slice(refusal - 1, refusal + 2)).toEqual([SLOTS_ID, CONNECTION_ID, SLOTS_ID]);
    expect(booked(relay)).toEqual([]);
    // Back with the upstream, the client connects as before.
    await until(() => relay.snapshot().proxies[0]!.upstream.state === 'connected', 'the upstream to come back');
    const again = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, again);
    expect(booked(relay)).toEqual([formatMac(DEMO)]);
  });

  it("relay connect order - the ping behind a connect cannot be written (the upstream tap throws): the reservation is given up, and the slot follows the proxy's reports", async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3 });
    let connectSent = false;
    let pingRefused = 0;
    const { relay, port } = await startRelay(closers, node, {
      tapFor: () => (direction, id, payload) => {
        if (direction !== 'c2d') return;
        if (id === DEVICE_REQUEST_ID && BluetoothDeviceRequest.fromBinary(payload).address === DEMO) connectSent = true;
        else if (id === PING_ID && connectSent && pingRefused === 0) {
          pingRefused++;
          throw new Error('trace sink failed');
        }
      },
    });
    const client = await clientHoldingClone(port);
    const since = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, since);
    expect(pingRefused).toBe(1);
    expect(relay.snapshot().proxies[0]!.upstream.state).toBe('connected');
    expect(booked(relay).sort()).toEqual([formatMac(CLONE), formatMac(DEMO)].sort());
    // No connect of the client's is in flight any more: its DISCONNECT ends the entry with the link.
    client.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && !m.connected, since);
    await until(() => !booked(relay).includes(formatMac(DEMO)), 'the slot to be given back');
    expect(node.bluetooth.linkAddresses).toEqual([CLONE]);
    // And the client takes it again.
    const again = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, again);
    expect(booked(relay).sort()).toEqual([formatMac(CLONE), formatMac(DEMO)].sort());
  });
});

describe('relay connect order: repeated connects for a held address', () => {
  /** The messages a client hears after one more connect for the link it holds, as [type, connected, mtu, error]. */
  async function answerToRepeat(client: RawClient): Promise<Array<[number, ...unknown[]]>> {
    const since = client.received.length;
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothConnectionsFreeResponse, () => true, since);
    await settle(100);
    return client.received.slice(since).map((m) => {
      if (m.type !== CONNECTION_ID) return [m.type];
      const { connected, mtu, error } = BluetoothDeviceConnectionResponse.fromBinary(m.payload);
      return [m.type, connected, mtu, error];
    });
  }

  it('relay connect order - a connect for a link that is up gets the firmware answer from the relay, and nothing goes upstream however often it comes', async () => {
    // The firmware's own answer, from a simulated proxy reached directly.
    const direct = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const own = await rawClient(closers, direct.server.address.port);
    own.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await own.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
    await settle(100);
    const firmware = await answerToRepeat(own);
    expect(firmware).toEqual([[CONNECTION_ID, true, 0, 0], [SLOTS_ID]]);

    const node = await startUpstream(closers, { profile: await profileWithDevices(1) });
    const { port } = await startRelay(closers, node);
    const client = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    client.send(BluetoothDeviceRequest, connectRequest(DEMO));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected);
    await settle(100);
    const upstream = recordUpstream(node);
    expect(await answerToRepeat(client)).toEqual(firmware);

    const since = client.received.length;
    const REPEATS = 200;
    const frame = encodePlaintextFrame(
      DEVICE_REQUEST_ID,
      BluetoothDeviceRequest.toBinary(BluetoothDeviceRequest.create(connectRequest(DEMO))),
    );
    client.socket.write(Buffer.concat(Array.from({ length: REPEATS }, () => frame)));
    await until(() => statesOf(client, DEMO, since).length === REPEATS, `${REPEATS} answers`);
    expect(statesOf(client, DEMO, since).every((m) => m.connected && m.mtu === 0)).toBe(true);
    await settle(100);
    expect(upstream.filter((r) => r.type === DEVICE_REQUEST_ID || r.type === PING_ID)).toEqual([]);
    expect(node.bluetooth.linkAddresses).toEqual([DEMO]);
  });

  it('relay connect order - connects for a link still connecting: one in flight at a time, and the client ends up connected', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1, { connectDelayMs: 400 }), slots: 3 });
    const { relay, port } = await startRelay(closers, node);
    const client = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
    const upstream = recordUpstream(node);
    const since = client.received.length;
    const REPEATS = 100;
    const frame = encodePlaintextFrame(
      DEVICE_REQUEST_ID,
      BluetoothDeviceRequest.toBinary(BluetoothDeviceRequest.create(connectRequest(CLONE))),
    );
    client.socket.write(Buffer.concat(Array.from({ length: REPEATS }, () => frame)));
    await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected, since, 3000);
    await settle(200);
    const connects = addressing(upstream, CLONE).filter(isConnect).length;
    const pings = upstream.filter((r) => r.type === PING_ID).length;
    // The first, and the one that waited for it (the proxy ignores it: it is connecting); a loaded machine may read
    // the client's frames in a few reads, each after the proxy answered the ping before.
    expect(connects).toBeGreaterThanOrEqual(1);
    expect(connects).toBeLessThanOrEqual(3);
    expect(pings).toBeLessThanOrEqual(connects + 1);
    expect(statesOf(client, CLONE, since).map((m) => m.connected)).toEqual([true]);
    expect(booked(relay)).toEqual([formatMac(CLONE)]);
  });
});
