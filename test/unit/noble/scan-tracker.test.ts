import { describe, expect, it } from 'vitest';
import { parseRawAdvertisement } from '../../../src/bluetooth/advertisement.js';
import {
  BEST_PROXY_MIN_STALE_MS,
  MAX_TRACKED_DEVICES,
  SCAN_RESPONSE_TIMEOUT_MS,
  ScanTracker,
  type TrackedDevice,
} from '../../../src/noble/scan-tracker.js';

const ADDRESS = 0xaabbccddeeff;
const NAME = Buffer.from('0409616263', 'hex');
const UUID = Buffer.from('0303d2fc', 'hex');

function ad(rssi: number, at: number, bytes: Uint8Array = NAME, address = ADDRESS) {
  return parseRawAdvertisement(address, rssi, 1, bytes, at);
}

describe('noble/scan-tracker', () => {
  it('scan tracker - reports a device only from its best proxy, switching with hysteresis or when the best goes silent', () => {
    const tracker = new ScanTracker();
    tracker.start([], true);
    expect(tracker.ingest(ad(-70, 0), 'a')?.rssi).toBe(-70);
    // b is better but not by more than the hysteresis yet (smoothing starts at its first sample).
    expect(tracker.ingest(ad(-68, 10), 'b')).toBeUndefined();
    expect(tracker.ingest(ad(-70, 100), 'a')?.rssi).toBe(-70);
    // 15 dB better: b takes over.
    expect(tracker.ingest(ad(-55, 110), 'b')?.rssi).toBe(-55);
    expect(tracker.ingest(ad(-70, 200), 'a')).toBeUndefined();
    // b goes silent: after the stale time a reports again.
    expect(tracker.ingest(ad(-70, 110 + BEST_PROXY_MIN_STALE_MS + 1), 'a')?.rssi).toBe(-70);
    expect(tracker.get(ADDRESS)?.best).toBe('a');
  });

  it('scan tracker - holds a connectable device’s first report (noble waits for its scan response), dedupes per scan', () => {
    const tracker = new ScanTracker({ canConnect: () => true });
    tracker.start([], false);
    expect(tracker.ingest(ad(-60, 0), 'a')).toBeUndefined();
    expect(tracker.ingest(ad(-60, 100, UUID), 'a')?.advertisement).toMatchObject({ localName: 'abc', serviceUuids: ['fcd2'] });
    expect(tracker.ingest(ad(-60, 200), 'a')).toBeUndefined();
    tracker.start([], false);
    expect(tracker.ingest(ad(-60, 300), 'a')).toBeDefined();
    expect(tracker.nextHeldDue()).toBeUndefined();
  });

  it('scan tracker - a held first report with no second one is released after the hold time', () => {
    const tracker = new ScanTracker({ canConnect: () => true });
    tracker.start([], false);
    expect(tracker.ingest(ad(-60, 1_000), 'a')).toBeUndefined();
    expect(tracker.nextHeldDue()).toBe(1_000 + SCAN_RESPONSE_TIMEOUT_MS);
    expect(tracker.releaseHeld(1_000 + SCAN_RESPONSE_TIMEOUT_MS - 1)).toEqual([]);
    expect(tracker.releaseHeld(1_000 + SCAN_RESPONSE_TIMEOUT_MS).map((d) => d.advertisement.localName)).toEqual(['abc']);
    expect(tracker.nextHeldDue()).toBeUndefined();
    // Reported once in this scan: the next report is a duplicate.
    expect(tracker.ingest(ad(-60, 1_500), 'a')).toBeUndefined();
  });

  it('scan tracker - a device is connectable while some proxy that heard it can connect now, asked at every report', () => {
    const canConnect = new Set(['a']);
    const tracker = new ScanTracker({ canConnect: (proxy) => canConnect.has(proxy) });
    tracker.start([], true);
    expect(tracker.ingest(ad(-70, 0), 'a')).toBeUndefined(); // connectable: held for its scan response
    expect(tracker.ingest(ad(-70, 10), 'a')?.connectable).toBe(true);
    // b hears it 20 dB better and reports from now on; a still makes it connectable.
    expect(tracker.ingest(ad(-50, 20), 'b')?.connectable).toBe(true);
    canConnect.delete('a');
    expect(tracker.ingest(ad(-50, 30), 'b')?.connectable).toBe(false);
  });

  it('scan tracker - a report noble drops (TX Power Level AD without a value) is dropped every time it repeats', () => {
    const tracker = new ScanTracker();
    tracker.start([], true);
    const bad = Buffer.from('0409616263010a', 'hex');
    expect(tracker.ingest(ad(-60, 0, bad), 'a')).toBeUndefined();
    expect(tracker.ingest(ad(-60, 100, bad), 'a')).toBeUndefined();
    expect(tracker.ingest(ad(-60, 200), 'a')?.advertisement.localName).toBe('abc');
    expect(tracker.ingest(ad(-60, 300), 'a')).toBeDefined();
  });

  it('scan tracker - beyond MAX_TRACKED_DEVICES the oldest device is dropped and reported to onEvict', () => {
    const evicted: TrackedDevice[] = [];
    const tracker = new ScanTracker({ onEvict: (device) => evicted.push(device) });
    for (let i = 0; i < MAX_TRACKED_DEVICES; i++) tracker.ingest(ad(-60, i, NAME, ADDRESS - i), 'a');
    expect(evicted).toEqual([]);
    tracker.ingest(ad(-60, MAX_TRACKED_DEVICES, NAME, 1), 'a');
    expect(evicted.map((d) => d.address)).toEqual([ADDRESS]);
    expect(tracker.get(ADDRESS)).toBeUndefined();
    expect(tracker.get(1)).toBeDefined();
  });

  it('scan tracker - service-UUID filter in any spelling; nothing is parsed or reported while stopped', () => {
    const tracker = new ScanTracker();
    tracker.start(['0000FCD2-0000-1000-8000-00805F9B34FB', 'not-a-uuid'], true);
    expect(tracker.ingest(ad(-60, 0), 'a')).toBeUndefined();
    expect(tracker.ingest(ad(-60, 100, UUID), 'a')).toBeDefined();
    tracker.stop();
    expect(tracker.ingest(ad(-50, 200, Buffer.from('0303aaaa', 'hex')), 'a')).toBeUndefined();
    expect(tracker.get(ADDRESS)?.advertisement.serviceUuids).toEqual(['fcd2']);
    // The RSSI is still tracked (updateRssi reads it).
    expect(tracker.get(ADDRESS)?.rssi).toBe(-50);
  });
});
