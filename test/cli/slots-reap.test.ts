import { afterEach, describe, expect, it } from 'vitest';
import type { Output } from '../../src/cli/output.js';
import type { Prompter } from '../../src/cli/real-home.js';
import { reapSlots } from '../../src/cli/slots-reap.js';
import type { ApiConnection } from '../../src/connection/connection.js';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { BluetoothDeviceConnectionResponse, BluetoothDeviceRequest, BluetoothDeviceRequestType } from '../../src/gen/api_pb.js';
import { ProxyInspector } from '../../src/inspect/proxy-inspector.js';
import { HOLD_EVIDENCE_MS } from '../../src/inspect/subscriber-verdict.js';
import { subscribeAsOther } from '../helpers/fleet.js';

const DEMO = 0xc0ffee000001;

const nodes: SimulatedNode[] = [];
const apis: ApiConnection[] = [];
const inspectors: ProxyInspector[] = [];

afterEach(async () => {
  for (const inspector of inspectors.splice(0)) await inspector.close();
  for (const api of apis.splice(0)) api.destroy();
  for (const node of nodes.splice(0)) await node.server.close();
});

/** Two proxies whose other client (Home Assistant) holds a link to the same device on each: a ghost on one of them. */
async function ghosts(): Promise<{ nodes: SimulatedNode[]; inspector: ProxyInspector }> {
  for (const name of ['ghost-a', 'ghost-b']) {
    const node = await startSimulatedProxy({ name });
    nodes.push(node);
    const ha = await subscribeAsOther(node);
    apis.push(ha);
    await ha.request(
      BluetoothDeviceRequest,
      { address: DEMO, requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE, hasAddressType: true, addressType: 1 },
      BluetoothDeviceConnectionResponse,
      (m) => m.address === DEMO && m.connected,
      { timeout: 3000 },
    );
  }
  const inspector = new ProxyInspector(nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })));
  inspectors.push(inspector);
  await inspector.ready({ timeout: 3000 });
  return { nodes, inspector };
}

function capture(): { out: Output; lines: string[] } {
  const lines: string[] = [];
  return {
    out: { isTty: false, line: (t = '') => lines.push(t), error: (t) => lines.push(t), json: (v) => lines.push(JSON.stringify(v)) },
    lines,
  };
}

describe('slots reap', () => {
  it('slots reap - on a terminal the plan is shown, then a yes releases the duplicates and a no keeps them', async () => {
    const {
      nodes: [a, b],
      inspector,
    } = await ghosts();
    await inspector.poll();
    await new Promise((resolve) => setTimeout(resolve, HOLD_EVIDENCE_MS));
    const inspections = await inspector.poll();
    const questions: string[] = [];
    const say =
      (answer: string): Prompter =>
      async (question) => {
        questions.push(question);
        return answer;
      };
    const request = { named: [], dryRun: false, yes: false, json: false };
    const no = capture();
    expect(await reapSlots({ out: no.out, signal: new AbortController().signal }, inspector, inspections, request, say('n'))).toBe(0);
    expect(no.lines.join('\n')).toMatch(/ghost-a\s+C0:FF:EE:00:00:01\s+\d+(\.\d)?s\s+another client\s+duplicate\s+would release/);
    expect(no.lines.at(-1)).toBe('Nothing released.');
    expect(a!.bluetooth.linkAddresses).toEqual([DEMO]);
    expect(questions).toEqual(['Release 2 slots that look orphaned (this ends whatever link holds them)? [y/N] ']);
    const yes = capture();
    expect(await reapSlots({ out: yes.out, signal: new AbortController().signal }, inspector, inspections, request, say('yes'))).toBe(0);
    expect(yes.lines.join('\n')).toContain('2 released');
    expect(a!.bluetooth.linkAddresses).toEqual([]);
    expect(b!.bluetooth.linkAddresses).toEqual([]);
  });
});
