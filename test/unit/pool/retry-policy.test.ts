import { describe, expect, it } from 'vitest';
import {
  BleConnectError,
  BleDisconnectedError,
  ConnectionClosedError,
  NotSubscriberError,
  SubscriptionLostError,
  TimeoutError,
} from '../../../src/errors.js';
import { classifyAttemptError, SAME_PROXY_SLOT_BACKOFF_MS } from '../../../src/pool/retry-policy.js';

describe('pool/retry-policy', () => {
  it('retry-policy - out of slots backs off the proxy 4 s and is not a path failure', () => {
    expect(classifyAttemptError(new BleConnectError('x', 1, 0x100, 'ESP_GATT_CONN_CONN_CANCEL', 'outOfSlots'))).toEqual({
      failure: 'outOfSlots',
      backoffMs: SAME_PROXY_SLOT_BACKOFF_MS,
      pathFailure: false,
    });
  });

  it('retry-policy - abort-family reasons count against the path', () => {
    const policy = classifyAttemptError(new BleConnectError('x', 1, 0x3e, 'ESP_GATT_CONN_FAIL_ESTABLISH', 'aborted'));
    expect(policy.failure).toBe('aborted');
    expect(policy.pathFailure).toBe(true);
  });

  it('retry-policy - timeouts, lost proxies and unusable proxies', () => {
    expect(classifyAttemptError(new TimeoutError('connect', 10)).failure).toBe('timeout');
    expect(classifyAttemptError(new ConnectionClosedError()).failure).toBe('proxyLost');
    expect(classifyAttemptError(new BleDisconnectedError('x', 1, 8)).failure).toBe('aborted');
    expect(classifyAttemptError(new NotSubscriberError('p')).failure).toBe('proxyUnusable');
    expect(classifyAttemptError(new SubscriptionLostError('p', 'probe'))).toMatchObject({ failure: 'proxyUnusable', pathFailure: false });
    expect(classifyAttemptError(new Error('?')).failure).toBe('other');
  });
});
