import { afterEach, describe, expect, it } from 'vitest';
import { type SimulatedNode, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { MATTER_UUIDS } from '../../src/fixture-server/matter/matter-peers.js';
import type { LinkEvent } from '../../src/fixture-server/simulated-peripheral.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { SKIP_WITHOUT_IPV6_LOOPBACK } from '../helpers/ipv6-loopback.js';
import { freeUdpPort, BTP_HANDSHAKE_REQUEST as HANDSHAKE_REQUEST, nextEvent, requestBtpSession } from '../helpers/matter.js';

const MATTER_MAC = 'C4:4D:A7:00:0F:00';
/** The device's handshake response to HANDSHAKE_REQUEST at MTU 247: version 4, segment size 244, window 6. */
const HANDSHAKE_RESPONSE = '656c04f40006';

let node: SimulatedNode | undefined;
let pool: ProxyPool | undefined;

afterEach(async () => {
  await pool?.close();
  await node?.server.close();
  pool = undefined;
  node = undefined;
});

async function start(): Promise<{ node: SimulatedNode; pool: ProxyPool }> {
  node = await startSimulatedProxy({ profile: 'matter', matter: { mdnsPort: await freeUdpPort() } });
  pool = new ProxyPool([`127.0.0.1:${node.server.address.port}`]);
  return { node, pool };
}

describe.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)('matter - the simulated device at the GATT level (waits for IPv6 loopback ::1)', () => {
  it("matter - advertises matter.js's own bytes and answers a BTP handshake on C2 with the segment size the MTU allows", async () => {
    const { node, pool } = await start();
    const device = node.matter[0]!;
    // Flags + service data 0xFFF6: opcode 0, discriminator 3840, vendor 0xFFF1, product 0x8000, no extra data.
    await expect.poll(() => device.peripheral.advertisingEnabled).toBe(true);
    expect(Buffer.from(device.peripheral.advertisements[0]!).toString('hex')).toBe('0201060b16f6ff00000ff1ff008000');
    const link = await pool.establishConnection(MATTER_MAC, { timeout: 10_000 });
    expect(link.mtu).toBe(247);
    expect([...(await link.read(MATTER_UUIDS.c3))]).toEqual([]);
    // BTP's order (Core spec 4.19.4.2): the handshake request on C1 first, then the subscription to C2 it answers on.
    await link.write(MATTER_UUIDS.c1, HANDSHAKE_REQUEST);
    const indications = await link.notifications(MATTER_UUIDS.c2);
    const response = (await indications.next()).value!;
    // flags, opcode, version 4, segment size 244 (MTU 247 - 3), window 6 (the client's, within the device's 255).
    expect(Buffer.from(response).toString('hex')).toBe(HANDSHAKE_RESPONSE);
    await expect.poll(() => device.events).toContainEqual({ type: 'btpSession', attMtu: 244 });
    await indications.return?.();
    await link.disconnect();
  }, 30_000);

  it('matter - a C2 subscription without a handshake makes the device end the link', async () => {
    const { pool } = await start();
    const link = await pool.establishConnection(MATTER_MAC, { timeout: 10_000 });
    const closed = link.closed();
    await link.startNotify(MATTER_UUIDS.c2, () => {}).catch(() => {});
    expect(await closed).toMatchObject({ reason: 0x13 });
    expect(node!.matter[0]!.events).toContainEqual({ type: 'btpError', message: 'C2 subscription without a BTP handshake request' });
  }, 30_000);

  it('matter - BTP data without a handshake makes the device end the link', async () => {
    const { node, pool } = await start();
    const link = await pool.establishConnection(MATTER_MAC, { timeout: 10_000 });
    const closed = link.closed();
    await link.write(MATTER_UUIDS.c1, Uint8Array.of(0x05, 0x00, 0x01, 0x00));
    expect(await closed).toMatchObject({ reason: 0x13 });
    expect(node.matter[0]!.events).toContainEqual({ type: 'btpError', message: 'BTP data before a BTP session was established' });
    expect(node.matter[0]!.pid).toEqual(expect.any(Number));
  }, 30_000);

  it('matter - a segment too short for BTP to decode ends the link with btpError, and the device lives on', async () => {
    const { node, pool } = await start();
    const device = node.matter[0]!;
    const pid = device.pid;
    const segments = [Uint8Array.of(0x00), new Uint8Array(0), Uint8Array.of(0x05)];
    for (const [i, segment] of segments.entries()) {
      const link = await pool.establishConnection(MATTER_MAC, { timeout: 10_000 });
      const closed = link.closed();
      await link.write(MATTER_UUIDS.c1, HANDSHAKE_REQUEST);
      const indications = await link.notifications(MATTER_UUIDS.c2);
      await indications.next();
      // matter.js's BTP handler rethrows what is not its own protocol error (here a RangeError from its reader).
      await link.write(MATTER_UUIDS.c1, segment).catch(() => {});
      expect(await closed).toMatchObject({ reason: 0x13 });
      // The event follows the hang-up on the IPC channel.
      await expect.poll(() => device.events.filter((e) => e.type === 'btpError').length).toBe(i + 1);
      await indications.return?.();
    }
    expect(device.pid).toBe(pid);
    expect(device.events.filter((e) => e.type === 'exited')).toEqual([]);
  }, 30_000);

  it('matter - a link that ends while or after its BTP session opens cannot end or feed the next link', async () => {
    const { node } = await start();
    const device = node.matter[0]!;
    const peripheral = device.peripheral;
    const links: LinkEvent[] = [];
    peripheral.onLink((event) => links.push(event));
    const indicated: string[] = [];
    peripheral.onNotify((_handle, data) => indicated.push(Buffer.from(data).toString('hex')));
    // Straight on the simulator, so nothing waits between the steps: a commissioner subscribes, hangs up at once
    // and comes back. Link 1's handshake response is still on its way when link 2 asks for its own.
    peripheral.connect();
    requestBtpSession(peripheral);
    peripheral.reset(0x16);
    peripheral.connect();
    let opened = nextEvent(device, 'btpSession');
    requestBtpSession(peripheral);
    await opened;
    expect(indicated).toEqual([HANDSHAKE_RESPONSE]);
    // An open session whose link ends: its close must not end the link that follows.
    peripheral.reset(0x16);
    peripheral.connect();
    opened = nextEvent(device, 'btpSession');
    requestBtpSession(peripheral);
    await opened;
    expect(peripheral.state).toBe('connected');
    expect(links).toEqual([
      { type: 'connected', mtu: 247 },
      { type: 'disconnected', reason: 0x16 },
      { type: 'connected', mtu: 247 },
      { type: 'disconnected', reason: 0x16 },
      { type: 'connected', mtu: 247 },
    ]);
    expect(device.events.filter((e) => e.type === 'btpError')).toEqual([]);
    peripheral.reset(0x16);
  }, 30_000);

  it('matter - a device process that dies takes its peripheral off the air and drops its link', async () => {
    const { node, pool } = await start();
    const device = node.matter[0]!;
    const link = await pool.establishConnection(MATTER_MAC, { timeout: 10_000 });
    const closed = link.closed();
    process.kill(device.pid!, 'SIGKILL');
    expect(await closed).toMatchObject({ reason: 0x08 });
    await expect.poll(() => device.events.at(-1)).toEqual({ type: 'exited', code: null, signal: 'SIGKILL' });
    expect(device.peripheral.advertisingEnabled).toBe(false);
    expect(device.pid).toBeUndefined();
  }, 30_000);
});
