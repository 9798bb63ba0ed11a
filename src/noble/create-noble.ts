import { createRequire } from 'node:module';
import type { Noble } from '@stoprocent/noble';
import { createNobleBindings, type NobleBindingsOptions, type NobleBindingsSource } from './noble-bindings.js';

/**
 * noble's `withBindings()` for ESPHome proxies: a `Noble` instance (from the optional peer
 * `@stoprocent/noble`, loaded on first call) whose bindings are createNobleBindings(source, options).
 */
export function createNoble(source: NobleBindingsSource, options: NobleBindingsOptions = {}): Noble {
  // Loaded lazily and by path: the core never depends on noble, and its index module would build HCI bindings.
  const NobleClass = createRequire(import.meta.url)('@stoprocent/noble/lib/noble') as new (bindings: unknown) => Noble;
  return new NobleClass(createNobleBindings(source, options));
}
