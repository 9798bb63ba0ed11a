import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MqttBrokerError } from '../../src/errors.js';
import { MqttGateway } from '../../src/mqtt/mqtt-gateway.js';
import { ProxyPool } from '../../src/pool/proxy-pool.js';
import { useClosers } from '../helpers/closers.js';
import { profileWithDevices, startTestFleet } from '../helpers/fleet.js';
import { freePort, Mosquitto, requireTools, run } from '../helpers/mosquitto.js';
import { TestClient } from '../helpers/mqtt.js';

/** Mosquitto serves TLS; the test makes its certificates with the openssl CLI. */
const TOOLS = requireTools(['mosquitto', 'openssl']);
const closers = useClosers();

let dir = '';
let broker: Mosquitto | undefined;
const pem = (name: string): string => readFileSync(join(dir, name), 'utf8');

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI. */
async function makeCertificates(): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'esphome-ble-tls-'));
  chmodSync(dir, 0o755);
  const ssl = (...args: string[]) => run('openssl', args);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await ssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    join(dir, 'ca.key'),
    '-out',
    join(dir, 'ca.crt'),
    '-days',
    '2',
    '-subj',
    '/CN=esphome-ble test CA',
  );
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const [name, cn, ext] of [
    ['server', '127.0.0.1', true],
    ['client', 'gateway', false],
  ] as const) {
    await ssl('req', ...ec, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`), '-subj', `/CN=${cn}`);
    await ssl(
      'x509',
      '-req',
      '-in',
      join(dir, `${name}.csr`),
      '-CA',
      join(dir, 'ca.crt'),
      '-CAkey',
      join(dir, 'ca.key'),
      '-CAcreateserial',
      '-out',
      join(dir, `${name}.crt`),
      '-days',
      '2',
      ...(ext ? ['-extfile', join(dir, 'server.ext')] : []),
    );
  }
  // Mosquitto reads its key after dropping root.
  for (const file of readdirSync(dir)) chmodSync(join(dir, file), 0o644);
}

beforeAll(async () => {
  if (TOOLS.skip) return;
  await makeCertificates();
  broker = await Mosquitto.start({
    port: await freePort(),
    tls: { ca: join(dir, 'ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), requireCertificate: true },
  });
}, 30_000);

afterAll(async () => {
  await broker?.close();
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(TOOLS.skip /* waits for the tools TOOLS names (apt-get install mosquitto mosquitto-clients openssl) */)(
  `mqtt gateway over TLS${TOOLS.label}`,
  () => {
    async function pool(): Promise<ProxyPool> {
      const fleet = await startTestFleet(1, await profileWithDevices(0));
      closers.push(() => fleet.close());
      const p = new ProxyPool(fleet.nodes.map((n) => ({ host: '127.0.0.1', port: n.server.address.port, name: n.server.name })));
      closers.push(() => p.close());
      return p;
    }

    it('mqtt tls - mqtts:// with our CA and a client certificate: the gateway is online and publishes', async () => {
      const url = `mqtts://127.0.0.1:${broker!.port}`;
      const gateway = new MqttGateway({
        pool: await pool(),
        name: 'tls',
        broker: { url, ca: pem('ca.crt'), cert: pem('client.crt'), key: pem('client.key') },
      });
      closers.push(() => gateway.close());
      await gateway.start({ timeout: 5_000 });
      const client = await TestClient.connect(url, ['home/tls/#'], { ca: pem('ca.crt'), cert: pem('client.crt'), key: pem('client.key') });
      closers.push(() => client.close());
      expect((await client.next((m) => m.topic === 'home/tls/LWT')).text).toBe('online');
      await client.next((m) => m.topic === 'home/tls/BTtoMQTT/C0FFEE000001', 3_000);
    });

    it('mqtt tls - a broker certificate from an unknown CA is refused: start fails naming the certificate problem', async () => {
      const gateway = new MqttGateway({
        pool: await pool(),
        name: 'tls-untrusted',
        broker: {
          url: `mqtts://127.0.0.1:${broker!.port}`,
          cert: pem('client.crt'),
          key: pem('client.key'),
          backoff: { initialDelay: 100 },
        },
      });
      closers.push(() => gateway.close());
      const error = await gateway.start({ timeout: 1_500 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MqttBrokerError);
      expect(String((error as Error).message)).toMatch(/certificate/i);
    });
  },
);
