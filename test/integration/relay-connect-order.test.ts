import { describe, expect, it } from 'vitest';
import { formatMac } from '../../src/bluetooth/address.js';
import { BluetoothDeviceConnectionResponse, BluetoothDeviceRequest } from '../../src/gen/api_pb.js';
import { RELAY_OUT_OF_SLOTS_ERROR } from '../../src/relay/relay-proxy.js';
import type { RelayServer } from '../../src/relay/relay-server.js';
import { useClosers } from '../helpers/closers.js';
import { profileWithDevices } from '../helpers/fleet.js';
import type { RawClient } from '../helpers/raw-client.js';
import {
  addressing,
  CLONE,
  connectRequest,
  DEMO,
  HOME_ASSISTANT,
  rawClient,
  recordUpstream,
  startRelay,
  startUpstream,
} from '../helpers/relay.js';

const closers = useClosers();

const CONNECTION_ID = 69;
const SLOTS_ID = 81;

/** Every address the relay books to one of its clients. */
const booked = (relay: RelayServer): string[] => relay.snapshot().proxies[0]!.clients.flatMap((client) => client.slots);

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

describe('relay connect order: every connect gets an answer', () => {
  it('relay connect order - a connect that cannot go upstream is refused as out of slots, between two slot reports, and nothing stays booked', async () => {
    const node = await startUpstream(closers, { profile: await profileWithDevices(1), slots: 3 });
    // The upstream session refuses to write the next connect (its message tap throws, as a failing trace sink would;
    // in the field: the session closing under the request).
    let failNext = false;
    const { relay, port } = await startRelay(closers, node, {
      tapFor: () => (direction, id) => {
        if (failNext && direction === 'c2d' && id === 68) {
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
});
