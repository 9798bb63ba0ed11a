/** One row of an ESP-IDF / ESPHome code table (§6.14). */
export interface CodeEntry {
  readonly code: number;
  readonly name: string;
  readonly description: string;
  readonly advice?: string;
}

const PAIRING_ADVICE = 'the characteristic needs a bonded (paired) link: pair the device first';
const RANGE_ADVICE = 'the device may be out of range or busy: move a proxy closer or retry';
/** What a 0x100 means depends on when it came (src/failure-table.ts connectCancelClass). */
const CONN_CANCEL_ADVICE =
  'within a few seconds of the connect, the proxy (its firmware or controller) refused it, or a relay in front of it did (another of its clients holds the device or the slots): check the proxy or the relay; after 10 s or more, the device never answered: move a proxy closer or wake the device';

/** ESPHome's own -1: the proxy holds no (connected) slot for the address (GATT errors, connection parameters). */
export const ESPHOME_NOT_CONNECTED: CodeEntry = {
  code: -1,
  name: 'ESP_GATT_NOT_CONNECTED',
  description: 'the proxy has no connection to this device',
  advice: 'connect (again) before issuing GATT operations',
};

/** ESP-IDF `esp_gatt_status_t`, every row of §6.14. */
export const GATT_STATUS_CODES: readonly CodeEntry[] = [
  { code: 0x00, name: 'ESP_GATT_OK', description: 'Success' },
  {
    code: 0x01,
    name: 'ESP_GATT_INVALID_HANDLE',
    description: 'Invalid handle',
    advice: 'the cached handles may be stale: clear the cache',
  },
  { code: 0x02, name: 'ESP_GATT_READ_NOT_PERMIT', description: 'Read not permitted' },
  { code: 0x03, name: 'ESP_GATT_WRITE_NOT_PERMIT', description: 'Write not permitted' },
  { code: 0x04, name: 'ESP_GATT_INVALID_PDU', description: 'Invalid PDU' },
  { code: 0x05, name: 'ESP_GATT_INSUF_AUTHENTICATION', description: 'Insufficient authentication', advice: PAIRING_ADVICE },
  { code: 0x06, name: 'ESP_GATT_REQ_NOT_SUPPORTED', description: 'Request not supported' },
  { code: 0x07, name: 'ESP_GATT_INVALID_OFFSET', description: 'Invalid offset' },
  { code: 0x08, name: 'ESP_GATT_INSUF_AUTHORIZATION', description: 'Insufficient authorization', advice: PAIRING_ADVICE },
  { code: 0x09, name: 'ESP_GATT_PREPARE_Q_FULL', description: 'Prepare queue full' },
  { code: 0x0a, name: 'ESP_GATT_NOT_FOUND', description: 'Attribute not found' },
  { code: 0x0b, name: 'ESP_GATT_NOT_LONG', description: 'Attribute not long' },
  { code: 0x0c, name: 'ESP_GATT_INSUF_KEY_SIZE', description: 'Insufficient key size' },
  { code: 0x0d, name: 'ESP_GATT_INVALID_ATTR_LEN', description: 'Invalid attribute length' },
  { code: 0x0e, name: 'ESP_GATT_ERR_UNLIKELY', description: 'Unlikely error' },
  { code: 0x0f, name: 'ESP_GATT_INSUF_ENCRYPTION', description: 'Insufficient encryption', advice: PAIRING_ADVICE },
  { code: 0x10, name: 'ESP_GATT_UNSUPPORT_GRP_TYPE', description: 'Unsupported group type' },
  { code: 0x11, name: 'ESP_GATT_INSUF_RESOURCE', description: 'Insufficient resources' },
  { code: 0x80, name: 'ESP_GATT_NO_RESOURCES', description: 'Application error / no resources' },
  { code: 0x81, name: 'ESP_GATT_INTERNAL_ERROR', description: 'Internal error' },
  { code: 0x82, name: 'ESP_GATT_WRONG_STATE', description: 'Wrong state' },
  { code: 0x83, name: 'ESP_GATT_DB_FULL', description: 'Database full' },
  { code: 0x84, name: 'ESP_GATT_BUSY', description: 'Busy', advice: 'another GATT operation is running: retry shortly' },
  { code: 0x85, name: 'ESP_GATT_ERROR', description: 'Error (generic stack error)', advice: RANGE_ADVICE },
  { code: 0x86, name: 'ESP_GATT_CMD_STARTED', description: 'Command started' },
  { code: 0x87, name: 'ESP_GATT_ILLEGAL_PARAMETER', description: 'Illegal parameter' },
  { code: 0x88, name: 'ESP_GATT_PENDING', description: 'Pending' },
  { code: 0x89, name: 'ESP_GATT_AUTH_FAIL', description: 'Auth fail', advice: 'pairing failed: remove the bond (unpair) and pair again' },
  { code: 0x8a, name: 'ESP_GATT_MORE', description: 'More' },
  { code: 0x8b, name: 'ESP_GATT_INVALID_CFG', description: 'Invalid configuration' },
  { code: 0x8c, name: 'ESP_GATT_SERVICE_STARTED', description: 'Service started' },
  { code: 0x8d, name: 'ESP_GATT_ENCRYPTED_NO_MITM', description: 'Encrypted, no MITM' },
  { code: 0x8e, name: 'ESP_GATT_NOT_ENCRYPTED', description: 'Not encrypted', advice: PAIRING_ADVICE },
  { code: 0x8f, name: 'ESP_GATT_CONGESTED', description: 'Congested', advice: 'the link is congested: slow down writes without response' },
  { code: 0x90, name: 'ESP_GATT_DUP_REG', description: 'Duplicate registration' },
  { code: 0x91, name: 'ESP_GATT_ALREADY_OPEN', description: 'Already open' },
  { code: 0x92, name: 'ESP_GATT_CANCEL', description: 'Cancel' },
  { code: 0xe0, name: 'ESP_GATT_STACK_RSP', description: 'Stack RSP' },
  { code: 0xe1, name: 'ESP_GATT_APP_RSP', description: 'App RSP' },
  { code: 0xef, name: 'ESP_GATT_UNKNOWN_ERROR', description: 'Unknown error' },
  { code: 0xfd, name: 'ESP_GATT_CCC_CFG_ERR', description: 'CCC config error' },
  { code: 0xfe, name: 'ESP_GATT_PRC_IN_PROGRESS', description: 'Procedure already in progress' },
  { code: 0xff, name: 'ESP_GATT_OUT_OF_RANGE', description: 'Out of range' },
];

