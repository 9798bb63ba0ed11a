import type { Noble, Peripheral } from '@stoprocent/noble';
import { ProxyPool } from 'esphome-ble';
import { createNoble } from 'esphome-ble/noble';

/** README: a noble-based library, unchanged, with ESPHome proxies as its radios. */
export async function nobleExample(proxies: string[], serviceUuid: string): Promise<string> {
  // #region readme
  // Code written for noble, unchanged: find a device by service UUID, connect, read its Device Name.
  async function readDeviceName(noble: Noble, service: string): Promise<string> {
    await noble.waitForPoweredOnAsync();
    const found = new Promise<Peripheral>((resolve) => noble.once('discover', resolve));
    await noble.startScanningAsync([service], false);
    const peripheral = await found;
    await noble.stopScanningAsync();
    await peripheral.connectAsync(); // through the proxy that hears it best and has a free slot
    const { characteristics } = await peripheral.discoverSomeServicesAndCharacteristicsAsync([], ['2a00']);
    const name = (await characteristics[0]!.readAsync()).toString();
    await peripheral.disconnectAsync();
    return name;
  }

  const pool = new ProxyPool(proxies); // e.g. ['192.168.1.40', 'kitchen-proxy.local:6053']
  try {
    return await readDeviceName(createNoble(pool), serviceUuid);
  } finally {
    await pool.close();
  }
  // #endregion readme
}
