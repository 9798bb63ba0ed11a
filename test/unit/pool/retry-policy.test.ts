import { describe, expect, it } from 'vitest';
import {
  BleConnectError,
  BleDisconnectedError,
  ConnectionClosedError,
  FeatureMissingError,
  InvalidEncryptionKeyError,
  NotSubscriberError,
  OutOfSlotsError,
  SubscriptionLostError,
  TimeoutError,
} from '../../../src/errors.js';
import { ADVICE, backsOffProxy, classifyAttemptError, finalError, SAME_PROXY_SLOT_BACKOFF_MS } from '../../../src/pool/retry-policy.js';

describe('pool/retry-policy', () => {
  it('retry-policy - out of slots backs off the proxy 4 s and is not a path failure', () => {
    expect(classifyAttemptError(new BleConnectError('x', 1, 0, 'NO_FREE_SLOT', 'outOfSlots'))).toEqual({
      failure: 'outOfSlots',
      backoffMs: SAME_PROXY_SLOT_BACKOFF_MS,
      pathFailure: false,
      permanent: false,
    });
  });

  it('retry-policy - 0x100 keeps the 4 s same-proxy backoff whatever it meant; only a refusal or no answer counts against the path', () => {
    for (const failureClass of ['outOfSlots', 'controllerRefused', 'deviceUnreachable'] as const) {
      const policy = classifyAttemptError(new BleConnectError('x', 1, 0x100, 'ESP_GATT_CONN_CONN_CANCEL', failureClass));
      expect(policy).toMatchObject({ failure: failureClass, backoffMs: 4000, pathFailure: failureClass !== 'outOfSlots' });
      expect(backsOffProxy(policy.failure)).toBe(true);
    }
  });

  it('retry-policy - abort-family reasons count against the path', () => {
    const policy = classifyAttemptError(new BleConnectError('x', 1, 0x3e, 'ESP_GATT_CONN_FAIL_ESTABLISH', 'aborted'));
    expect(policy).toMatchObject({ failure: 'aborted', backoffMs: 500, pathFailure: true });
    expect(backsOffProxy(policy.failure)).toBe(false);
  });

  it('retry-policy - timeouts, lost proxies, unusable proxies and the permanent ones', () => {
    expect(classifyAttemptError(new TimeoutError('connect', 10)).failure).toBe('timeout');
    expect(classifyAttemptError(new ConnectionClosedError()).failure).toBe('proxyLost');
    expect(classifyAttemptError(new BleDisconnectedError('x', 1, 8)).failure).toBe('aborted');
    expect(classifyAttemptError(new NotSubscriberError('p')).failure).toBe('proxyUnusable');
    expect(classifyAttemptError(new SubscriptionLostError('p', 'probe'))).toMatchObject({ failure: 'proxyUnusable', pathFailure: false });
    expect(classifyAttemptError(new FeatureMissingError('p', 'GATT connections'))).toMatchObject({
      failure: 'unsupported',
      permanent: true,
    });
    expect(classifyAttemptError(new InvalidEncryptionKeyError('k'))).toMatchObject({ failure: 'credentials', permanent: true });
    expect(classifyAttemptError(new Error('?')).failure).toBe('other');
  });

  it('retry-policy - a final 0x100 is still an OutOfSlotsError, whose code and advice say what it was', () => {
    const timeline = [
      {
        attempt: 1,
        proxy: 'p',
        rssi: -60,
        score: -60,
        code: 'ESPAPI_ERR_BLE_CONNECT' as const,
        reason: 0x100,
        ms: 40,
        failure: 'controllerRefused' as const,
        route: [],
      },
    ];
    const refused = finalError('dev', 'controllerRefused', undefined, timeline, []);
    expect(refused).toBeInstanceOf(OutOfSlotsError);
    expect(refused).toMatchObject({
      code: 'ESPAPI_ERR_CONTROLLER_REFUSED',
      failureClass: 'controllerRefused',
      advice: ADVICE.controllerRefused,
    });
    const silent = finalError('dev', 'deviceUnreachable', undefined, timeline, []);
    expect(silent).toBeInstanceOf(OutOfSlotsError);
    expect(silent).toMatchObject({ code: 'ESPAPI_ERR_DEVICE_UNREACHABLE', advice: ADVICE.deviceUnreachable });
    expect(finalError('dev', 'outOfSlots', undefined, timeline, [])).toMatchObject({
      code: 'ESPAPI_ERR_OUT_OF_SLOTS',
      advice: ADVICE.outOfSlots,
    });
  });
});
