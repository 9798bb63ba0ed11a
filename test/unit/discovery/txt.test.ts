import { describe, expect, it } from 'vitest';
import { looksLikeBluetoothProxy, parseProxyTxt, proxyTxtFromRecord } from '../../../src/discovery/txt.js';

const entries = (...lines: string[]): Buffer[] => lines.map((line) => Buffer.from(line, 'utf8'));

describe('txt', () => {
  it('txt - decodes every documented key of a ready-made proxy', () => {
    const txt = parseProxyTxt(
      entries(
        'friendly_name=Kitchen Proxy',
        'version=2026.8.0',
        'mac=a4cf12ab34cd',
        'platform=ESP32',
        'board=esp32dev',
        'network=wifi',
        'api_encryption=Noise_NNpsk0_25519_ChaChaPoly_SHA256',
        'project_name=esphome.bluetooth-proxy',
        'project_version=1.0',
        'package_import_url=github://esphome/bluetooth-proxies/esp32-generic/esp32-generic.yaml@main',
      ),
    );
    expect(txt).toEqual({
      friendlyName: 'Kitchen Proxy',
      version: '2026.8.0',
      mac: 'a4cf12ab34cd',
      platform: 'ESP32',
      board: 'esp32dev',
      network: 'wifi',
      projectName: 'esphome.bluetooth-proxy',
      projectVersion: '1.0',
      packageImportUrl: 'github://esphome/bluetooth-proxies/esp32-generic/esp32-generic.yaml@main',
      encryption: 'required',
      raw: expect.objectContaining({ api_encryption: 'Noise_NNpsk0_25519_ChaChaPoly_SHA256' }),
    });
  });

  it('txt - keeps empty values and bare keys that the decoded txt would lose', () => {
    const txt = parseProxyTxt(entries('friendly_name=', 'flag', 'version=2026.8.0'));
    expect(txt.raw).toEqual({ friendly_name: '', flag: '', version: '2026.8.0' });
    expect(txt.friendlyName).toBe('');
  });

  it('txt - detects encryption from api_encryption and api_encryption_supported', () => {
    expect(parseProxyTxt(entries('api_encryption=Noise_NNpsk0_25519_ChaChaPoly_SHA256')).encryption).toBe('required');
    expect(parseProxyTxt(entries('api_encryption_supported=Noise_NNpsk0_25519_ChaChaPoly_SHA256')).encryption).toBe('supported');
    expect(parseProxyTxt(entries('version=2026.8.0')).encryption).toBe('none');
    expect(parseProxyTxt(entries('api_encryption_supported=x', 'api_encryption=x')).encryption).toBe('required');
  });

  it('txt - normalises the MAC and drops a malformed one', () => {
    expect(parseProxyTxt(entries('mac=A4:CF:12:AB:34:CD')).mac).toBe('a4cf12ab34cd');
    const bad = parseProxyTxt(entries('mac=not-a-mac'));
    expect(bad.mac).toBeUndefined();
    expect(bad.raw.mac).toBe('not-a-mac');
  });

  it('txt - matches keys case-insensitively, first occurrence wins, values keep = and UTF-8', () => {
    const txt = parseProxyTxt([
      ...entries('Version=1', 'version=2', 'project_version=a=b'),
      Buffer.from('friendly_name=Küche 🛰', 'utf8'),
      '=orphan',
    ]);
    expect(txt.version).toBe('1');
    expect(txt.projectVersion).toBe('a=b');
    expect(txt.friendlyName).toBe('Küche 🛰');
    expect(Object.keys(txt.raw)).not.toContain('');
  });

  it('txt - accepts missing input and decoded records', () => {
    expect(parseProxyTxt(undefined)).toEqual({ encryption: 'none', raw: {} });
    expect(proxyTxtFromRecord({ MAC: 'a4cf12ab34cd', api_encryption_supported: '' })).toMatchObject({
      mac: 'a4cf12ab34cd',
      encryption: 'supported',
    });
  });

  it('txt - looksLikeBluetoothProxy recognises only official proxy images', () => {
    expect(looksLikeBluetoothProxy(proxyTxtFromRecord({ project_name: 'esphome.bluetooth-proxy', platform: 'ESP32' }))).toBe(true);
    expect(
      looksLikeBluetoothProxy(
        proxyTxtFromRecord({ package_import_url: 'github://esphome/bluetooth-proxies/m5stack/m5stack-atom-lite.yaml@main' }),
      ),
    ).toBe(true);
    expect(looksLikeBluetoothProxy(proxyTxtFromRecord({ project_name: 'esphome.bluetooth-proxy', platform: 'ESP8266' }))).toBe(false);
    expect(looksLikeBluetoothProxy(proxyTxtFromRecord({ platform: 'ESP32', board: 'esp32dev' }))).toBe(false);
    expect(looksLikeBluetoothProxy(proxyTxtFromRecord({ project_name: 'acme.thermostat' }))).toBe(false);
  });
});
