import { InvalidArgumentError } from '../errors.js';

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration such as `500ms`, `5s`, `1.5m`, `2h` into ms. A bare number is read in `bareUnit`
 * (the CLI documents per flag which one); `label` names the flag or option in the error.
 */
export function parseDuration(text: string, label: string, bareUnit: 'ms' | 's' = 'ms'): number {
  const match = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$/i.exec(text);
  if (match === null) {
    throw new InvalidArgumentError(`${label} must be a duration such as 500ms, 5s, 2m or 1h, got ${JSON.stringify(text)}`);
  }
  const unit = (match[2] ?? bareUnit).toLowerCase();
  const ms = Number(match[1]) * (UNIT_MS[unit] ?? 1);
  if (!Number.isFinite(ms)) throw new InvalidArgumentError(`${label} is out of range: ${JSON.stringify(text)}`);
  return Math.round(ms);
}

/** Formats ms the way the CLI prints durations (`850ms`, `2.5s`, `3m`). */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1_000).toFixed(1))}s`;
  if (ms < 3_600_000) return `${Number((ms / 60_000).toFixed(1))}m`;
  return `${Number((ms / 3_600_000).toFixed(1))}h`;
}
