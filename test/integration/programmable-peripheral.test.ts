import { describe, expect, it } from 'vitest';
import { DEFAULT_PROFILE_PATH, loadProfile } from '../../src/fixture-server/profile.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { DEMO_MAC, startTestFleet } from '../helpers/fleet.js';

// The demo peripheral: a write characteristic and the Service Changed characteristic (indicate-only).
const COMMAND = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b02';
const STATUS = 'a3f1c2e0-5b7d-4e8a-9c3b-0d1e2f3a4b01';
const SERVICE_CHANGED = '2a05';

describe('simulated-peripheral - programmed characteristics over the wire', () => {
  it('simulated-peripheral - a write reaches the program, which indicates the answer back through the proxy', async () => {
    await using fleet = await startTestFleet(1, await loadProfile(DEFAULT_PROFILE_PATH));
    const demo = fleet.nodes[0]!.bluetooth.peripherals.find((p) => p.mac === DEMO_MAC)!;
    const confirmed: number[][] = [];
    // A request/response device: every command is answered by an indication carrying its bytes reversed.
    demo.program(COMMAND, {
      onWrite: (data) => {
        // The refused write's answer may still be on its way when the test hangs up: that one fails, quietly.
        void demo.indicate(SERVICE_CHANGED, data.slice().reverse()).then(
          () => confirmed.push([...data]),
          () => {},
        );
        return data.length === 0 ? 0x0d : undefined;
      },
    });
    let reads = 0;
    demo.program(STATUS, { onRead: () => Uint8Array.of(++reads) });
    const subscribed: boolean[] = [];
    demo.program(SERVICE_CHANGED, { onSubscribe: (s) => subscribed.push(s.indicate), onUnsubscribe: () => subscribed.push(false) });

    const pool = new ProxyPool(fleet.addresses);
    try {
      const device = await pool.establishConnection(DEMO_MAC, { timeout: 5_000 });
      const answers = await device.notifications(SERVICE_CHANGED);
      expect(subscribed).toEqual([true]);
      await device.write(COMMAND, Uint8Array.of(1, 2, 3));
      expect([...(await answers.next()).value!]).toEqual([3, 2, 1]);
      await expect.poll(() => confirmed).toEqual([[1, 2, 3]]);
      await expect(device.write(COMMAND, new Uint8Array(0))).rejects.toMatchObject({ code: 'ESPAPI_ERR_GATT' });
      expect([...(await device.read(STATUS))]).toEqual([1]);
      expect([...(await device.read(STATUS))]).toEqual([2]);
      await answers.return?.();
      await device.disconnect();
      expect(subscribed.at(-1)).toBe(false);
    } finally {
      await pool.close();
    }
  });

  it('simulated-peripheral - a client sees the reply to its write before the indication the write triggered', async () => {
    await using fleet = await startTestFleet(1, await loadProfile(DEFAULT_PROFILE_PATH));
    const demo = fleet.nodes[0]!.bluetooth.peripherals.find((p) => p.mac === DEMO_MAC)!;
    demo.program(COMMAND, {
      onWrite: (data) => {
        void demo.indicate(SERVICE_CHANGED, data).catch(() => {});
        return undefined;
      },
    });
    const pool = new ProxyPool(fleet.addresses);
    try {
      const device = await pool.establishConnection(DEMO_MAC, { timeout: 5_000 });
      const order: string[] = [];
      const stop = await device.startNotify(SERVICE_CHANGED, (data) => order.push(`indication ${[...data]}`));
      for (const byte of [1, 2, 3]) {
        await device.write(COMMAND, Uint8Array.of(byte));
        order.push(`write ${byte} acknowledged`);
        await expect.poll(() => order.length).toBe(2 * byte);
      }
      expect(order).toEqual([
        'write 1 acknowledged',
        'indication 1',
        'write 2 acknowledged',
        'indication 2',
        'write 3 acknowledged',
        'indication 3',
      ]);
      await stop();
      await device.disconnect();
    } finally {
      await pool.close();
    }
  });
});