/** ESP-IDF `esp_gatt_conn_reason_t` as aioesphomeapi's `BLEConnectionError` lists it (incl. 0x85, 0x100, 0x101). */
export const CONNECTION_REASON_CODES: readonly CodeEntry[] = [
  { code: 0x00, name: 'ESP_GATT_CONN_UNKNOWN', description: 'connection failed for an unknown reason' },
  { code: 0x01, name: 'ESP_GATT_CONN_L2C_FAILURE', description: 'L2CAP-level failure' },
  { code: 0x08, name: 'ESP_GATT_CONN_TIMEOUT', description: 'link supervision timeout', advice: RANGE_ADVICE },
  { code: 0x13, name: 'ESP_GATT_CONN_TERMINATE_PEER_USER', description: 'the peripheral closed the link' },
  { code: 0x16, name: 'ESP_GATT_CONN_TERMINATE_LOCAL_HOST', description: 'the proxy closed the link' },
  { code: 0x22, name: 'ESP_GATT_CONN_LMP_TIMEOUT', description: 'link-layer procedure response timeout' },
  { code: 0x3e, name: 'ESP_GATT_CONN_FAIL_ESTABLISH', description: 'the link could not be established', advice: RANGE_ADVICE },
  { code: 0x85, name: 'ESP_GATT_ERROR', description: 'generic stack error while opening the link', advice: RANGE_ADVICE },
  {
    code: 0x100,
    name: 'ESP_GATT_CONN_CONN_CANCEL',
    description: 'attempt cancelled (the controller refused it, the device never answered, or a relay in front of the proxy refused it)',
    advice: CONN_CANCEL_ADVICE,
  },
  { code: 0x101, name: 'ESP_GATT_CONN_NONE', description: 'there was no connection to cancel' },
];

