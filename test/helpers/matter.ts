import { createSocket } from 'node:dgram';
import { afterEach, beforeAll } from 'vitest';
import type { MatterDevice } from '../../src/fixture-server/matter/matter-device.js';
import { prepareMatterEnvironment } from '../../src/fixture-server/matter/matter-environment.js';
import type { MatterDeviceEvent } from '../../src/fixture-server/matter/matter-ipc.js';
import type { SimulatedPeripheral } from '../../src/fixture-server/simulated-peripheral.js';
import { commandLines } from './processes.js';

/** A UDP port free right now on 127.0.0.1 (for a test's own mDNS port: runs in parallel must not hear each other). */
export async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/**
 * Prepares matter.js in this test process for a controller on loopback (see prepareMatterEnvironment) and
 * returns what a test needs to shut its environment down: matter.js's mDNS service lives in the process-wide
 * environment, outlives `controller.close()`, and holds sockets and a 30 s discovery timer.
 */
export async function prepareMatterController(mdnsPort: number): Promise<{ closeMdns(): Promise<void> }> {
  await prepareMatterEnvironment({ mdnsPort, logLevel: process.env.ESPHOME_BLE_MATTER_LOG ?? 'error' });
  const { Environment } = await import('@matter/main');
  const { MdnsService } = await import('@matter/main/protocol');
  // The rest of what a controller loads, so no module initialiser runs inside a test.
  await Promise.all([import('@matter/nodejs-ble'), import('@project-chip/matter.js'), import('@matter/main/clusters/on-off')]);
  return {
    async closeMdns() {
      if (Environment.default.has(MdnsService)) await Environment.default.get(MdnsService)[Symbol.asyncDispose]();
    },
  };
}

/**
 * The test file's matter.js controller on loopback: prepared once before its tests (prepareMatterController, on a
 * private mDNS port read from `mdnsPort` once they run), its process-wide mDNS closed after each test. Call it after
 * useClosers(), so the mDNS goes first.
 */
export function useMatterController(): { readonly mdnsPort: number } {
  const state = { mdnsPort: 0 };
  let matter: { closeMdns(): Promise<void> } | undefined;
  beforeAll(async () => {
    state.mdnsPort = await freeUdpPort();
    matter = await prepareMatterController(state.mdnsPort);
  }, 30_000);
  afterEach(async () => {
    await matter?.closeMdns();
  });
  return state;
}

/** Value handles of the Matter service in fixtures/profiles/matter.json: C1 (write), C2 (indicate) and its CCCD. */
export const MATTER_HANDLES = { c1: 18, c2: 20, c2Cccd: 21 } as const;

/** BTP handshake request (Core spec 4.19.4.3): flags H|M|E|B, opcode 0x6c, versions {4}, ATT MTU 247, window 6. */
export const BTP_HANDSHAKE_REQUEST = Uint8Array.of(0x65, 0x6c, 0x04, 0x00, 0x00, 0x00, 0xf7, 0x00, 0x06);

/** The device's next event of `type` (rejects after `timeoutMs`, so a test fails instead of hanging). */
export function nextEvent<T extends MatterDeviceEvent['type']>(
  device: MatterDevice,
  type: T,
  timeoutMs = 10_000,
): Promise<Extract<MatterDeviceEvent, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event from the Matter device within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = device.onEvent((event) => {
      if (event.type !== type) return;
      off();
      clearTimeout(timer);
      resolve(event as Extract<MatterDeviceEvent, { type: T }>);
    });
  });
}

/** What a commissioner does to open BTP, straight on the simulated peripheral: the handshake on C1, then C2 indications. */
export function requestBtpSession(peripheral: SimulatedPeripheral): void {
  peripheral.write(MATTER_HANDLES.c1, BTP_HANDSHAKE_REQUEST, true);
  peripheral.registerNotify(MATTER_HANDLES.c2, true);
  peripheral.writeDescriptor(MATTER_HANDLES.c2Cccd, Uint8Array.of(0x02, 0x00));
}

/**
 * Feeds the device `count` random C1 writes inside BTP sessions, straight on its peripheral (no proxy: a few
 * hundred sessions in a second or two): connect, open a session, a burst of 1-4 segments, hang up, again.
 * Segments are 30 % short (0-3 bytes: too short to decode), the rest up to a few bytes past the segment size.
 * Resolves once the device has handled all of it.
 */
export async function fuzzBtp(device: MatterDevice, count: number, random: () => number): Promise<{ sessions: number }> {
  const peripheral = device.peripheral;
  let sessions = 0;
  for (let sent = 0; sent < count; sessions++) {
    peripheral.connect();
    const opened = nextEvent(device, 'btpSession');
    requestBtpSession(peripheral);
    await opened;
    const burst = 1 + Math.floor(random() * 4);
    for (let i = 0; i < burst && sent < count; i++, sent++) {
      const length = random() < 0.3 ? Math.floor(random() * 4) : Math.floor(random() * 250);
      peripheral.write(
        MATTER_HANDLES.c1,
        Uint8Array.from({ length }, () => Math.floor(random() * 256)),
        true,
      );
    }
    peripheral.reset(0x16);
  }
  // One clean session last: its event comes after every event the fuzz caused (IPC keeps the order).
  peripheral.connect();
  const opened = nextEvent(device, 'btpSession');
  requestBtpSession(peripheral);
  await opened;
  peripheral.reset(0x16);
  return { sessions };
}

/** Command lines of this machine's processes that run the simulated Matter device with `marker` in their config. */
export function deviceProcesses(marker: string): string[] {
  return commandLines().filter((line) => line.includes('matter-device-child') && line.includes(marker));
}
