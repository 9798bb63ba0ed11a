// #region readme
import type { LinkClosed, PooledConnection, ProxyPool } from 'esphome-ble';

/** Connects, and logs it when the device drops the link (not when you disconnect it yourself). */
async function connectWatched(pool: ProxyPool, mac: string): Promise<PooledConnection> {
  return pool.establishConnection(mac, {
    disconnectedCallback: (lost: PooledConnection, info: LinkClosed) => {
      console.log(`${lost.mac} dropped the link: ${info.reasonName} (${info.reason})`);
      // e.g. schedule a reconnect here
    },
  });
}

// #endregion readme

export { connectWatched };
