import { afterEach, describe, expect, it } from 'vitest';
import { formatMac } from '../../src/bluetooth/address.js';
import type { FirmwareGeneration } from '../../src/fixture-server/firmware.js';
import { BluetoothDeviceConnectionResponse, BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../../src/gen/api_pb.js';
import type { ApiSession } from '../../src/server/api-server.js';
import { profileWithDevices } from '../helpers/fleet.js';
import {
  booked,
  CLONE,
  CLONE2,
  type Closers,
  connectRequest,
  deviceRequestFrame,
  HOME_ASSISTANT,
  rawClient,
  startRelay,
  startUpstream,
  until,
} from '../helpers/relay.js';

const closers: Closers = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe('relay quota: a connect crossing the end of its own link', () => {
  it.each<[string, FirmwareGeneration]>([
    ['current firmware (allocated lists, close event)', '2026.7'],
    ['firmware before 2025 (counts only)', '2024.10'],
  ])(
    'relay quota - %s: a client that disconnects and connects again at once never holds a slot the quota does not count',
    async (_name, firmware) => {
      const node = await startUpstream(closers, { profile: await profileWithDevices(2), slots: 3, firmware });
      const { relay, port } = await startRelay(closers, node, { slotsPerClient: 1 });
      const client = await rawClient(closers, port, { localAddress: HOME_ASSISTANT });
      client.send(BluetoothDeviceRequest, connectRequest(CLONE));
      await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected);

      // Latency between the relay and the proxy, made exact: the proxy reads nothing more of the relay after its
      // DISCONNECT until the link is gone and the relay has read the report that frees it. The connect the relay sent
      // right behind the DISCONNECT then reaches the proxy after the link's end, and takes the slot again.
      let disconnectSeen = false;
      let held: ApiSession | undefined;
      node.server.plugins.unshift({
        intercept: (_session, type, payload) => {
          if (type !== 68) return false;
          const request = BluetoothDeviceRequest.fromBinary(payload);
          if (request.address === CLONE && request.requestType === BluetoothDeviceRequestType.DISCONNECT) disconnectSeen = true;
          return false;
        },
        holdInput: (session) => {
          if (!disconnectSeen || held !== undefined) return false;
          held = session;
          return true;
        },
      });
      const since = client.received.length;
      client.socket.write(
        Buffer.concat([
          deviceRequestFrame({ address: CLONE, requestType: BluetoothDeviceRequestType.DISCONNECT }),
          deviceRequestFrame(connectRequest(CLONE)),
        ]),
      );
      await until(() => held !== undefined && !node.bluetooth.linkAddresses.includes(CLONE), 'the link to end at the proxy');
      await until(() => relay.snapshot().proxies[0]!.upstream.diagnostics.slots?.free === 3, 'the relay to read the report that frees it');
      held!.releaseInput();

      // The client asks for a second device: its one slot is taken (or being settled), so it must not get both.
      client.send(BluetoothDeviceRequest, connectRequest(CLONE2));
      await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE2, since);
      const links = (): number[] => node.bluetooth.linkAddresses;
      expect(links().length, `links at the proxy: ${links().map(formatMac)}`).toBeLessThanOrEqual(1);
      await until(
        () => links().map(formatMac).sort().join() === booked(relay).sort().join(),
        'the relay to book every link the proxy holds',
      );
      expect(links().length).toBeLessThanOrEqual(1);
      if (firmware === '2026.7') {
        // The allocated list tells: the connect took the slot again, and the client is told it is connected.
        await client.next(BluetoothDeviceConnectionResponse, (m) => m.address === CLONE && m.connected, since);
        expect(booked(relay)).toEqual([formatMac(CLONE)]);
      }
    },
  );
});
