import { afterEach, describe, expect, it } from 'vitest';
import { RAW_ADVERTISEMENTS_MESSAGE_ID } from '../../src/bluetooth/raw-advertisements.js';
import type { SlotsProxyJson } from '../../src/cli/commands/slots.js';
import type { ApiConnection } from '../../src/connection/connection.js';
import type { SubscriptionPolicy } from '../../src/fixture-server/firmware.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { BluetoothDeviceConnectionResponse, BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../../src/gen/api_pb.js';
import type { ApiSession } from '../../src/server/api-server.js';
import { runCliProcess, SUBSCRIPTION_NOTE, startCliProcess } from '../helpers/cli.js';
import { subscribeAsOther } from '../helpers/fleet.js';

// Home Assistant is played by subscribeAsOther: another client that holds the proxy's Bluetooth subscription and a
// live link to the demo device. `slots` runs as a child process beside it, as a user would run it at home.
const DEMO = 0xc0ffee000001;
const DEMO_MAC = 'C0:FF:EE:00:00:01';
const PROBE = 0xffff_ffff_ffff;

const nodes: SimulatedNode[] = [];
const apis: ApiConnection[] = [];
const offs: Array<() => void> = [];

afterEach(async () => {
  for (const off of offs.splice(0)) off();
  for (const api of apis.splice(0)) api.destroy();
  for (const node of nodes.splice(0)) await node.server.close();
});

interface Home {
  node: SimulatedNode;
  args: string[];
  /** Home Assistant's session as the proxy knows it. */
  holder: ApiSession;
  ads: () => number;
  probes: () => number;
  /** The sessions our CLI opened (whatever the proxy received from them). */
  cliSessions: ApiSession[];
}

async function home(policy: SubscriptionPolicy): Promise<Home> {
  const node = await startSimulatedProxy({ name: `home-${policy}`, subscriptionPolicy: policy });
  nodes.push(node);
  const ha = await subscribeAsOther(node);
  apis.push(ha);
  let ads = 0;
  let probes = 0;
  ha.onRaw(RAW_ADVERTISEMENTS_MESSAGE_ID, () => ads++);
  ha.on(BluetoothDeviceConnectionResponse, (m) => {
    if (m.address === PROBE) probes++;
  });
  await ha.request(
    BluetoothDeviceRequest,
    { address: DEMO, requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE, hasAddressType: true, addressType: 1 },
    BluetoothDeviceConnectionResponse,
    (m) => m.address === DEMO && m.connected,
    { timeout: 3000 },
  );
  const cliSessions: ApiSession[] = [];
  offs.push(node.server.onSession((s) => cliSessions.push(s)));
  return {
    node,
    args: ['--proxy', `127.0.0.1:${node.server.address.port}`],
    holder: node.bluetooth.subscriber!,
    ads: () => ads,
    probes: () => probes,
    cliSessions,
  };
}

/** What Home Assistant must still have after a run that takes nothing. */
async function expectUntouched(h: Home, adsBefore: number): Promise<void> {
  expect(h.node.bluetooth.subscriber).toBe(h.holder);
  // With the demo connected the others advertise every 1–2 s: give the next batch time to come.
  await expect.poll(h.ads, { timeout: 3000 }).toBeGreaterThan(adsBefore);
  expect(h.probes()).toBe(0);
  expect(h.node.bluetooth.linkAddresses).toEqual([DEMO]);
  expect(h.cliSessions.length).toBeGreaterThan(0);
  for (const session of h.cliSessions) {
    expect(session.received).not.toContain(66);
    expect(session.received).not.toContain(68);
    expect(session.received).toContain(80);
  }
}

