import { describe, expect, it } from 'vitest';
import { parseMac } from '../../src/bluetooth/address.js';
import { OutOfSlotsError } from '../../src/errors.js';
import { CONTROLLER_REFUSAL_MAX_MS } from '../../src/failure-table.js';
import type { SimulatedFleet } from '../../src/fixture-server/fleet.js';
import type { ProxyPool } from '../../src/pool/proxy-pool.js';
import { ADVICE } from '../../src/pool/retry-policy.js';
import { useClosers } from '../helpers/closers.js';
import { DEMO_MAC, startPooledFleet, type startTestFleet } from '../helpers/fleet.js';
import { AT_ONCE_MS } from '../helpers/wait.js';

// 0x100 (ESP_GATT_CONN_CONN_CANCEL) with its real cause. The simulated proxies play each case: a controller that
// refuses the connect at once (BLE 5.0 extended connect on 2026.7.3, esphome#18047), a device that never answers
// (the stack cancels after its timeout, then reports the open's status 133: esphome#18640), and slots that are all
// taken. The error stays an OutOfSlotsError with the 4 s same-proxy backoff and failover; its code, advice and
// timeline say which.

const DEMO = parseMac(DEMO_MAC);

const closers = useClosers();

/** `count` proxies (with `perNode` options) hearing the demo device, and a ready pool of them. */
async function setup(
  count: number,
  perNode: Parameters<typeof startTestFleet>[2] = [],
): Promise<{ fleet: SimulatedFleet; pool: ProxyPool }> {
  const perNodeOfAll = Array.from({ length: count }, (_, i) => perNode[i] ?? {});
  return startPooledFleet(closers, { perNode: perNodeOfAll, pool: { backoff: { initialDelay: 50, maxDelay: 200 } } });
}

describe('pool - 0x100 with its real cause', () => {
  it('pool-conn-cancel - refused at once with slots free, on both proxies: CONTROLLER_REFUSED, failover without waiting', async () => {
    const { fleet, pool } = await setup(2, [{ rssiOffset: 10 }, {}]);
    for (const node of fleet.nodes) node.bluetooth.setBehaviour(DEMO, { connectError: 0x100, connectDelayMs: 5 });
    const started = performance.now();
    const error = (await pool.establishConnection(DEMO_MAC, { maxAttempts: 2 }).catch((e: unknown) => e)) as OutOfSlotsError;
    // Failover without sitting out proxy-1's 4 s same-proxy backoff.
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
    expect(error).toBeInstanceOf(OutOfSlotsError);
    expect(error.code).toBe('ESPAPI_ERR_CONTROLLER_REFUSED');
    expect(error.failureClass).toBe('controllerRefused');
    expect(error.advice).toBe(ADVICE.controllerRefused);
    expect(error.message).toContain('esphome#18047');
    expect(error.timeline.map((a) => [a.proxy, a.reason, a.failure])).toEqual([
      ['proxy-1', 0x100, 'controllerRefused'],
      ['proxy-2', 0x100, 'controllerRefused'],
    ]);
    expect(error.cause).toMatchObject({ reason: 0x100, failureClass: 'controllerRefused' });
    // A refusal counts against the proxy (its controller or firmware is at fault), unlike a shortage of slots.
    expect(pool.proxies().every((p) => p.failureScore > 0)).toBe(true);
  });

  it('pool-conn-cancel - the only proxy refuses once: the 4 s backoff on the same proxy is kept, then it connects', async () => {
    const { fleet, pool } = await setup(1);
    fleet.nodes[0]!.bluetooth.setBehaviour(DEMO, { connectError: 0x100, connectErrorCount: 1, connectDelayMs: 5 });
    const connection = await pool.establishConnection(DEMO_MAC, { maxAttempts: 2 });
    expect(connection.timeline.map((a) => a.failure)).toEqual(['controllerRefused', undefined]);
    // The second attempt waited out the backoff (4 s) before trying the same proxy again.
    expect(connection.timeline[1]!.ms).toBeGreaterThanOrEqual(3800);
    await connection.disconnect();
  }, 15_000);

  it('pool-conn-cancel - the device never answers: the stack cancels after its timeout, then status 133: DEVICE_UNREACHABLE', async () => {
    const { fleet, pool } = await setup(1);
    // esphome#18640 cancels 20.0 s after the connect; 10 s is the shortest establishment timeout ESPHome allows.
    fleet.nodes[0]!.bluetooth.setBehaviour(DEMO, { connectError: 0x100, connectDelayMs: 10_000, closeError: 0x85, closeDelayMs: 170 });
    const error = (await pool.establishConnection(DEMO_MAC, { maxAttempts: 1 }).catch((e: unknown) => e)) as OutOfSlotsError;
    expect(error).toBeInstanceOf(OutOfSlotsError);
    expect(error.code).toBe('ESPAPI_ERR_DEVICE_UNREACHABLE');
    expect(error.advice).toBe(ADVICE.deviceUnreachable);
    expect(error.timeline).toEqual([
      expect.objectContaining({ proxy: 'proxy-1', code: 'ESPAPI_ERR_BLE_CONNECT', reason: 0x100, failure: 'deviceUnreachable' }),
    ]);
    expect(error.timeline[0]!.ms).toBeGreaterThanOrEqual(CONTROLLER_REFUSAL_MAX_MS);
    expect((error.cause as { elapsedMs: number }).elapsedMs).toBeGreaterThanOrEqual(10_000);
    // The attempt's slot was freed after the close event (its second connected=false carried 133).
    expect(fleet.nodes[0]!.bluetooth.linkAddresses).toEqual([]);
  }, 20_000);

  it('pool-conn-cancel - every slot taken: OUT_OF_SLOTS, and no connect was even sent', async () => {
    const { fleet, pool } = await setup(1, [{ slotsBusy: 3 }]);
    const error = (await pool.establishConnection(DEMO_MAC, { maxAttempts: 1, slotWait: 50 }).catch((e: unknown) => e)) as OutOfSlotsError;
    expect(error).toBeInstanceOf(OutOfSlotsError);
    expect(error.code).toBe('ESPAPI_ERR_OUT_OF_SLOTS');
    expect(error.timeline[0]).toMatchObject({ failure: 'outOfSlots', proxy: undefined });
    expect(fleet.nodes[0]!.bluetooth.connectRequests).toBe(0);
  });
});
