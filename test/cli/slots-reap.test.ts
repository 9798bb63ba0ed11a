import { afterEach, describe, expect, it } from 'vitest';
import type { Output } from '../../src/cli/output.js';
import type { Prompter } from '../../src/cli/real-home.js';
import { type ReapSlotJson, reapSlots } from '../../src/cli/slots-reap.js';
import { ApiConnection } from '../../src/connection/connection.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { BluetoothDeviceConnectionResponse, BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../../src/gen/api_pb.js';
import { type ProxyInspection, ProxyInspector } from '../../src/inspect/proxy-inspector.js';
import { HOLD_EVIDENCE_MS } from '../../src/inspect/subscriber-verdict.js';
import { subscribeAsOther } from '../helpers/fleet.js';

const DEMO = 0xc0ffee000001;
const DEMO_MAC = 'C0:FF:EE:00:00:01';

const nodes: SimulatedNode[] = [];
const apis: ApiConnection[] = [];
const inspectors: ProxyInspector[] = [];

afterEach(async () => {
  for (const inspector of inspectors.splice(0)) await inspector.close();
  for (const api of apis.splice(0)) api.destroy();
  for (const node of nodes.splice(0)) await node.server.close();
});

async function connectAs(api: ApiConnection): Promise<void> {
  await api.request(
    BluetoothDeviceRequest,
    { address: DEMO, requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE, hasAddressType: true, addressType: 1 },
    BluetoothDeviceConnectionResponse,
    (m) => m.address === DEMO && m.connected,
    { timeout: 3000 },
  );
}

/** Two proxies on each of which Home Assistant holds the subscription and a live link to the same device. */
async function twoLiveCopies(): Promise<{ nodes: SimulatedNode[]; inspector: ProxyInspector; inspections: ProxyInspection[] }> {
  for (const name of ['copy-a', 'copy-b']) {
    const node = await startSimulatedProxy({ name });
    nodes.push(node);
    const ha = await subscribeAsOther(node);
    apis.push(ha);
    await connectAs(ha);
  }
  const inspector = new ProxyInspector(nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })));
  inspectors.push(inspector);
  await inspector.ready({ timeout: 3000 });
  await inspector.poll();
  await new Promise((resolve) => setTimeout(resolve, HOLD_EVIDENCE_MS));
  return { nodes, inspector, inspections: await inspector.poll() };
}

/** A proxy whose subscription we hold (first wins) and a link a client that never subscribed opened: unclaimed. */
async function strayLink(): Promise<{
  node: SimulatedNode;
  inspector: ProxyInspector;
  inspections: ProxyInspection[];
  stranger: ApiConnection;
}> {
  const node = await startSimulatedProxy({ name: 'stray', subscriptionPolicy: 'first-wins' });
  nodes.push(node);
  const inspector = new ProxyInspector([{ host: '127.0.0.1', port: node.server.address.port, name: 'stray' }], { subscribe: true });
  inspectors.push(inspector);
  await inspector.ready({ timeout: 3000 });
  const stranger = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, timeout: 3000 });
  apis.push(stranger);
  stranger.send(BluetoothDeviceRequest, {
    address: DEMO,
    requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
    hasAddressType: true,
    addressType: 1,
  });
  await expect.poll(() => node.bluetooth.linkAddresses).toEqual([DEMO]);
  await inspector.poll();
  await new Promise((resolve) => setTimeout(resolve, HOLD_EVIDENCE_MS + 50));
  return { node, inspector, inspections: await inspector.poll(), stranger };
}

function capture(): { out: Output; stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    out: { isTty: false, line: (t = '') => stdout.push(t), error: (t) => stderr.push(t), json: (v) => stdout.push(JSON.stringify(v)) },
    stdout,
    stderr,
  };
}

const ctx = (out: Output) => ({ out, signal: new AbortController().signal });

