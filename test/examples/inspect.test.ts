import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ApiConnection } from '../../src/connection/connection.js';
import type { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { BluetoothDeviceConnectionResponse, BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../../src/gen/api_pb.js';
import { profileWithDevices, startTestFleet, subscribeAsOther } from '../helpers/fleet.js';
import { printSlots } from './inspect.js';

let fleet: SimulatedFleet | undefined;
let ha: ApiConnection | undefined;

afterEach(async () => {
  vi.restoreAllMocks();
  ha?.destroy();
  ha = undefined;
  await fleet?.close();
  fleet = undefined;
});

describe('README examples (inspection)', () => {
  it('examples - inspect reads both proxies while another client holds one, and takes nothing', async () => {
    fleet = await startTestFleet(2, await profileWithDevices(0));
    const node = fleet.nodes[0]!;
    ha = await subscribeAsOther(node);
    await ha.request(
      BluetoothDeviceRequest,
      { address: 0xc0ffee000001, requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE, hasAddressType: true, addressType: 1 },
      BluetoothDeviceConnectionResponse,
      (m) => m.connected,
      { timeout: 3000 },
    );
    const holder = node.bluetooth.subscriber;
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    const inspections = await printSlots(fleet.addresses);
    expect(inspections.map((p) => [p.name, p.inspection?.slots?.free, p.inspection?.subscriber.holder])).toEqual([
      ['proxy-1', 2, 'otherClient'],
      ['proxy-2', 3, 'nobodySeen'],
    ]);
    expect(log.mock.calls.map((c) => String(c[0]))).toContain(
      '  C0:FF:EE:00:00:01 holds a slot (seen for ' + inspections[0]!.inspection!.allocations[0]!.heldMs + ' ms)',
    );
    expect(node.bluetooth.subscriber).toBe(holder);
  });
});
