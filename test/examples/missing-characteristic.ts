// #region readme
import type { ProxyPool } from 'esphome-ble';

/** Connects to a device that must have a Device Name characteristic; true when its table came from the cache. */
async function connectWithName(pool: ProxyPool, mac: string): Promise<boolean> {
  // If a cached service table lacks a required characteristic, the pool clears the cache
  // (ours and the proxy's) and reconnects once without it.
  const device = await pool.establishConnection(mac, { requiredCharacteristics: ['2a00'] });
  const fromCache = device.fromCache;
  // Or by hand, e.g. after a firmware update of the device:
  await device.clearCache();
  await device.disconnect();
  return fromCache;
}

// #endregion readme

export { connectWithName };
