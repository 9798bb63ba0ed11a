// Entry of a simulated Matter device's own process (matter.js keeps one BLE layer and one default environment per
// process). Spawned by MatterDevice with its MatterDeviceConfig as argv[2] and an `advanced` IPC channel.

import { prepareMatterEnvironment } from './matter-environment.js';
import type { FromDevice, MatterDeviceConfig, ToDevice } from './matter-ipc.js';

const send = (message: FromDevice): void => {
  // With a callback a send that races the parent's exit fails quietly instead of crashing on an 'error' event.
  if (process.connected) process.send?.(message, undefined, {}, () => undefined);
};

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as MatterDeviceConfig;
  await prepareMatterEnvironment({ mdnsPort: config.mdnsPort, mac: config.mac, logLevel: config.logLevel });
  // Loaded after the environment is prepared: its static imports start matter.js.
  const { runMatterDevice } = await import('./matter-device-node.js');
  const pending: ToDevice[] = [];
  let device: Awaited<ReturnType<typeof runMatterDevice>> | undefined;
  const stop = async (): Promise<void> => {
    await device?.stop();
    process.disconnect?.();
  };
  process.on('message', (message: ToDevice) => {
    if (message.type === 'stop') void stop();
    else if (device === undefined) pending.push(message);
    else device.receive(message);
  });
  // The parent went away: nobody is left to stop us.
  process.on('disconnect', () => void device?.stop().finally(() => process.exit(0)));
  device = await runMatterDevice(config, { send });
  for (const message of pending.splice(0)) device.receive(message);
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  process.exitCode = 1;
  process.disconnect?.();
});
