import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { Noble, Peripheral } from '@stoprocent/noble';
import { afterEach } from 'vitest';
import type { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import { type DeviceProfile, loadProfile, resolveProfilePath } from '../../src/fixture-server/profile.js';
import type { NobleBindings } from '../../src/noble/index.js';
import type { ProxyPool } from '../../src/pool/proxy-pool.js';

const require = createRequire(import.meta.url);

/** noble's Noble class, the one `withBindings()` instantiates (loaded by path: the package index builds HCI bindings). */
export const NobleClass = require('@stoprocent/noble/lib/noble') as new (bindings: unknown) => Noble;

/**
 * noble 1.x's Noble class: the one node-switchbot 3 pins (@stoprocent/noble ^1.19), with the bindings interface
 * @abandonware/noble also has (`init()`, listeners registered in the constructor, no waitForPoweredOnAsync).
 */
export const Noble1Class = createRequire(require.resolve('node-switchbot'))('@stoprocent/noble/lib/noble') as new (
  bindings: unknown,
) => Noble;

/** noble's own HCI GAP layer (advertising report → advertisement object), fed by hand instead of by a controller. */
export const NobleGap = require('@stoprocent/noble/lib/hci-socket/gap') as new (
  hci: EventEmitter,
) => {
  onHciLeAdvertisingReport(status: number, type: number, address: string, addressType: string, eir: Buffer, rssi: number): void;
  _discoveries: Record<string, { advertisement: unknown } | undefined>;
};

/** A noble HCI GAP instance with no controller behind it. */
export function newNobleGap(): InstanceType<typeof NobleGap> {
  return new NobleGap(new EventEmitter());
}

/** noble's advertisement for `reports` (AD bytes, in order) as its HCI layer builds it, or undefined if it drops them all. */
export function nobleGapAdvertisement(gap: InstanceType<typeof NobleGap>, address: string, eir: Buffer): unknown {
  try {
    // Type 0 is ADV_IND: a connectable advertisement, parsed like every other report type.
    gap.onHciLeAdvertisingReport(0, 0, address, 'public', eir, -60);
  } catch {
    // noble's HCI layer catches its parser's throw and drops the report
  }
  return gap._discoveries[address]?.advertisement;
}

/** A committed profile with every advertising interval capped at `maxIntervalMs` (tests need a few reports per device fast). */
export async function fastProfile(name: string, maxIntervalMs = 150): Promise<DeviceProfile> {
  const profile = await loadProfile(resolveProfilePath(name));
  return {
    ...profile,
    peripherals: profile.peripherals.map((p) => ({ ...p, advertisingIntervalMs: Math.min(p.advertisingIntervalMs, maxIntervalMs) })),
  };
}

/** Resolves with the first peripheral `noble` discovers that `match` accepts. */
export function discoverOne(noble: Noble, match: (p: Peripheral) => boolean, timeoutMs = 3_000): Promise<Peripheral> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      noble.removeListener('discover', onDiscover);
      reject(new Error('peripheral not discovered in time'));
    }, timeoutMs);
    const onDiscover = (p: Peripheral): void => {
      if (!match(p)) return;
      clearTimeout(timer);
      noble.removeListener('discover', onDiscover);
      resolve(p);
    };
    noble.on('discover', onDiscover);
  });
}

/** How `promise` settled within `timeoutMs` (value or error), or 'hung' when it did not settle in time. */
export function settled<T>(promise: Promise<T>, timeoutMs: number): Promise<{ value: T } | { error: unknown } | 'hung'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('hung'), timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve({ value });
      },
      (error: unknown) => {
        clearTimeout(timer);
        resolve({ error });
      },
    );
  });
}

/** The simulated fleet, pool and bindings of the running test. */
export interface NobleRig {
  fleet: SimulatedFleet | undefined;
  pool: ProxyPool | undefined;
  bindings: NobleBindings | undefined;
}

/** A rig whose parts are closed (bindings, pool, fleet) and cleared after every test of the file. */
export function nobleRig(): NobleRig {
  const rig: NobleRig = { fleet: undefined, pool: undefined, bindings: undefined };
  afterEach(async () => {
    await rig.bindings?.close();
    await rig.pool?.close();
    await rig.fleet?.close();
    rig.fleet = undefined;
    rig.pool = undefined;
    rig.bindings = undefined;
  });
  return rig;
}
