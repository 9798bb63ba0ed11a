import { afterEach, expect, it } from 'vitest';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { startSimulatedProxy, type SimulatedNode } from '../../src/fixture-server/fleet.js';

const nodes: SimulatedNode[] = [];
const apis: ApiConnection[] = [];
afterEach(async () => {
  for (const a of apis.splice(0)) a.destroy();
  for (const n of nodes.splice(0)) await n.server.close();
});
const DEMO = 0xc0ffee000001;
it('smoke', async () => {
  const node = await startSimulatedProxy({});
  nodes.push(node);
  const api = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, timeout: 3000 });
  apis.push(api);
  const proxy = await BluetoothProxy.attach(api);
  console.log(proxy.features, proxy.slots, proxy.scannerState);
  const link = await proxy.connect(DEMO);
  const t0 = performance.now();
  await link.disconnect();
  const link2 = await proxy.connect(DEMO, { timeout: 1000 });
  console.log('reconnect ok', performance.now() - t0);
  await link2.disconnect();
});
