// #region readme
import { ProxyPool, RelayServer, type RelayUpstreamConfig } from 'esphome-ble';
import { MqttGateway } from 'esphome-ble/mqtt';

/**
 * Runs the MQTT gateway beside Home Assistant, on the relay's upstream sessions, until `signal` aborts, e.g.
 * `await relayToMqtt([{ host: '192.168.1.40' }], { host: '127.0.0.1', port: 6053 }, 'mqtt://broker.lan:1883', signal)`.
 */
async function relayToMqtt(
  proxies: RelayUpstreamConfig[],
  listen: { host: string; port: number },
  broker: string,
  signal: AbortSignal,
): Promise<string[]> {
  const seen: string[] = [];
  const relay = new RelayServer({ proxies, listen }); // Home Assistant connects here (see "Relay")
  await relay.start();
  const pool = new ProxyPool(); // or any pool: new ProxyPool(['192.168.1.40', 'kitchen-proxy.local'])
  for (const proxy of relay.proxies) pool.addSession(proxy); // no second subscription for MQTT
  const gateway = new MqttGateway({
    pool,
    broker, // e.g. 'mqtt://broker.lan:1883' or { url: 'mqtts://…', username, password, ca }; omitted: embedded broker
    name: 'esphome-ble',
    commands: { allowRead: ['*'] }, // writes only by MAC: allowWrite: ['AA:BB:CC:DD:EE:FF']
    advertisements: { interval: 1_000, presence: true },
    discovery: true,
  });
  try {
    await gateway.start({ timeout: 10_000 });
    for await (const event of gateway.status({ signal })) seen.push(event.type); // brokerConnected, command, stats, …
  } finally {
    await gateway.close();
    await pool.close();
    await relay.close();
  }
  return seen;
}

// #endregion readme

export { relayToMqtt };
