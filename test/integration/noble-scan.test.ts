import type { Noble, Peripheral } from '@stoprocent/noble';
import { afterEach, describe, expect, it } from 'vitest';
import type { ApiConnection } from '../../src/connection/connection.js';
import { SimulatedFleet as Fleet, type SimulatedNode } from '../../src/fixture-server/fleet.js';
import type { DeviceProfile } from '../../src/fixture-server/profile.js';
import { createNobleBindings, type NobleBindingsOptions } from '../../src/noble/index.js';
import { ProxyPool, type ProxyPoolOptions } from '../../src/pool/proxy-pool.js';
import { subscribeAsOther } from '../helpers/fleet.js';
import { fastProfile, NobleClass, newNobleGap, nobleGapAdvertisement, nobleRig } from '../helpers/noble.js';

const PROFILES = ['default', 'kitchen', 'living-room', 'garage'];

const rig = nobleRig();

/** Notices a takeover in well under a second (the defaults: 30 s of silence, then a 5 s probe). */
const FAST_WATCHDOG: NonNullable<ProxyPoolOptions['attach']> = { watchdog: { silenceTimeout: 60, probeTimeout: 300 } };

const others: ApiConnection[] = [];
afterEach(() => {
  for (const api of others.splice(0)) api.destroy();
});

/** Another client (as Home Assistant) subscribes to the proxy's advertisements; 2026.7 firmware hands it the subscription. */
async function takeSubscription(node: SimulatedNode): Promise<void> {
  others.push(await subscribeAsOther(node));
}

async function start(
  profiles: Array<string | DeviceProfile>,
  perNode: Array<{ rssiOffset?: number; featureFlags?: number }> = [],
  beforeBindings?: (pool: ProxyPool) => void,
  options: NobleBindingsOptions = {},
): Promise<Noble> {
  const loaded = await Promise.all(profiles.map((p) => (typeof p === 'string' ? fastProfile(p) : p)));
  rig.fleet = await Fleet.start(loaded.map((profile, i) => ({ profile, ...(perNode[i] ?? {}) })));
  rig.pool = new ProxyPool(rig.fleet.addresses);
  beforeBindings?.(rig.pool);
  rig.bindings = createNobleBindings(rig.pool, options);
  const noble = new NobleClass(rig.bindings);
  await noble.waitForPoweredOnAsync(3_000);
  return noble;
}

/** Collects discover events until every address in `macs` was seen `times` times (none given: until the deadline). */
function collect(noble: Noble, macs: Iterable<string>, times: number, timeoutMs: number): Promise<Map<string, Peripheral[]>> {
  const wanted = new Set([...macs].map((m) => m.toLowerCase()));
  const seen = new Map<string, Peripheral[]>();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      noble.removeListener('discover', onDiscover);
      resolve(seen);
    };
    const timer = setTimeout(done, timeoutMs);
    const onDiscover = (p: Peripheral): void => {
      const list = seen.get(p.address) ?? [];
      list.push(p);
      seen.set(p.address, list);
      if (wanted.size > 0 && [...wanted].every((m) => (seen.get(m)?.length ?? 0) >= times)) done();
    };
    noble.on('discover', onDiscover);
  });
}

