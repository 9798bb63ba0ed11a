/** How a device wants to be talked to, from its `api_encryption*` TXT keys. */
export type ProxyEncryption = 'required' | 'supported' | 'none';

/** The TXT record of an `_esphomelib._tcp` service, decoded. */
export interface ProxyTxt {
  /** ESPHome version, e.g. `2026.8.0`. */
  readonly version?: string;
  /** Network MAC as 12 lower-case hex digits (absent when the record holds something else). */
  readonly mac?: string;
  /** `ESP32`, `ESP8266`, `RP2040` or a LibreTiny chip name. */
  readonly platform?: string;
  /** Board id, e.g. `esp32dev`. */
  readonly board?: string;
  /** `wifi`, `ethernet` or `thread`. */
  readonly network?: string;
  readonly friendlyName?: string;
  readonly projectName?: string;
  readonly projectVersion?: string;
  readonly packageImportUrl?: string;
  /** `required` with `api_encryption` (connect with Noise and the key), `supported` with `api_encryption_supported` (no key yet), else `none`. */
  readonly encryption: ProxyEncryption;
  /** Every key (lower-cased) with its value; a key without `=` maps to the empty string. */
  readonly raw: Readonly<Record<string, string>>;
}

/** Project name of the official ready-made Bluetooth proxy images. */
export const BLUETOOTH_PROXY_PROJECT_NAME = 'esphome.bluetooth-proxy';

/** Where the official ready-made Bluetooth proxy configurations live. */
const BLUETOOTH_PROXY_PACKAGE_PREFIX = 'github://esphome/bluetooth-proxies/';

const MAC_PATTERN = /^[0-9a-f]{12}$/;
const utf8 = new TextDecoder('utf-8');

/**
 * Decodes TXT strings as received (e.g. bonjour-service's `rawTxt`), keeping empty values.
 * Keys are case-insensitive and only the first occurrence counts (RFC 6763 §6.4).
 */
export function parseProxyTxt(entries: Iterable<Uint8Array | string> | undefined): ProxyTxt {
  const raw: Record<string, string> = {};
  for (const entry of entries ?? []) {
    const text = typeof entry === 'string' ? entry : utf8.decode(entry);
    const eq = text.indexOf('=');
    const key = (eq === -1 ? text : text.slice(0, eq)).toLowerCase();
    if (key === '' || Object.hasOwn(raw, key)) continue;
    raw[key] = eq === -1 ? '' : text.slice(eq + 1);
  }
  return proxyTxtFromRecord(raw);
}

/** Builds a ProxyTxt from already decoded key/value pairs (keys matched case-insensitively). */
export function proxyTxtFromRecord(record: Readonly<Record<string, string>>): ProxyTxt {
  const raw: Record<string, string> = {};
  for (const [key, value] of Object.entries(record)) {
    const lower = key.toLowerCase();
    if (!Object.hasOwn(raw, lower)) raw[lower] = value;
  }
  const mac = normaliseMac(raw.mac);
  const encryption: ProxyEncryption =
    raw.api_encryption !== undefined ? 'required' : raw.api_encryption_supported !== undefined ? 'supported' : 'none';
  return {
    ...optional('version', raw.version),
    ...optional('mac', mac),
    ...optional('platform', raw.platform),
    ...optional('board', raw.board),
    ...optional('network', raw.network),
    ...optional('friendlyName', raw.friendly_name),
    ...optional('projectName', raw.project_name),
    ...optional('projectVersion', raw.project_version),
    ...optional('packageImportUrl', raw.package_import_url),
    encryption,
    raw,
  };
}

/**
 * Heuristic only: true when the TXT names an official Bluetooth proxy image (project name or package URL).
 * Custom-YAML proxies carry neither, so `false` does not mean "not a proxy"; the authoritative test is the
 * Bluetooth feature flags in DeviceInfoResponse after connecting. ESP8266 builds are never proxies.
 */
export function looksLikeBluetoothProxy(txt: ProxyTxt): boolean {
  if (txt.platform?.toUpperCase() === 'ESP8266') return false;
  if (txt.projectName?.toLowerCase() === BLUETOOTH_PROXY_PROJECT_NAME) return true;
  return txt.packageImportUrl?.toLowerCase().startsWith(BLUETOOTH_PROXY_PACKAGE_PREFIX) ?? false;
}

function normaliseMac(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const hex = value.replace(/[:-]/g, '').toLowerCase();
  return MAC_PATTERN.test(hex) ? hex : undefined;
}

// Omits absent keys instead of writing `undefined`, as exactOptionalPropertyTypes requires.
function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return value === undefined ? {} : ({ [key]: value } as { [P in K]?: string });
}
