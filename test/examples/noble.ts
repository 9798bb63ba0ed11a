// #region readme
import type { Noble, Peripheral } from '@stoprocent/noble';
import { ProxyPool } from 'esphome-ble';
import { createNoble } from 'esphome-ble/noble';

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

/** The same code with ESPHome proxies as its radios, e.g. `await readViaProxies(['192.168.1.40'], '180f')`. */
async function readViaProxies(proxies: string[], service: string): Promise<string> {
  const pool = new ProxyPool(proxies);
  try {
    return await readDeviceName(createNoble(pool), service);
  } finally {
    await pool.close();
  }
}

// #endregion readme

export { readViaProxies };
