import { type PooledConnection, ProxyPool } from 'esphome-ble';

/** README: get told when the device drops the link. */
export async function disconnectCallback(proxies: string[], mac: string, dropLink: () => void): Promise<number> {
  const pool = new ProxyPool(proxies);
  try {
    // #region readme
    const dropped = new Promise<number>((resolve) => {
      void pool
        .establishConnection(mac, {
          disconnectedCallback: (device: PooledConnection, info) => {
            console.log(`${device.mac} disconnected: ${info.reasonName} (${info.reason})`);
            resolve(info.reason);
          },
        })
        .then(() => dropLink());
    });
    // #endregion readme
    return await dropped;
  } finally {
    await pool.close();
  }
}
