// #region readme
import { ProxyPool } from 'esphome-ble';

/** Reads a device's name, e.g. `await readName(['192.168.1.40', 'kitchen-proxy.local:6053'], 'AA:BB:CC:DD:EE:FF')`. */
async function readName(proxies: string[], mac: string): Promise<string> {
  const pool = new ProxyPool(proxies);
  try {
    const device = await pool.establishConnection(mac, { name: 'Thermometer' });
    const name = new TextDecoder().decode(await device.read('2a00')); // Device Name
    console.log(`connected via ${device.proxy}: ${name}`);
    await device.disconnect();
    return name;
  } finally {
    await pool.close();
  }
}

// #endregion readme

export { readName };
