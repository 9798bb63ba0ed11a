import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { Noble, Peripheral } from '@stoprocent/noble';
import { describe, expect, it } from 'vitest';
import { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { createNoble, createNobleBindings, installNobleBindings, type NobleBindings } from '../../src/noble/index.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { discoverOne, fastProfile, Noble1Class, nobleRig, settled } from '../helpers/noble.js';

const require = createRequire(import.meta.url);

const rig = nobleRig();

async function startPool(): Promise<ProxyPool> {
  rig.fleet = await SimulatedFleet.start([{ profile: await fastProfile('default') }]);
  rig.pool = new ProxyPool(rig.fleet.addresses);
  return rig.pool;
}

/** Stands for a noble-based library: it imports noble's default instance itself and knows nothing of proxies. */
async function libraryFindsDemo(): Promise<Peripheral> {
  const noble = require('@stoprocent/noble') as Noble;
  await noble.waitForPoweredOnAsync(3_000);
  const found = discoverOne(noble, (p) => p.advertisement.localName === 'esphome-ble-demo');
  await noble.startScanningAsync([], false);
  const peripheral = await found;
  await noble.stopScanningAsync();
  return peripheral;
}

describe('noble bindings - entry points', () => {
  it('noble - createNoble(pool) is the withBindings() of the proxies (noble’s own withBindings only takes a platform name)', async () => {
    const noble = createNoble(await startPool());
    rig.bindings = (noble as unknown as { _bindings: NobleBindings })._bindings;
    await noble.waitForPoweredOnAsync(3_000);
    expect(noble.state).toBe('poweredOn');
    const { withBindings } = require('@stoprocent/noble') as { withBindings: (type: unknown) => unknown };
    expect(() => withBindings(createNobleBindings(rig.pool!))).toThrow(/Unsupported binding type/);
  });

  it('noble - installNobleBindings points noble’s default instance at the proxies, so libraries work unchanged', async () => {
    const defaultNoble = require('@stoprocent/noble') as Noble;
    rig.bindings = installNobleBindings(defaultNoble, await startPool());
    const peripheral = await libraryFindsDemo();
    expect(peripheral.id).toBe('c0ffee000001');
    // Once noble has started its bindings, swapping them would strand its state: refused with a typed error.
    expect(() => installNobleBindings(defaultNoble, rig.pool!)).toThrow(expect.objectContaining({ code: 'ESPAPI_ERR_INVALID_ARGUMENT' }));
  });

  it('noble - noble 1.x’s Noble (node-switchbot’s, like @abandonware/noble’s) starts the bindings with init() and scans', async () => {
    rig.bindings = createNobleBindings(await startPool());
    const noble = new Noble1Class(rig.bindings);
    const warnings: string[] = [];
    noble.on('warning', (message: string) => warnings.push(message));
    // noble 1.x starts its bindings with `_bindings.init()` on the first stateChange listener (2.x: `start()`).
    const state = settled(new Promise((resolve) => noble.once('stateChange', resolve)), 3_000);
    expect(await state).toEqual({ value: 'poweredOn' });
    const found = discoverOne(noble, (p) => p.advertisement.localName === 'esphome-ble-demo');
    await noble.startScanningAsync([], false);
    expect((await found).id).toBe('c0ffee000001');
    await noble.stopScanningAsync();
    expect(warnings).toEqual([]);
  });

  it('noble - installNobleBindings takes noble 1.x’s default instance too, though its constructor subscribed to other bindings', async () => {
    // noble 1.x's default export is `new Noble(hciBindings)`, made at require time (it needs an adapter, so this
    // emitter stands in for those bindings); unlike 2.x, that constructor already listens to their events.
    const hci = Object.assign(new EventEmitter(), { init: () => {}, startScanning: () => {}, stopScanning: () => {} });
    const defaultNoble = new Noble1Class(hci);
    rig.bindings = installNobleBindings(defaultNoble, await startPool());
    expect(await settled(new Promise((resolve) => defaultNoble.once('stateChange', resolve)), 3_000)).toEqual({ value: 'poweredOn' });
    const found = discoverOne(defaultNoble, (p) => p.advertisement.localName === 'esphome-ble-demo');
    await defaultNoble.startScanningAsync([], false);
    expect((await found).id).toBe('c0ffee000001');
    await defaultNoble.stopScanningAsync();
    expect(hci.eventNames()).toEqual([]);
    // noble 1.x marks a started instance `initialized` (2.x `_initialized`): a second install is refused the same way.
    expect(() => installNobleBindings(defaultNoble, rig.pool!)).toThrow(expect.objectContaining({ code: 'ESPAPI_ERR_INVALID_ARGUMENT' }));
  });

  it('noble - createNobleBindings rejects a source that is not a pool, a proxy list or pool options', () => {
    expect(() => createNobleBindings({} as never)).toThrow(expect.objectContaining({ code: 'ESPAPI_ERR_INVALID_ARGUMENT' }));
    expect(() => installNobleBindings({} as never, [])).toThrow(expect.objectContaining({ code: 'ESPAPI_ERR_INVALID_ARGUMENT' }));
  });
});
