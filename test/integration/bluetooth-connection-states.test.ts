import { afterEach, describe, expect, it } from 'vitest';
import { BluetoothProxy, type ConnectionStateChange } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';

const DEMO = 0xc0ffee000001;
let node: SimulatedNode | undefined;
let api: ApiConnection | undefined;

afterEach(async () => {
  api?.destroy();
  await node?.server.close();
  api = undefined;
  node = undefined;
});

describe('bluetooth connection states', () => {
  it('proxy-client - the connection-state stream surfaces a peer-initiated drop with its reason', async () => {
    node = await startSimulatedProxy();
    api = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port });
    const proxy = await BluetoothProxy.attach(api);
    const controller = new AbortController();
    const states: ConnectionStateChange[] = [];
    const collecting = (async () => {
      for await (const state of proxy.connectionStates({ signal: controller.signal })) {
        states.push(state);
        if (!state.connected) controller.abort();
      }
    })();
    const link = await proxy.connect(DEMO, { addressType: 1 });
    node.bluetooth.dropLink(DEMO);
    await collecting;
    expect(states.map((s) => [s.mac, s.connected, s.error, s.reasonName])).toEqual([
      ['C0:FF:EE:00:00:01', true, 0, 'OK'],
      ['C0:FF:EE:00:00:01', false, 8, 'ESP_GATT_CONN_TIMEOUT'],
    ]);
    expect((await link.closed()).reason).toBe(8);
  });
});
