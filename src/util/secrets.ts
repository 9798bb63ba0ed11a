import { readFileSync } from 'node:fs';
import { SecretSourceError } from '../errors.js';

/** Where one secret (a Noise key, a password) may come from; the first source given wins, in this order. */
export interface SecretSources {
  /** The value itself (a command-line flag: visible in `ps`, so the other two are preferred). */
  value?: string | undefined;
  /** A file holding the value (surrounding whitespace and a trailing newline are ignored). */
  file?: string | undefined;
  /** The name of an environment variable holding the value. */
  env?: string | undefined;
}

/**
 * Resolves a secret from a value, a file or an environment variable, in that order; undefined when none is set.
 * `label` names the secret in errors (e.g. `--downstream-psk`); the secret itself never appears in a message.
 */
export function resolveSecret(sources: SecretSources, label: string, environment: NodeJS.ProcessEnv = process.env): string | undefined {
  if (sources.value !== undefined) {
    if (sources.value.trim() === '') throw new SecretSourceError(`${label} is empty`);
    return sources.value.trim();
  }
  if (sources.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(sources.file, 'utf8');
    } catch (cause) {
      const reason = (cause as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new SecretSourceError(`Cannot read ${label} from file ${sources.file} (${reason})`, { cause });
    }
    const secret = text.trim();
    if (secret === '') throw new SecretSourceError(`${label}: file ${sources.file} is empty`);
    return secret;
  }
  if (sources.env !== undefined) {
    const secret = environment[sources.env]?.trim();
    if (secret === undefined || secret === '') return undefined;
    return secret;
  }
  return undefined;
}

/** Replaces every occurrence of the given secrets in `text` (a log line, an error message) with `***`. */
export function redactSecrets(text: string, secrets: Iterable<string | undefined>): string {
  let out = text;
  for (const secret of secrets) {
    if (secret !== undefined && secret.length >= 4) out = out.split(secret).join('***');
  }
  return out;
}
