import { EspApiError } from '../errors.js';

/** Exit codes of the CLI (documented in the README). */
export const EXIT = {
  ok: 0,
  /** The operation failed (connection, GATT, slots...). */
  failure: 1,
  /** Bad command line. */
  usage: 2,
  /** Authentication / key / identity problem: retrying will not help. */
  auth: 3,
  /** Timed out. */
  timeout: 4,
  /** Interrupted (SIGINT). */
  interrupted: 130,
} as const;

/** Where a command writes; injectable so tests can capture output. */
export interface Output {
  readonly isTty: boolean;
  line(text?: string): void;
  error(text: string): void;
  json(value: unknown): void;
}

/** Output to the process's stdout/stderr. */
export function processOutput(): Output {
  return {
    isTty: Boolean(process.stdout.isTTY),
    line: (text = '') => process.stdout.write(`${text}\n`),
    error: (text) => process.stderr.write(`${text}\n`),
    json: (value) => process.stdout.write(`${JSON.stringify(value, jsonReplacer)}\n`),
  };
}

/** JSON.stringify replacer for bigint and byte arrays. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (value instanceof Map) return Object.fromEntries(value);
  if (value instanceof Set) return [...value];
  return value;
}

const COLORS = { red: 31, green: 32, yellow: 33, blue: 34, dim: 2, bold: 1 } as const;

/** Wraps text in an ANSI colour when writing to a terminal (and NO_COLOR is unset). */
export function paint(out: Output, color: keyof typeof COLORS, text: string): string {
  if (!out.isTty || process.env.NO_COLOR !== undefined) return text;
  return `\u001b[${COLORS[color]}m${text}\u001b[0m`;
}

/** Renders rows as an aligned text table. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const render = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - visibleLength(cell))))
      .join('  ')
      .trimEnd();
  return [render(headers), render(widths.map((w) => '-'.repeat(w))), ...rows.map(render)].join('\n');
}

function visibleLength(text: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes
  return text.replace(/\u001b\[[0-9;]*m/g, '').length;
}

/** Maps an error to the CLI exit code. */
export function exitCodeFor(error: unknown): number {
  if (!(error instanceof EspApiError)) return EXIT.failure;
  switch (error.code) {
    case 'ESPAPI_ERR_INVALID_KEY':
    case 'ESPAPI_ERR_INVALID_PSK':
    case 'ESPAPI_ERR_INVALID_PASSWORD':
    case 'ESPAPI_ERR_NAME_MISMATCH':
    case 'ESPAPI_ERR_MAC_MISMATCH':
    case 'ESPAPI_ERR_ENCRYPTION_REQUIRED':
    case 'ESPAPI_ERR_DEVICE_PLAINTEXT':
    case 'ESPAPI_ERR_SECRET':
      return EXIT.auth;
    case 'ESPAPI_ERR_TIMEOUT':
      return EXIT.timeout;
    case 'ESPAPI_ERR_INVALID_ARGUMENT':
    case 'ESPAPI_ERR_INSECURE_LISTENER':
      return EXIT.usage;
    default:
      return EXIT.failure;
  }
}

/** Prints an error as one line (JSON object with --json). */
export function reportError(out: Output, error: unknown, json: boolean): void {
  const code = error instanceof EspApiError ? error.code : 'ERROR';
  const message = error instanceof Error ? error.message : String(error);
  if (json) {
    out.json({ error: { code, name: error instanceof Error ? error.name : 'Error', message } });
  } else {
    out.error(`${paint(out, 'red', 'error')} ${code}: ${message}`);
  }
}

/** A one-line progress indicator on a TTY; silent elsewhere. */
export class Spinner {
  readonly #out: Output;
  #timer: NodeJS.Timeout | undefined;
  #text = '';
  #frame = 0;

  constructor(out: Output) {
    this.#out = out;
  }

  /** Shows or updates the progress text. */
  update(text: string): void {
    this.#text = text;
    if (!this.#out.isTty || !process.stderr.isTTY) return;
    this.#timer ??= setInterval(() => this.#draw(), 80);
    this.#draw();
  }

  /** Removes the progress line. */
  stop(): void {
    if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      process.stderr.write('\r\u001b[K');
    }
  }

  #draw(): void {
    const frames = '|/-\\';
    process.stderr.write(`\r\u001b[K${frames[this.#frame++ % frames.length]} ${this.#text}`);
  }
}
