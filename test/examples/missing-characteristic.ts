import { ProxyPool } from 'esphome-ble';

/** README: the GATT cache is used automatically; name what you need and a stale cache heals itself. */
export async function missingCharacteristic(proxies: string[], mac: string): Promise<boolean> {
  const pool = new ProxyPool(proxies);
  try {
    // #region readme
    // If a cached service table lacks a required characteristic, the pool clears the cache
    // (ours and the proxy's) and reconnects once without it.
    const device = await pool.establishConnection(mac, { requiredCharacteristics: ['2a00'] });
    const fromCache = device.fromCache;
    // Or by hand, e.g. after a firmware update of the device:
    await device.clearCache();
    await device.disconnect();
    // #endregion readme
    return fromCache;
  } finally {
    await pool.close();
  }
}
