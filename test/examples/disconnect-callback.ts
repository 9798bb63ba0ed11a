import { type LinkClosed, type PooledConnection, ProxyPool } from 'esphome-ble';

/** README: get told when the device drops the link. */
export async function disconnectCallback(proxies: string[], mac: string, dropLink: () => void): Promise<number> {
  const pool = new ProxyPool(proxies);
  try {
    const { promise: dropped, resolve } = withResolvers<LinkClosed>();
    // #region readme
    const device = await pool.establishConnection(mac, {
      disconnectedCallback: (lost: PooledConnection, info: LinkClosed) => {
        console.log(`${lost.mac} dropped the link: ${info.reasonName} (${info.reason})`);
        resolve(info); // e.g. schedule a reconnect
      },
    });
    // #endregion readme
    void device;
    dropLink();
    return (await dropped).reason;
  } finally {
    await pool.close();
  }
}

function withResolvers<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
