import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, SecretSourceError } from '../../../src/errors.js';
import { loadGatewayConfig, parseGatewayConfig } from '../../../src/mqtt/gateway-config.js';

describe('mqtt gateway config', () => {
  it('gateway config - a full file decodes, secrets and PEM files are read, unknown keys are named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'esphome-ble-mqtt-config-'));
    try {
      writeFileSync(join(dir, 'pass'), 'hunter22\n');
      writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\n');
      const path = join(dir, 'mqtt.json');
      writeFileSync(
        path,
        JSON.stringify({
          name: 'upstairs',
          baseTopic: 'home',
          broker: { url: 'mqtts://broker.lan:8883', username: 'gw', passwordFile: join(dir, 'pass'), caFile: join(dir, 'ca.pem') },
          allowRead: ['*'],
          allowWrite: ['AA:BB:CC:DD:EE:FF'],
          advertisements: { interval: 5000, changesOnly: true, presence: true },
          commands: { ratePerSecond: 1 },
          discovery: { prefix: 'ha' },
        }),
      );
      const config = await loadGatewayConfig(path);
      expect(config).toMatchObject({
        name: 'upstairs',
        broker: { url: 'mqtts://broker.lan:8883', username: 'gw', password: 'hunter22', ca: '-----BEGIN CERTIFICATE-----\n' },
        commands: { ratePerSecond: 1, allowRead: ['*'], allowWrite: ['AA:BB:CC:DD:EE:FF'] },
        advertisements: { interval: 5000, changesOnly: true, presence: true },
        discovery: { prefix: 'ha' },
      });
      await expect(parseGatewayConfig({ brokr: {} }, 'f.json')).rejects.toThrow('f.json: brokr: unknown key');
      await expect(parseGatewayConfig({ advertisements: { presence: 'yes' } })).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(parseGatewayConfig({ broker: { url: 'mqtt://x', passwordFile: join(dir, 'missing') } })).rejects.toBeInstanceOf(
        SecretSourceError,
      );
      await expect(loadGatewayConfig(join(dir, 'nope.json'))).rejects.toThrow('ENOENT');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
