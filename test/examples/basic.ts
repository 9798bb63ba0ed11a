import { ProxyPool } from 'esphome-ble';

/** README: connect through the best proxy and read a characteristic. */
export async function basic(proxies: string[], mac: string): Promise<string> {
  // #region readme
  const pool = new ProxyPool(proxies); // e.g. ['192.168.1.40', 'kitchen-proxy.local:6053']
  try {
    const device = await pool.establishConnection(mac, { name: 'Thermometer' });
    const name = new TextDecoder().decode(await device.read('2a00')); // Device Name
    console.log(`connected via ${device.proxy}: ${name}`);
    await device.disconnect();
    return name;
  } finally {
    await pool.close();
  }
  // #endregion readme
}
