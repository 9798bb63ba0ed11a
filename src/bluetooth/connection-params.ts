import { InvalidArgumentError } from '../errors.js';

/** Link-layer connection parameters (BLE Core units). */
export interface ConnectionParams {
  /** 1.25 ms units, 6..3200. */
  minInterval: number;
  /** 1.25 ms units, 6..3200, >= minInterval. */
  maxInterval: number;
  /** Connection events, 0..499. */
  latency: number;
  /** Supervision timeout in 10 ms units, 10..3200. */
  timeout: number;
}

/** Throws InvalidArgumentError unless every parameter is within the range BLE allows. */
export function validateParams(p: ConnectionParams): void {
  const bad = (what: string): never => {
    throw new InvalidArgumentError(`Invalid connection parameters: ${what}`);
  };
  if (p.minInterval < 6 || p.minInterval > 3200) bad('minInterval must be 6..3200 (1.25 ms units)');
  if (p.maxInterval < 6 || p.maxInterval > 3200 || p.maxInterval < p.minInterval) bad('maxInterval must be 6..3200 and >= minInterval');
  if (p.latency < 0 || p.latency > 499) bad('latency must be 0..499');
  if (p.timeout < 10 || p.timeout > 3200) bad('timeout must be 10..3200 (10 ms units)');
}
