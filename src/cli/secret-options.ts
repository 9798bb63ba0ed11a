import { redactSecrets, resolveSecret } from '../util/secrets.js';
import { type CommandArgs, str, UsageError } from './command.js';
import type { Output } from './output.js';

/** Where one secret flag reads from: `--<flag>`, `--<flag>-file` or `$<env>`. */
export interface SecretFlag {
  /** The flag, without dashes (`psk`, `downstream-psk`); its file twin is `<flag>-file`. */
  flag: string;
  /** Environment variable read when neither flag is given (none: no environment fallback). */
  env?: string;
}

/** The values of a repeatable string option. */
export function strings(args: CommandArgs, name: string): string[] {
  const value = args.values[name];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return typeof value === 'string' ? [value] : [];
}

/**
 * One secret from `--flag`, `--flag-file` or `$env`, in that order (giving both flags is a usage error). The flag
 * is visible in `ps`; the file and the environment are not.
 */
export function secretOption(args: CommandArgs, spec: SecretFlag): string | undefined {
  const value = str(args, spec.flag);
  const file = str(args, `${spec.flag}-file`);
  if (value !== undefined && file !== undefined) throw new UsageError(`give --${spec.flag} or --${spec.flag}-file, not both`);
  if (file !== undefined) return resolveSecret({ file }, `--${spec.flag}-file`);
  return resolveSecret({ value, env: spec.env }, value === undefined ? `$${spec.env}` : `--${spec.flag}`);
}

/**
 * Secrets given once for all or once per proxy: `--flag` repeated, `--flag-file` repeated, or `$env` (one for all).
 * Mixing the two flags is a usage error: the order of the proxies they belong to would be ambiguous.
 */
export function secretList(args: CommandArgs, spec: SecretFlag): string[] {
  const values = strings(args, spec.flag);
  const files = strings(args, `${spec.flag}-file`);
  if (values.length > 0 && files.length > 0) throw new UsageError(`give --${spec.flag} or --${spec.flag}-file, not both`);
  if (values.length > 0) return values.map((value) => resolveSecret({ value }, `--${spec.flag}`)!);
  if (files.length > 0) return files.map((file) => resolveSecret({ file }, `--${spec.flag}-file`)!);
  const fromEnv = spec.env === undefined ? undefined : resolveSecret({ env: spec.env }, `$${spec.env}`);
  return fromEnv === undefined ? [] : [fromEnv];
}

/** An Output that replaces every given secret in what it prints with `***` (a second line of defence: none should be there). */
export function redactingOutput(out: Output, secrets: ReadonlyArray<string | undefined>): Output {
  const known = secrets.filter((s): s is string => s !== undefined);
  if (known.length === 0) return out;
  const scrub = (value: unknown): unknown => {
    if (typeof value === 'string') return redactSecrets(value, known);
    if (Array.isArray(value)) return value.map(scrub);
    if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
      return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, scrub(v)]));
    }
    return value;
  };
  return {
    isTty: out.isTty,
    line: (text) => out.line(text === undefined ? text : redactSecrets(text, known)),
    error: (text) => out.error(redactSecrets(text, known)),
    json: (value) => out.json(scrub(value)),
  };
}
