// #region readme
import { ProxyPool, RelayServer, type RelayUpstreamConfig } from 'esphome-ble';

/**
 * Serves the proxies to Home Assistant and other clients, and reads a device's name in this process too, e.g.
 * `await serveAndRead([{ host: '192.168.1.40', psk: '…' }], { host: '127.0.0.1', port: 6053 }, 'AA:BB:CC:DD:EE:FF')`.
 */
async function serveAndRead(proxies: RelayUpstreamConfig[], listen: { host: string; port: number }, mac: string): Promise<string> {
  const relay = new RelayServer({ proxies, listen });
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
}

// #endregion readme

export { serveAndRead };
