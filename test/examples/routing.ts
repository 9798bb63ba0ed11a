// #region readme
import { GattCache, ProxyPool } from 'esphome-ble';

/** Pins a device to a proxy with fallback, pairs it there (the bond is remembered) and prints each routing decision. */
async function pinAndPair(proxies: string[], mac: string, pinned: string, cacheFile: string): Promise<string[]> {
  const cache = new GattCache({ file: cacheFile }); // services, MTUs and bonds survive restarts
  await cache.load();
  // The pinned proxy goes first whenever it can take the connect; the others are the fallback.
  const pool = new ProxyPool(proxies, { cache, routes: { [mac]: { prefer: [pinned] } } }); // pinned: id, node name, host or MAC
  try {
    const device = await pool.establishConnection(mac);
    for (const decision of device.timeline.flatMap((attempt) => attempt.route)) console.log(`${decision.kind}: ${decision.detail}`);
    await device.pair(); // the bond lives in this proxy's controller: from now on the device connects here first
    await device.disconnect();
    return pool.route(mac).decisions.map((d) => d.kind); // what the next connect would do, as explain shows it
  } finally {
    await pool.close();
  }
}

// #endregion readme

export { pinAndPair };
