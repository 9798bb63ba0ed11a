import { describe, expect, it } from 'vitest';
import { runCliProcess } from '../helpers/cli.js';

describe('cli demo', () => {
  it('cli demo - runs end to end on loopback and exits 0, showing the failover and the cached reconnect', async () => {
    const started = Date.now();
    const result = await runCliProcess(['demo'], { timeoutMs: 14_000 });
    const elapsed = Date.now() - started;
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    const out = result.stdout;
    // Discovery over loopback mDNS found the whole fleet, the Noise one included.
    expect(out).toContain('found 4 proxies: garage, kitchen, living-room, office (noise)');
    expect(out).toMatch(/kitchen\s+127\.0\.0\.1:\d+\s+2026\.8\.0\s+0\/3 FULL/);
    // explain: the closest proxy is skipped for lack of slots.
    expect(out).toMatch(/kitchen .*no: no free slot/);
    expect(out).toContain('Connect via living-room');
    // The refused attempt and the failover in the timeline.
    expect(out).toMatch(/attempt 1\s+living-room .*refused .*0x100 ESP_GATT_CONN_CONN_CANCEL/);
    expect(out).toMatch(/attempt 2\s+office .*connected/);
    expect(out).toContain('failover: living-room refused, connected via office (Noise) after 2 attempts');
    // GATT through the pooled connection.
    expect(out).toContain('read   status   "hello from esphome-ble"');
    expect(out).toMatch(/notify counter {2}(\S+ ){3} \(3 notifications/);
    // The cached reconnect skipped service discovery.
    expect(out).toContain('fromCache: false (3 services discovered with 1 GetServices request');
    expect(out).toMatch(/connected via office in \d+ ms, fromCache: true \(0 GetServices requests\)/);
    // The fleet on the embedded MQTT broker: an advertisement in OpenMQTTGateway's shape and a read over MQTT.
    expect(out).toMatch(/home\/esphome-ble-demo\/BTtoMQTT\/C0FFEE000001\n {4}\{"id":"C0:FF:EE:00:00:01","mac_type":1,/);
    expect(out).toContain('"read":"hello from esphome-ble","success":true');
    expect(out).toMatch(/MQTT: \d+ advertisements published and a GATT read answered over the embedded broker/);
    expect(out).toContain('everything closed');
    // Not a TTY: no spinner frames or colour codes.
    expect(result.stderr).toBe('');
    expect(out).not.toContain('\u001b[');
    expect(elapsed).toBeLessThan(14_000);
  });

  it('cli demo - rejects arguments and a bad --mdns-port with exit 2', async () => {
    const [extra, badPort, help] = await Promise.all([
      runCliProcess(['demo', 'now']),
      runCliProcess(['demo', '--mdns-port', '53']),
      runCliProcess(['demo', '--help']),
    ]);
    expect(extra.code).toBe(2);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toContain('--mdns-port');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: esphome-ble demo');
    expect(help.stdout).toContain('loopback');
  });
});
