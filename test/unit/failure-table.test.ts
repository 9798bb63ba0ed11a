import { describe, expect, it } from 'vitest';
import {
  BleConnectError,
  CommandRefusedError,
  DevicePlaintextError,
  EncryptionRequiredError,
  type ErrorCode,
  EspApiError,
  InvalidArgumentError,
  InvalidEncryptionKeyError,
  InvalidPasswordError,
  NameMismatchError,
  NoProxyAvailableError,
  type ProxyCause,
  TimeoutError,
} from '../../src/errors.js';
import {
  CONNECT_FAILURE_TABLE,
  CONTROLLER_REFUSAL_MAX_MS,
  classifyConnectError,
  connectCancelClass,
  exitClassOf,
  FAILURE_TABLE,
  failureRule,
  isPermanentFailure,
} from '../../src/failure-table.js';

const cause = (error: EspApiError): ProxyCause => ({
  proxy: 'p',
  code: error.code,
  failureClass: failureRule(error).class,
  permanent: failureRule(error).permanent,
  message: error.message,
  error,
});

describe('failure-table', () => {
  it('failure-table - an MQTT command refused for good is permanent; one refused while the gateway closes or its broker is away is not', () => {
    const refused = (reason: ConstructorParameters<typeof CommandRefusedError>[1]) => new CommandRefusedError('x', reason);
    expect(refused('notAllowed')).toMatchObject({ code: 'ESPAPI_ERR_COMMAND_REFUSED' });
    expect(isPermanentFailure(refused('notAllowed'))).toBe(true);
    for (const reason of ['closing', 'brokerAway'] as const) {
      expect(refused(reason), reason).toMatchObject({ code: 'ESPAPI_ERR_GATEWAY_UNAVAILABLE' });
      expect(isPermanentFailure(refused(reason)), reason).toBe(false);
    }
    for (const reason of ['rateLimited', 'busy'] as const) expect(isPermanentFailure(refused(reason)), reason).toBe(false);
  });

  it('failure-table - one frozen row per error code; the permanent ones are configuration, identity, unsupported, usage', () => {
    for (const [code, rule] of Object.entries(FAILURE_TABLE)) {
      expect(Object.isFrozen(rule), code).toBe(true);
      expect(rule.permanent, code).toBe(['credentials', 'identity', 'unsupported', 'usage'].includes(rule.class));
    }
    const permanent = (Object.keys(FAILURE_TABLE) as ErrorCode[]).filter((code) => FAILURE_TABLE[code].permanent);
    expect(permanent.sort()).toEqual(
      [
        'ESPAPI_ERR_INVALID_PSK',
        'ESPAPI_ERR_INVALID_KEY',
        'ESPAPI_ERR_ENCRYPTION_REQUIRED',
        'ESPAPI_ERR_DEVICE_PLAINTEXT',
        'ESPAPI_ERR_INVALID_PASSWORD',
        'ESPAPI_ERR_SECRET',
        'ESPAPI_ERR_NAME_MISMATCH',
        'ESPAPI_ERR_MAC_MISMATCH',
        'ESPAPI_ERR_UNSUPPORTED_API',
        'ESPAPI_ERR_FEATURE_MISSING',
        'ESPAPI_ERR_MISSING_PEER',
        'ESPAPI_ERR_NOT_ESPHOME',
        'ESPAPI_ERR_MATTER_DEVICE',
        'ESPAPI_ERR_MATTER_ENVIRONMENT',
        'ESPAPI_ERR_INVALID_ARGUMENT',
        'ESPAPI_ERR_INSECURE_LISTENER',
        'ESPAPI_ERR_MQTT_AUTH',
        'ESPAPI_ERR_COMMAND_REFUSED',
      ].sort(),
    );
  });

  it('failure-table - permanent: wrong key, password, encryption on one side only, identity; not a timeout or a dropped hello', () => {
    expect(isPermanentFailure(new InvalidEncryptionKeyError('k'))).toBe(true);
    expect(isPermanentFailure(new InvalidPasswordError())).toBe(true);
    expect(isPermanentFailure(new EncryptionRequiredError('e'))).toBe(true);
    expect(isPermanentFailure(new DevicePlaintextError('e'))).toBe(true);
    expect(isPermanentFailure(new NameMismatchError('mac', 'a', 'b'))).toBe(true);
    expect(isPermanentFailure(new TimeoutError('x', 1))).toBe(false);
    expect(isPermanentFailure(new EspApiError('ESPAPI_ERR_ENCRYPTED_HELLO_DROPPED', 'dropped'))).toBe(false);
    expect(isPermanentFailure(new Error('foreign'))).toBe(false);
  });

  it('failure-table - connect reasons keep bleak-retry-connector backoffs', () => {
    expect(classifyConnectError(0)).toMatchObject({ class: 'outOfSlots', backoffMs: 4000 });
    expect(classifyConnectError(0x13)).toMatchObject({ class: 'aborted', backoffMs: 250 });
    expect(classifyConnectError(0x16)).toMatchObject({ class: 'aborted', backoffMs: 250 });
    expect(classifyConnectError(0x3e)).toMatchObject({ class: 'aborted', backoffMs: 500 });
    expect(classifyConnectError(0x08)).toMatchObject({ class: 'aborted', backoffMs: 500 });
    expect(classifyConnectError(0x85)).toMatchObject({ class: 'aborted', backoffMs: 1000 });
    for (const other of [0x01, 0x22, 0x101, 0x05, 12345])
      expect(classifyConnectError(other)).toMatchObject({ class: 'other', backoffMs: 100 });
    for (const entry of CONNECT_FAILURE_TABLE.values()) expect(Object.isFrozen(entry)).toBe(true);
  });

  it('failure-table - 0x100 by duration and slots: exhausted, refused at once (< 8 s), or no answer (the stack timeout)', () => {
    const free = { free: 2, limit: 3, allocated: [0xaa] };
    expect(connectCancelClass(30, free, 0xaa)).toBe('controllerRefused');
    expect(connectCancelClass(CONTROLLER_REFUSAL_MAX_MS - 1, free, 0xaa)).toBe('controllerRefused');
    expect(connectCancelClass(CONTROLLER_REFUSAL_MAX_MS, free, 0xaa)).toBe('deviceUnreachable');
    expect(connectCancelClass(20_000, free, 0xaa)).toBe('deviceUnreachable');
    // A relay (or any proxy) that held no slot for us and reports none free: the slots really are all taken.
    expect(connectCancelClass(3, { free: 0, limit: 1, allocated: [0xbb] }, 0xaa)).toBe('outOfSlots');
    expect(connectCancelClass(3, { free: 0, limit: 0, allocated: [] }, 0xaa)).toBe('outOfSlots');
    // Firmware before 2025 lists no addresses: a report with free 0 says nothing about whose slots they are.
    expect(connectCancelClass(3, { free: 0, limit: 3, allocated: [] }, 0xaa)).toBe('controllerRefused');
    expect(connectCancelClass(undefined, undefined, 0xaa)).toBe('outOfSlots');
    const refused = new BleConnectError('x', 0xaa, 0x100, 'ESP_GATT_CONN_CONN_CANCEL', 'controllerRefused', { elapsedMs: 30 });
    expect(failureRule(refused)).toBe(FAILURE_TABLE.ESPAPI_ERR_CONTROLLER_REFUSED);
    expect(refused.elapsedMs).toBe(30);
  });

  it('failure-table - CLI exits: 3 for key/password/identity, 4 timeout, 2 usage; NO_PROXY exits as its proxies agree', () => {
    expect(exitClassOf(new InvalidEncryptionKeyError('k'))).toBe('auth');
    expect(exitClassOf(new NameMismatchError('name', 'a', 'b'))).toBe('auth');
    expect(exitClassOf(new TimeoutError('x', 1))).toBe('timeout');
    expect(exitClassOf(new InvalidArgumentError('bad'))).toBe('usage');
    expect(exitClassOf(new Error('foreign'))).toBe('failure');
    const keys = new NoProxyAvailableError('none', {
      proxies: [cause(new InvalidEncryptionKeyError('k')), cause(new InvalidPasswordError())],
    });
    expect(exitClassOf(keys)).toBe('auth');
    const mixed = new NoProxyAvailableError('none', {
      proxies: [cause(new InvalidEncryptionKeyError('k')), cause(new EspApiError('ESPAPI_ERR_UNSUPPORTED_API', 'old'))],
    });
    expect(exitClassOf(mixed)).toBe('failure');
    expect(exitClassOf(new NoProxyAvailableError('empty pool'))).toBe('failure');
  });
});
