// Entry of a simulated Matter device's own process (matter.js keeps one BLE layer and one default environment per
// process). Spawned by MatterDevice with its MatterDeviceConfig as argv[2] and an `advanced` IPC channel.

import { prepareMatterEnvironment } from './matter-environment.js';
import type { FromDevice, MatterDeviceConfig, ToDevice } from './matter-ipc.js';

/** How long a stop may take before the process exits anyway (the parent kills it at 5 s, if it is still there). */
const STOP_GRACE_MS = 3_000;

type RunningDevice = Awaited<ReturnType<typeof import('./matter-device-node.js').runMatterDevice>>;

let device: RunningDevice | undefined;
let stopping = false;
const pending: ToDevice[] = [];

const send = (message: FromDevice, then?: () => void): void => {
  // With a callback a send that races the parent's exit fails quietly instead of crashing on an 'error' event.
  if (process.connected) process.send?.(message, undefined, {}, () => then?.());
  else then?.();
};

/**
 * Stops the device and exits, once. Asked by the parent, or because the parent went away (then nobody is left to
 * stop us). While matter.js is still starting there is nothing to close (storage is in memory): exit at once. A
 * close that hangs cannot keep the process alive either.
 */
function shutdown(code: number): void {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(code), STOP_GRACE_MS).unref();
  if (device === undefined) process.exit(code);
  void device
    .stop()
    .catch(() => undefined)
    .finally(() => process.exit(code));
}

process.on('message', (message: ToDevice) => {
  if (message.type === 'stop') shutdown(0);
  else if (device === undefined) pending.push(message);
  else device.receive(message);
});
process.on('disconnect', () => shutdown(0));

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as MatterDeviceConfig;
  await prepareMatterEnvironment({ mdnsPort: config.mdnsPort, mac: config.mac, logLevel: config.logLevel });
  // Loaded after the environment is prepared: its static imports start matter.js.
  const { runMatterDevice } = await import('./matter-device-node.js');
  device = await runMatterDevice(config, { send });
  for (const message of pending.splice(0)) device.receive(message);
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: error instanceof Error ? (error.stack ?? error.message) : String(error) }, () => shutdown(1));
});
