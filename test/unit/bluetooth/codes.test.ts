import { describe, expect, it } from 'vitest';
import {
  CONNECTION_REASON_CODES,
  describeConnectionError,
  describeEspErr,
  describeGattError,
  ESP_ERR_CODES,
  GATT_STATUS_CODES,
  gattStatusName,
  unknownCodeName,
} from '../../../src/bluetooth/codes.js';

describe('bluetooth/codes', () => {
  it('codes - tables hold every §6.14 row once', () => {
    expect(GATT_STATUS_CODES).toHaveLength(43);
    expect(CONNECTION_REASON_CODES.map((r) => r.code)).toEqual([0x00, 0x01, 0x08, 0x13, 0x16, 0x22, 0x3e, 0x85, 0x100, 0x101]);
    expect(ESP_ERR_CODES.map((r) => r.code)).toEqual([0, -1, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108]);
    for (const table of [GATT_STATUS_CODES, CONNECTION_REASON_CODES, ESP_ERR_CODES]) {
      expect(new Set(table.map((r) => r.code)).size).toBe(table.length);
      for (const row of table) expect(row.description.length).toBeGreaterThan(0);
    }
  });

  it('codes - names GATT statuses', () => {
    expect(gattStatusName(0x05)).toBe('ESP_GATT_INSUF_AUTHENTICATION');
    expect(gattStatusName(0x85)).toBe('ESP_GATT_ERROR');
    expect(gattStatusName(0xff)).toBe('ESP_GATT_OUT_OF_RANGE');
    expect(gattStatusName(0x42)).toBe('UNKNOWN_0x42');
  });

  it('codes - reads message 82 errors by range', () => {
    expect(describeGattError(-1).name).toBe('ESP_GATT_NOT_CONNECTED');
    expect(describeGattError(0x02)).toMatchObject({ name: 'ESP_GATT_READ_NOT_PERMIT', description: 'Read not permitted' });
    expect(describeGattError(0x0f).advice).toMatch(/pair/);
    // 0x101 is ESP_ERR_NO_MEM here, not ESP_GATT_CONN_NONE.
    expect(describeGattError(0x101).name).toBe('ESP_ERR_NO_MEM');
    expect(describeGattError(0x103).name).toBe('ESP_ERR_INVALID_STATE');
    expect(describeGattError(0x1ff).name).toBe('UNKNOWN_0x1FF');
  });

  it('codes - reads message 69 errors as connection reasons first', () => {
    expect(describeConnectionError(0x100).name).toBe('ESP_GATT_CONN_CONN_CANCEL');
    expect(describeConnectionError(0x101).name).toBe('ESP_GATT_CONN_NONE');
    expect(describeConnectionError(0x08).name).toBe('ESP_GATT_CONN_TIMEOUT');
    expect(describeConnectionError(0x85).name).toBe('ESP_GATT_ERROR');
    expect(describeConnectionError(0x80).name).toBe('ESP_GATT_NO_RESOURCES');
    expect(describeConnectionError(0x3d).name).toBe('UNKNOWN_0x3D');
    // 0x100 has two meanings, told apart by the attempt's duration (failure-table.ts): its advice names both.
    expect(describeConnectionError(0x100).advice).toMatch(/refused/);
    expect(describeConnectionError(0x100).advice).toMatch(/never answered/);
  });

  it('codes - reads esp_err_t values', () => {
    expect(describeEspErr(0).name).toBe('ESP_OK');
    expect(describeEspErr(-1).name).toBe('ESP_FAIL');
    expect(describeEspErr(0x107).name).toBe('ESP_ERR_TIMEOUT');
    expect(describeEspErr(0x999).name).toBe('UNKNOWN_0x999');
    expect(unknownCodeName(-5)).toBe('UNKNOWN_-0x05');
  });
});