describe('noble bindings - scanning', () => {
  it('noble - discovers every advertiser of the committed profiles with exactly the fields of noble’s own HCI GAP parser', async () => {
    // noble's HCI GAP layer, fed every report the bindings get, in the same order and just before them: its
    // advertisement objects are the reference.
    const gap = newNobleGap();
    let offTap = (): void => {};
    // Like a controller, the reference only gets reports while scanning.
    let scanning = false;
    const noble = await start(PROFILES, [], (p) => {
      offTap = p.onAdvertisement((ad) => {
        if (scanning) nobleGapAdvertisement(gap, ad.mac.toLowerCase(), Buffer.from(ad.raw));
      });
    });
    const profiles = await Promise.all(PROFILES.map((p) => fastProfile(p)));
    const macs = new Set(profiles.flatMap((p) => p.peripherals.map((d) => d.mac)));
    const addressTypes = new Map(profiles.flatMap((p) => p.peripherals.map((d) => [d.mac.toLowerCase(), d.addressType] as const)));
    const mismatches: string[] = [];
    noble.on('discover', (p: Peripheral) => {
      const expected = gap._discoveries[p.address]?.advertisement;
      // Compared at the moment noble reports it (the object keeps accumulating, as noble's does).
      const got = JSON.stringify(p.advertisement);
      if (got !== JSON.stringify(expected)) mismatches.push(`${p.address}: ${got} ≠ ${JSON.stringify(expected)}`);
    });
    scanning = true;
    await noble.startScanningAsync([], true);
    const seen = await collect(noble, macs, 3, 6_000);
    await noble.stopScanningAsync();
    offTap();

    expect(mismatches).toEqual([]);
    expect([...seen.keys()].sort()).toEqual([...macs].map((m) => m.toLowerCase()).sort());
    for (const [address, events] of seen) {
      const peripheral = events.at(-1)!;
      expect(peripheral.id).toBe(address.replaceAll(':', ''));
      expect(peripheral.address).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      expect(peripheral.addressType).toBe(addressTypes.get(address) === 1 ? 'random' : 'public');
      // Every simulated proxy can connect (feature flags 0xFF), like an active ESPHome proxy.
      expect(peripheral.connectable).toBe(true);
      expect((peripheral as Peripheral & { scannable?: boolean }).scannable).toBe(false);
      expect(typeof peripheral.rssi).toBe('number');
    }
    // Spot checks against the decoded values of fixtures/data.
    const switchbot = seen.get('c4:f9:26:75:df:22')!.at(-1)!.advertisement;
    expect(switchbot.serviceData.map((s) => s.uuid)).toEqual(['fd3d']);
    expect(switchbot.manufacturerData?.readUInt16LE(0)).toBe(0x0969);
    const demo = seen.get('c0:ff:ee:00:00:01')!.at(-1)!.advertisement;
    expect(demo.localName).toBe('esphome-ble-demo');
    expect(demo.serviceUuids).toEqual(['a3f1c2e05b7d4e8a9c3b0d1e2f3a4b00']);
  }, 15_000);

  it('noble - one report per advertisement across proxies, from the proxy that hears the device best', async () => {
    // The espresso machine is in both profiles: -58 dBm in the kitchen, -84 in the living room.
    const noble = await start(['kitchen', 'living-room']);
    const [kitchenId, livingId] = rig.pool!.proxies().map((p) => p.id);
    const reports = new Map<string, number>();
    const offTap = rig.pool!.onAdvertisement((ad, proxy) => {
      if (ad.mac === '34:AB:95:FD:29:AE') reports.set(proxy, (reports.get(proxy) ?? 0) + 1);
    });
    await noble.startScanningAsync([], true);
    const seen = await collect(noble, ['34:AB:95:FD:29:AE'], 8, 4_000);
    await noble.stopScanningAsync();
    offTap();
    const events = seen.get('34:ab:95:fd:29:ae')!;
    expect(events.length).toBeGreaterThanOrEqual(8);
    expect(reports.get(kitchenId!)).toBeGreaterThan(0);
    expect(reports.get(livingId!)).toBeGreaterThan(0);
    // Not one event per proxy report: at most the kitchen proxy's reports (plus the one that elected it).
    expect(events.length).toBeLessThanOrEqual(reports.get(kitchenId!)! + 1);
    const rssis = events.slice(2).map((p) => p.rssi);
    expect(Math.min(...rssis)).toBeGreaterThan(-70);
  }, 10_000);

  it('noble - service-UUID filter matches advertised UUIDs and service data; without duplicates each device once per scan', async () => {
    const noble = await start(['default', 'living-room']);
    // 0xFCD2 is BTHome's service data UUID (the Shelly BLU devices).
    await noble.startScanningAsync(['fcd2'], false);
    const seen = await collect(noble, [], 1, 800);
    await noble.stopScanningAsync();
    expect([...seen.keys()].sort()).toEqual(['b4:35:22:f5:3d:a4']);
    expect(seen.get('b4:35:22:f5:3d:a4')!.length).toBe(1);

    // A 128-bit filter in any spelling (dashed, upper case) finds the demo peripheral by its advertised service UUID.
    await noble.startScanningAsync(['A3F1C2E0-5B7D-4E8A-9C3B-0D1E2F3A4B00'], false);
    const demo = await collect(noble, [], 1, 600);
    await noble.stopScanningAsync();
    expect([...demo.keys()]).toEqual(['c0:ff:ee:00:00:01']);
    expect(demo.get('c0:ff:ee:00:00:01')!.length).toBe(1);

    // A new scan without duplicates reports every device again, once.
    await noble.startScanningAsync([], false);
    const all = await collect(noble, [], 1, 800);
    await noble.stopScanningAsync();
    expect(all.size).toBeGreaterThanOrEqual(8);
    for (const events of all.values()) expect(events.length).toBe(1);
  }, 10_000);

  it('noble - without duplicates, the one discover of a device alternating two payloads carries both, as noble waits for the second', async () => {
    // The SwitchBot Meter alternates a service-data-only report and a full one (flags, manufacturer and service data).
    const base = await fastProfile('default');
    const meter = base.peripherals.find((p) => p.mac === 'C4:F9:26:75:DF:22')!;
    const noble = await start([{ ...base, peripherals: [{ ...meter, advertisingIntervalMs: 300 }] }]);
    await noble.startScanningAsync([], false);
    const seen = await collect(noble, [meter.mac], 2, 1_500);
    await noble.stopScanningAsync();
    const events = seen.get(meter.mac.toLowerCase())!;
    expect(events.length).toBe(1);
    expect(events[0]!.advertisement.manufacturerData).toBeDefined();
    expect(events[0]!.advertisement.serviceData.map((s) => s.uuid)).toEqual(['fd3d']);
  });

  it('noble - a connectable device that sends one report is still discovered after scanResponseTimeout', async () => {
    // The Tilt advertises one payload; a slow interval, as real beacons have: its next report comes 5 s later.
    const base = await fastProfile('default');
    const tilt = base.peripherals.find((p) => p.mac === '04:A3:16:9B:09:5A')!;
    const scanResponseTimeout = 300;
    const noble = await start([{ ...base, peripherals: [{ ...tilt, advertisingIntervalMs: 5_000 }] }], [], undefined, {
      scanResponseTimeout,
    });
    let firstReportAt: number | undefined;
    let scanning = false;
    const offTap = rig.pool!.onAdvertisement((ad) => {
      if (scanning && ad.mac === tilt.mac) firstReportAt ??= performance.now();
    });
    await noble.startScanningAsync([], false);
    scanning = true;
    const seen = await collect(noble, [tilt.mac], 1, 6_000);
    const discoveredAt = performance.now();
    await noble.stopScanningAsync();
    offTap();
    expect(seen.get(tilt.mac.toLowerCase())?.length).toBe(1);
    expect(discoveredAt - firstReportAt!).toBeGreaterThanOrEqual(scanResponseTimeout - 20);
    expect(discoveredAt - firstReportAt!).toBeLessThan(scanResponseTimeout + 400);
  }, 10_000);

  it('noble - a proxy that cannot connect reports devices as not connectable', async () => {
    // 0x61: passive scan + raw advertisements + state/mode, what `bluetooth_proxy: active: false` reports.
    const noble = await start(['default'], [{ featureFlags: 0x61 }]);
    await noble.startScanningAsync([], false);
    const seen = await collect(noble, ['04:A3:16:9B:09:5A'], 1, 2_000);
    await noble.stopScanningAsync();
    expect(seen.get('04:a3:16:9b:09:5a')!.at(-1)!.connectable).toBe(false);
  });

  it('noble - a device heard best by a passive proxy is connectable when another proxy that hears it can connect', async () => {
    const noble = await start(['default', 'default'], [{ featureFlags: 0x61, rssiOffset: 20 }, {}]);
    await noble.startScanningAsync([], true);
    const seen = await collect(noble, ['04:A3:16:9B:09:5A'], 4, 2_000);
    await noble.stopScanningAsync();
    const last = seen.get('04:a3:16:9b:09:5a')!.at(-1)!;
    expect(last.connectable).toBe(true);
    // Reported by the passive proxy, which hears it 20 dB better.
    expect(last.rssi).toBeGreaterThan(-57 - 5 + 20);
  });

  it('noble - after the proxies come back (poweredOff → poweredOn) a running scan reports every device again', async () => {
    const profile = await fastProfile('default');
    rig.fleet = await Fleet.start([{ profile }]);
    const port = rig.fleet.nodes[0]!.server.address.port;
    rig.pool = new ProxyPool(rig.fleet.addresses, { backoff: { initialDelay: 50, maxDelay: 100 } });
    rig.bindings = createNobleBindings(rig.pool);
    const noble = new NobleClass(rig.bindings);
    await noble.waitForPoweredOnAsync(3_000);
    await noble.startScanningAsync([], false);
    await collect(noble, ['04:A3:16:9B:09:5A'], 1, 2_000);
    const states: string[] = [];
    noble.on('stateChange', (s: string) => states.push(s));
    await rig.fleet.close();
    rig.fleet = await Fleet.start([{ profile, port }]);
    const again = await collect(noble, ['04:A3:16:9B:09:5A'], 1, 4_000);
    await noble.stopScanningAsync();
    expect(states).toEqual(['poweredOff', 'poweredOn']);
    expect(again.get('04:a3:16:9b:09:5a')?.length).toBe(1);
  });

  it('noble - a proxy whose subscription another client took counts as gone: poweredOff, and poweredOn once it has it back', async () => {
    const profile = await fastProfile('default');
    rig.fleet = await Fleet.start([{ profile, firmware: '2026.7' }]);
    rig.pool = new ProxyPool(rig.fleet.addresses, { attach: { ...FAST_WATCHDOG, resubscribe: { delays: [300] } } });
    rig.bindings = createNobleBindings(rig.pool);
    const noble = new NobleClass(rig.bindings);
    await noble.waitForPoweredOnAsync(3_000);
    // Each state change with the proxy's state in the pool at that moment.
    const states: string[] = [];
    noble.on('stateChange', (state: string) => states.push(`${state} (${rig.pool!.diagnostics()[0]!.state})`));
    await takeSubscription(rig.fleet.nodes[0]!);
    // The session stays up, so only the subscription can tell: no advertisements, and the pool refuses to connect.
    // Then the resubscribe takes the subscription back (newest wins).
    await expect.poll(() => states.length, { timeout: 4_000 }).toBe(2);
    expect(states).toEqual(['poweredOff (subscriptionLost)', 'poweredOn (online)']);
    await noble.startScanningAsync([], false);
    expect((await collect(noble, ['04:A3:16:9B:09:5A'], 1, 3_000)).size).toBeGreaterThan(0);
    await noble.stopScanningAsync();
  });

  it('noble - devices heard through a proxy whose subscription was taken are no longer connectable through it', async () => {
    const profile = await fastProfile('default');
    // The second proxy hears everything 20 dB better, so it reports, but cannot connect for the pool (0x63: connections
    // without remote caching; unlike a scan-only proxy, it answers the watchdog's probe). The first one can connect.
    rig.fleet = await Fleet.start([
      { profile, firmware: '2026.7' },
      { profile, featureFlags: 0x63, rssiOffset: 20 },
    ]);
    rig.pool = new ProxyPool(rig.fleet.addresses, { attach: { ...FAST_WATCHDOG, resubscribe: false } });
    rig.bindings = createNobleBindings(rig.pool);
    const noble = new NobleClass(rig.bindings);
    await noble.waitForPoweredOnAsync(3_000);
    await noble.startScanningAsync([], true);
    const before = await collect(noble, ['04:A3:16:9B:09:5A'], 3, 2_000);
    expect(before.get('04:a3:16:9b:09:5a')!.at(-1)!.connectable).toBe(true);
    await takeSubscription(rig.fleet.nodes[0]!);
    await expect.poll(() => rig.pool!.diagnostics()[0]!.state, { timeout: 3_000 }).toBe('subscriptionLost');
    const after = await collect(noble, ['04:A3:16:9B:09:5A'], 3, 2_000);
    await noble.stopScanningAsync();
    expect(after.get('04:a3:16:9b:09:5a')!.at(-1)!.connectable).toBe(false);
    // The other proxy is still subscribed: the adapter stays on.
    expect(noble.state).toBe('poweredOn');
  });

  it('noble - stateChange reports poweredOn once a proxy is subscribed and poweredOff when every proxy is gone', async () => {
    const noble = await start(['default']);
    expect(noble.state).toBe('poweredOn');
    const states: string[] = [];
    noble.on('stateChange', (s: string) => states.push(s));
    await rig.fleet!.close();
    const deadline = Date.now() + 3_000;
    while (!states.includes('poweredOff') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(states).toEqual(['poweredOff']);
  });
});
