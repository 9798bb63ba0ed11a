import { createSocket } from 'node:dgram';
import { prepareMatterEnvironment } from '../../src/fixture-server/matter/matter-environment.js';

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
