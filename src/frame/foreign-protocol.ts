import { NotEsphomeError } from '../errors.js';

/** Plaintext frames start with 0x00, Noise frames with 0x01 (spec §3, §4.1); anything else is not the native API. */
const PLAINTEXT_INDICATOR = 0x00;
const NOISE_INDICATOR = 0x01;
/** Printable characters of a foreign greeting quoted in the error: enough for `HTTP/1.1 400 Bad Request`. */
const QUOTED_CHARS = 40;

const ascii = (bytes: Uint8Array, text: string): boolean =>
  bytes.length >= text.length && [...text].every((c, i) => bytes[i] === c.charCodeAt(0));

/**
 * Protocols that answer the first bytes an ESPHome client sends (or greet before it speaks), by how their first reply
 * starts. A port carrying one of them is a wrong port, not a node with a broken API.
 */
const SIGNATURES: ReadonlyArray<readonly [string, (b: Uint8Array) => boolean]> = [
  ['HTTP', (b) => ascii(b, 'HTTP/')],
  ['RTSP', (b) => ascii(b, 'RTSP/')],
  ['SSH', (b) => ascii(b, 'SSH-')],
  ['TLS', (b) => (b[0] === 0x15 || b[0] === 0x16) && b[1] === 0x03],
  ['SMTP or FTP', (b) => ascii(b, '220 ') || ascii(b, '220-')],
  ['VNC', (b) => ascii(b, 'RFB ')],
  ['POP3', (b) => ascii(b, '+OK')],
  ['IMAP', (b) => ascii(b, '* OK')],
  ['Redis', (b) => ascii(b, '-ERR') || ascii(b, '-NOAUTH') || ascii(b, '-DENIED')],
  ['MQTT', (b) => b[0] === 0x20 && b[1] === 0x02],
  ['Telnet', (b) => b[0] === 0xff && b.length > 1 && b[1]! >= 0xfb],
  ['HTML or XML', (b) => ascii(b, '<')],
  ['JSON', (b) => ascii(b, '{')],
];

/** Names the protocol a non-ESPHome peer's first bytes belong to; undefined when unknown. */
export function foreignProtocolOf(firstBytes: Uint8Array): string | undefined {
  return SIGNATURES.find(([, matches]) => matches(firstBytes))?.[0];
}

/**
 * The error for a peer whose first bytes cannot start a native-API frame (`where` is `host:port`), or undefined when
 * they can (0x00 plaintext, 0x01 Noise: the codecs judge those, a wrong transport included).
 */
export function foreignProtocolError(firstBytes: Uint8Array, where: string): NotEsphomeError | undefined {
  const indicator = firstBytes[0];
  if (indicator === undefined || indicator === PLAINTEXT_INDICATOR || indicator === NOISE_INDICATOR) return undefined;
  const protocol = foreignProtocolOf(firstBytes);
  const line = quoted(firstBytes);
  const answered = line === undefined ? `its first bytes: ${hexHead(firstBytes)}` : `it answered ${JSON.stringify(line)}`;
  const what = protocol === undefined ? 'does not speak' : `speaks ${protocol}, not`;
  return new NotEsphomeError(
    `${where}: this port ${what} the ESPHome native API (${answered}); the API listens on 6053 unless the device YAML moves it`,
    protocol,
  );
}

/** The start of the first line when it is printable text. */
function quoted(bytes: Uint8Array): string | undefined {
  let text = '';
  for (const byte of bytes.subarray(0, QUOTED_CHARS)) {
    if (byte === 0x0d || byte === 0x0a) break;
    if (byte < 0x20 || byte > 0x7e) return undefined;
    text += String.fromCharCode(byte);
  }
  return text.length >= 3 ? text : undefined;
}

function hexHead(bytes: Uint8Array): string {
  return [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}
