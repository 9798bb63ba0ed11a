import { ProxyPool, RelayServer, type RelayUpstreamConfig } from 'esphome-ble';

/** README: serve proxies to Home Assistant through the relay, and use them from this process too. */
export async function relay(proxies: RelayUpstreamConfig[], listen: { host: string; port: number }, mac: string): Promise<string> {
  // #region readme
  const relay = new RelayServer({ proxies, listen }); // e.g. [{ host: '192.168.1.40', psk: '…' }], { host: '0.0.0.0', port: 6053 }
  try {
    for (const l of await relay.start()) console.log(`${l.name} (${l.mac}) is served on ${l.host}:${l.port}`);
    // This process uses the same proxies over the relay's own sessions: no second subscription, no loopback hop.
    const pool = new ProxyPool();
    for (const proxy of relay.proxies) pool.addSession(proxy);
    try {
      const device = await pool.establishConnection(mac);
      const name = new TextDecoder().decode(await device.read('2a00'));
      await device.disconnect();
      return name;
    } finally {
      await pool.close();
    }
  } finally {
    await relay.close();
  }
  // #endregion readme
}
