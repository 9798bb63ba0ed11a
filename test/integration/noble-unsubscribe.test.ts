import type { Characteristic, Noble, Peripheral } from '@stoprocent/noble';
import { describe, expect, it } from 'vitest';
import { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { createNobleBindings } from '../../src/noble/index.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { DEMO_MAC } from '../helpers/fleet.js';
import { discoverOne, fastProfile, NobleClass, nobleRig, settled } from '../helpers/noble.js';

const DEMO_ID = DEMO_MAC.replaceAll(':', '').toLowerCase();
const DEMO_ADDRESS = Number.parseInt(DEMO_ID, 16);
const COUNTER = 'a3f1c2e05b7d4e8a9c3b0d1e2f3a4b04';

const rig = nobleRig();

/** A connected demo peripheral with its counter characteristic subscribed. */
async function subscribedCounter(): Promise<{ noble: Noble; peripheral: Peripheral; counter: Characteristic }> {
  rig.fleet = await SimulatedFleet.start([{ profile: await fastProfile('default') }]);
  rig.pool = new ProxyPool(rig.fleet.addresses);
  rig.bindings = createNobleBindings(rig.pool, { connect: { maxAttempts: 1 } });
  const noble = new NobleClass(rig.bindings);
  await noble.waitForPoweredOnAsync(3_000);
  const found = discoverOne(noble, (p) => p.id === DEMO_ID);
  await noble.startScanningAsync([], false);
  const peripheral = await found;
  await noble.stopScanningAsync();
  await peripheral.connectAsync();
  const { characteristics } = await peripheral.discoverSomeServicesAndCharacteristicsAsync([], [COUNTER]);
  const counter = characteristics[0]!;
  await counter.subscribeAsync();
  return { noble, peripheral, counter };
}

function disconnected(peripheral: Peripheral): Promise<void> {
  return new Promise((resolve) => peripheral.once('disconnect', () => resolve()));
}

describe('noble bindings - unsubscribing from a link that is gone', () => {
  it('noble - an unsubscribe after the device dropped the link resolves', async () => {
    const { peripheral, counter } = await subscribedCounter();
    const gone = disconnected(peripheral);
    rig.fleet!.nodes[0]!.bluetooth.dropLink(DEMO_ADDRESS);
    await gone;
    expect(await settled(counter.unsubscribeAsync(), 2_000)).toEqual({ value: undefined });
  });

  it('noble - an unsubscribe still in flight when the link drops reports no error to its callback', async () => {
    const { peripheral, counter } = await subscribedCounter();
    const gone = disconnected(peripheral);
    // The callback form: noble's *Async wrappers reject anything in flight at a disconnect by themselves.
    const unsubscribed = new Promise<unknown>((resolve) => counter.unsubscribe((error) => resolve(error)));
    // The proxy answers the notify-disable after this tick; the link loss reaches the client first.
    rig.fleet!.nodes[0]!.bluetooth.dropLink(DEMO_ADDRESS);
    expect(await settled(unsubscribed, 2_000)).toEqual({ value: undefined });
    await gone;
  });

  it('noble - a subscribe on a link that is gone still fails with the typed error', async () => {
    const { peripheral, counter } = await subscribedCounter();
    await counter.unsubscribeAsync();
    const gone = disconnected(peripheral);
    rig.fleet!.nodes[0]!.bluetooth.dropLink(DEMO_ADDRESS);
    await gone;
    const outcome = await settled(counter.subscribeAsync(), 2_000);
    expect(outcome).toMatchObject({ error: { code: 'ESPAPI_ERR_BLE_DISCONNECTED' } });
  });
});