describe('cli slots beside Home Assistant', () => {
  for (const policy of ['first-wins', 'newest-wins'] as SubscriptionPolicy[]) {
    it(`cli slots beside HA - table and --json show its link and say another client holds the subscription (${policy})`, async () => {
      const h = await home(policy);
      const before = h.ads();
      const human = await runCliProcess(['slots', ...h.args]);
      expect(human.code, human.stderr).toBe(0);
      expect(human.stderr).toBe('');
      expect(human.stdout).toMatch(
        new RegExp(
          `home-${policy}\\s+127\\.0\\.0\\.1:\\d+\\s+2026\\.8\\.0\\s+esp32dev\\s+2/3\\s+another client\\?\\s+${DEMO_MAC} \\(held \\d`,
        ),
      );
      expect(human.stdout).toContain(`home-${policy}: another client — ${DEMO_MAC} has held a slot for`);
      expect(human.stdout).toContain('nothing taken: slots read with the slot query');
      const json = await runCliProcess(['slots', ...h.args, '--json']);
      expect(json.code, json.stderr).toBe(0);
      const [proxy] = JSON.parse(json.stdout) as SlotsProxyJson[];
      expect(proxy).toMatchObject({
        online: true,
        free: 2,
        limit: 3,
        allocated: [{ mac: DEMO_MAC, owned: false, orphanSigns: [] }],
        subscription: { holder: 'otherClient', sure: false },
        scannerMode: null,
      });
      await expectUntouched(h, before);
    });

    it(`cli slots beside HA - --watch polls the slot query and follows HA's link (${policy})`, async () => {
      const h = await home(policy);
      const before = h.ads();
      const watching = startCliProcess(['slots', ...h.args, '--watch', '--interval', '200ms', '--json'], { timeoutMs: 14_000 });
      const queries = (): number => h.cliSessions[0]?.received.filter((t) => t === 80).length ?? 0;
      // Watch long enough to prove the holder (HOLD_EVIDENCE_MS = 1 s at 200 ms polls)...
      await expect.poll(queries, { timeout: 8_000, interval: 50 }).toBeGreaterThanOrEqual(8);
      // ...then Home Assistant's device goes away while we watch: the next polls show it; Ctrl-C ends the watch (exit 0).
      h.node.bluetooth.dropLink(DEMO);
      const after = queries();
      await expect.poll(queries, { timeout: 4_000, interval: 50 }).toBeGreaterThanOrEqual(after + 2);
      watching.child.kill('SIGINT');
      const result = await watching.done;
      expect(result.code, result.stderr).toBe(0);
      const snapshots = result.stdout
        .trim()
        .split('\n')
        .map((line) => (JSON.parse(line) as SlotsProxyJson[])[0]!);
      // First the slot seen once (not yet proof), then held long enough (another client), then gone.
      expect(snapshots.map((s) => [s.allocated.map((a) => a.mac), s.subscription.holder])).toEqual([
        [[DEMO_MAC], 'unknown'],
        [[DEMO_MAC], 'otherClient'],
        [[], 'nobodySeen'],
      ]);
      expect(h.node.bluetooth.subscriber).toBe(h.holder);
      await expect.poll(h.ads, { timeout: 3000 }).toBeGreaterThan(before);
      expect(h.probes()).toBe(0);
      for (const session of h.cliSessions) {
        expect(session.received).not.toContain(66);
        expect(session.received.filter((t) => t === 80).length).toBeGreaterThanOrEqual(5);
      }
    });
  }

  it('cli slots beside HA - --reap without names keeps HA live link; named, it is released (first-wins)', async () => {
    const h = await home('first-wins');
    const refused = await runCliProcess(['slots', ...h.args, '--reap', '--yes', '--json']);
    expect(refused.code, refused.stderr).toBe(0);
    expect(JSON.parse(refused.stdout)).toMatchObject({ dryRun: false, slots: [{ mac: DEMO_MAC, holder: 'otherClient', result: 'kept' }] });
    expect(h.node.bluetooth.linkAddresses).toEqual([DEMO]);
    const named = await runCliProcess(['slots', ...h.args, '--reap', DEMO_MAC]);
    expect(named.code, named.stderr).toBe(0);
    expect(named.stdout).toMatch(new RegExp(`${DEMO_MAC}\\s+\\d+(\\.\\d)?s\\s+another client\\?\\s+-\\s+-\\s+released`));
    expect(h.node.bluetooth.linkAddresses).toEqual([]);
    // The firmware carried out our DISCONNECT and told its subscriber, Home Assistant; it kept its subscription.
    expect(h.node.bluetooth.subscriber).toBe(h.holder);
  });

  it('cli slots beside HA - --subscribe on first-wins is refused where HA holds it; the table says so, HA keeps it', async () => {
    const h = await home('first-wins');
    const before = h.ads();
    const result = await runCliProcess(['slots', ...h.args, '--subscribe', '--json']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(SUBSCRIPTION_NOTE);
    const [proxy] = JSON.parse(result.stdout) as SlotsProxyJson[];
    expect(proxy!.subscription).toMatchObject({ holder: 'otherClient', sure: true });
    expect(proxy!.subscription.evidence).toContain('our subscribe was ignored');
    expect(h.node.bluetooth.subscriber).toBe(h.holder);
    await expect.poll(h.ads, { timeout: 3000 }).toBeGreaterThan(before);
  });

  it('cli slots beside HA - --subscribe on newest-wins takes the subscription, says so, and HA stops getting advertisements', async () => {
    const h = await home('newest-wins');
    // With the demo connected the other devices advertise every 1–2 s: a 2.2 s window sees some while HA holds it.
    const window = async (): Promise<number> => {
      const start = h.ads();
      await new Promise((resolve) => setTimeout(resolve, 2_200));
      return h.ads() - start;
    };
    expect(await window()).toBeGreaterThan(0);
    const running = startCliProcess(['slots', ...h.args, '--subscribe', '--watch'], { timeoutMs: 14_000 });
    await expect.poll(() => h.node.bluetooth.subscriber !== h.holder, { timeout: 8_000 }).toBe(true);
    expect(await window()).toBe(0);
    running.child.kill('SIGINT');
    const result = await running.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(SUBSCRIPTION_NOTE);
    expect(result.stderr).toContain('home-newest-wins (newest wins, 2026.7+: taken from Home Assistant: the events of its open links');
    expect(result.stderr).toContain("when the command exits the proxy has no subscriber and drops every link, Home Assistant's included");
    // slots --subscribe never fights for it.
    expect(result.stderr).not.toContain('takes it back');
    expect(result.stdout).toMatch(/home-newest-wins\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+esp32dev\s+2\/3\s+this process\s+/);
    expect(result.stdout).toContain('this process holds the Bluetooth subscription of 1');
    // The cost of the opt-in: the proxy has no subscriber left once we are gone, until Home Assistant subscribes again.
    expect(h.node.bluetooth.subscriber).not.toBe(h.holder);
  });
});