describe('slots reap', () => {
  it('slots reap - a device held on two proxies is no reason to release either copy: --yes keeps both, the list says how to name one', async () => {
    const {
      nodes: [a, b],
      inspector,
      inspections,
    } = await twoLiveCopies();
    const asked: string[] = [];
    const prompter: Prompter = async (question) => {
      asked.push(question);
      return 'y';
    };
    const yes = capture();
    expect(await reapSlots(ctx(yes.out), inspector, inspections, { named: [], dryRun: false, yes: true, json: false }, prompter)).toBe(0);
    const text = yes.stdout.join('\n');
    expect(text).toMatch(new RegExp(`copy-a\\s+${DEMO_MAC}\\s+\\d+(\\.\\d)?s\\s+another client\\?\\s+-\\s+copy-b\\s+kept`));
    expect(text).toMatch(new RegExp(`copy-b\\s+${DEMO_MAC}\\s+\\d+(\\.\\d)?s\\s+another client\\?\\s+-\\s+copy-a\\s+kept`));
    expect(text).toContain(`to free one copy name it: --reap ${DEMO_MAC}@copy-a`);
    expect(asked).toEqual([]);
    // Both of Home Assistant's links are still up.
    expect(a!.bluetooth.linkAddresses).toEqual([DEMO]);
    expect(b!.bluetooth.linkAddresses).toEqual([DEMO]);
  });

  it('slots reap - a MAC named alone that holds slots on two proxies needs its proxy (exit 2, nothing changed); MAC@proxy frees that copy', async () => {
    const {
      nodes: [a, b],
      inspector,
      inspections,
    } = await twoLiveCopies();
    const alone = capture();
    const request = { dryRun: false, yes: false, json: true };
    expect(await reapSlots(ctx(alone.out), inspector, inspections, { ...request, named: [{ address: DEMO, proxy: undefined }] })).toBe(2);
    const plan = JSON.parse(alone.stdout[0]!) as { dryRun: boolean; slots: ReapSlotJson[] };
    expect(plan.dryRun).toBe(true);
    expect(plan.slots.map((s) => [s.proxyName, s.result])).toEqual([
      ['copy-a', 'needsProxy'],
      ['copy-b', 'needsProxy'],
    ]);
    expect(alone.stderr.join('\n')).toContain(`${DEMO_MAC} holds slots on copy-a, copy-b: name the copy to free as ${DEMO_MAC}@copy-a`);
    expect(a!.bluetooth.linkAddresses).toEqual([DEMO]);
    expect(b!.bluetooth.linkAddresses).toEqual([DEMO]);
    // Naming one copy does not make the bare MAC mean the others; a proxy nobody has is reported, nothing freed.
    const mixed = capture();
    const both = [
      { address: DEMO, proxy: undefined },
      { address: DEMO, proxy: 'copy-a' },
    ];
    expect(await reapSlots(ctx(mixed.out), inspector, inspections, { ...request, named: both })).toBe(2);
    const typo = capture();
    expect(await reapSlots(ctx(typo.out), inspector, inspections, { ...request, named: [{ address: DEMO, proxy: 'copy-z' }] })).toBe(0);
    expect((JSON.parse(typo.stdout[0]!) as { slots: ReapSlotJson[] }).slots.map((s) => [s.proxy, s.result])).toEqual([
      ['copy-a', 'kept'],
      ['copy-b', 'kept'],
      ['copy-z', 'notAllocated'],
    ]);
    expect(a!.bluetooth.linkAddresses).toEqual([DEMO]);
    const one = capture();
    expect(await reapSlots(ctx(one.out), inspector, inspections, { ...request, named: [{ address: DEMO, proxy: 'copy-b' }] })).toBe(0);
    expect((JSON.parse(one.stdout[0]!) as { slots: ReapSlotJson[] }).slots.map((s) => [s.proxyName, s.named, s.result])).toEqual([
      ['copy-a', false, 'kept'],
      ['copy-b', true, 'released'],
    ]);
    expect(a!.bluetooth.linkAddresses).toEqual([DEMO]);
    expect(b!.bluetooth.linkAddresses).toEqual([]);
  });

  it('slots reap - with the subscription ours, an unclaimed link is offered, and released on a yes', async () => {
    const { node, inspector, inspections } = await strayLink();
    const asked: string[] = [];
    const run = capture();
    const prompter: Prompter = async (question) => {
      asked.push(question);
      return 'yes';
    };
    expect(await reapSlots(ctx(run.out), inspector, inspections, { named: [], dryRun: false, yes: false, json: false }, prompter)).toBe(0);
    expect(asked).toEqual(['Release 1 slot that looks orphaned (this ends whatever link holds it)? [y/N] ']);
    expect(run.stdout.join('\n')).toMatch(
      new RegExp(`stray\\s+${DEMO_MAC}\\s+\\d+(\\.\\d)?s\\s+this process\\s+unclaimed\\s+-\\s+released`),
    );
    expect(node.bluetooth.linkAddresses).toEqual([]);
  });

  it('slots reap - --json on a terminal: the plan goes to stderr before the question; a no prints one JSON document', async () => {
    const { node, inspector, inspections } = await strayLink();
    const run = capture();
    let shownBeforeAsking = '';
    const prompter: Prompter = async () => {
      shownBeforeAsking = run.stderr.join('\n');
      return 'n';
    };
    expect(await reapSlots(ctx(run.out), inspector, inspections, { named: [], dryRun: false, yes: false, json: true }, prompter)).toBe(0);
    expect(shownBeforeAsking).toMatch(new RegExp(`stray\\s+${DEMO_MAC}\\s+.*unclaimed\\s+-\\s+would release`));
    expect(run.stdout).toHaveLength(1);
    expect(JSON.parse(run.stdout[0]!)).toMatchObject({
      dryRun: true,
      declined: true,
      slots: [{ mac: DEMO_MAC, result: 'wouldRelease' }],
      // The earlier shape, kept for scripts.
      orphans: [{ proxy: 'stray', mac: DEMO_MAC, released: false }],
    });
    expect(node.bluetooth.linkAddresses).toEqual([DEMO]);
  });

  it('slots reap - a yes after the slot was freed meanwhile releases nothing: the look is fresh after the question', async () => {
    const { node, inspector, inspections, stranger } = await strayLink();
    const run = capture();
    const prompter: Prompter = async () => {
      // While the user thinks, the link's own client ends it.
      stranger.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
      await expect.poll(() => node.bluetooth.allocated).toEqual([]);
      return 'y';
    };
    // Our session is the subscriber here: count the device requests (68) it sends.
    const ourRequests = (): number => node.bluetooth.subscriber?.received.filter((t) => t === 68).length ?? 0;
    const sentBefore = ourRequests();
    expect(await reapSlots(ctx(run.out), inspector, inspections, { named: [], dryRun: false, yes: false, json: true }, prompter)).toBe(0);
    expect(JSON.parse(run.stdout[0]!)).toMatchObject({ dryRun: false, declined: false, slots: [{ mac: DEMO_MAC, result: 'gone' }] });
    // No DISCONNECT went out from our side for it.
    expect(ourRequests()).toBe(sentBefore);
  });

  it('slots reap - a yes after the slot was freed and taken again releases nothing: its sign must still show', async () => {
    const { node, inspector, inspections, stranger } = await strayLink();
    const run = capture();
    const prompter: Prompter = async () => {
      stranger.send(BluetoothDeviceRequest, { address: DEMO, requestType: BluetoothDeviceRequestType.DISCONNECT });
      await expect.poll(() => node.bluetooth.allocated).toEqual([]);
      stranger.send(BluetoothDeviceRequest, {
        address: DEMO,
        requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
        hasAddressType: true,
        addressType: 1,
      });
      await expect.poll(() => node.bluetooth.linkAddresses).toEqual([DEMO]);
      return 'y';
    };
    expect(await reapSlots(ctx(run.out), inspector, inspections, { named: [], dryRun: false, yes: false, json: true }, prompter)).toBe(0);
    expect(JSON.parse(run.stdout[0]!)).toMatchObject({ slots: [{ mac: DEMO_MAC, result: 'changed' }] });
    expect(node.bluetooth.linkAddresses).toEqual([DEMO]);
  });
});