/** ESP-IDF `esp_err_t` values the proxy forwards from failed stack calls. */
export const ESP_ERR_CODES: readonly CodeEntry[] = [
  { code: 0, name: 'ESP_OK', description: 'success' },
  { code: -1, name: 'ESP_FAIL', description: 'generic failure' },
  { code: 0x101, name: 'ESP_ERR_NO_MEM', description: 'out of memory' },
  { code: 0x102, name: 'ESP_ERR_INVALID_ARG', description: 'invalid argument' },
  { code: 0x103, name: 'ESP_ERR_INVALID_STATE', description: 'invalid state' },
  { code: 0x104, name: 'ESP_ERR_INVALID_SIZE', description: 'invalid size' },
  { code: 0x105, name: 'ESP_ERR_NOT_FOUND', description: 'requested resource not found' },
  { code: 0x106, name: 'ESP_ERR_NOT_SUPPORTED', description: 'operation or feature not supported' },
  { code: 0x107, name: 'ESP_ERR_TIMEOUT', description: 'operation timed out' },
  { code: 0x108, name: 'ESP_ERR_INVALID_RESPONSE', description: 'received response was invalid' },
];

const byCode = (rows: readonly CodeEntry[]): ReadonlyMap<number, CodeEntry> => new Map(rows.map((row) => [row.code, row]));
const GATT_STATUS = byCode(GATT_STATUS_CODES);
const CONNECTION_REASON = byCode(CONNECTION_REASON_CODES);
const ESP_ERR = byCode(ESP_ERR_CODES);

// esp_err_t codes start at 0x101; GATT statuses stop at 0xFF, so 0x100+ in a GATT error is an esp_err_t.
const ESP_ERR_BASE = 0x100;

/** `UNKNOWN_0x..` placeholder name for a code no table knows. */
export function unknownCodeName(code: number): string {
  const hex = Math.abs(code).toString(16).toUpperCase().padStart(2, '0');
  return `UNKNOWN_${code < 0 ? '-' : ''}0x${hex}`;
}

function unknown(code: number): CodeEntry {
  return { code, name: unknownCodeName(code), description: `unknown error code ${code}` };
}

/** Name of an `esp_gatt_status_t`, or `UNKNOWN_0x..`. */
export function gattStatusName(code: number): string {
  return GATT_STATUS.get(code)?.name ?? unknownCodeName(code);
}

/** Interprets the `error` of a GATT error reply (message 82): -1 not connected, 0x100+ `esp_err_t`, else GATT status. */
export function describeGattError(code: number): CodeEntry {
  if (code === -1) return ESPHOME_NOT_CONNECTED;
  const table = code >= ESP_ERR_BASE ? ESP_ERR : GATT_STATUS;
  return table.get(code) ?? unknown(code);
}

/** Interprets the `error` of `connected=false` (message 69): connection reason first, then GATT status. */
export function describeConnectionError(code: number): CodeEntry {
  return CONNECTION_REASON.get(code) ?? GATT_STATUS.get(code) ?? (code === -1 ? ESPHOME_NOT_CONNECTED : unknown(code));
}

/** Interprets an `esp_err_t` (pairing, unpairing, cache clearing, connection parameters). */
export function describeEspErr(code: number): CodeEntry {
  return ESP_ERR.get(code) ?? unknown(code);
}
