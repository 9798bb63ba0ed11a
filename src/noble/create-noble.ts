import { createRequire } from 'node:module';
import type { Noble } from '@stoprocent/noble';
import { EspApiError, InvalidArgumentError } from '../errors.js';
import { createNobleBindings, type NobleBindings, type NobleBindingsOptions, type NobleBindingsSource } from './noble-bindings.js';

/**
 * noble's `withBindings()` for ESPHome proxies: a `Noble` instance (from the optional peer
 * `@stoprocent/noble`, loaded on first call) whose bindings are createNobleBindings(source, options).
 */
export function createNoble(source: NobleBindingsSource, options: NobleBindingsOptions = {}): Noble {
  // Loaded lazily and by path: the core never depends on noble, and its index module would build HCI bindings.
  let NobleClass: new (bindings: unknown) => Noble;
  try {
    NobleClass = createRequire(import.meta.url)('@stoprocent/noble/lib/noble');
  } catch (error) {
    throw new EspApiError(
      'ESPAPI_ERR_MISSING_PEER',
      'createNoble needs the optional peer dependency @stoprocent/noble: npm install @stoprocent/noble (or pass createNobleBindings() to your own noble)',
      { cause: error },
    );
  }
  return new NobleClass(createNobleBindings(source, options));
}

/**
 * Points a Noble instance that has not started yet — typically the package's default export, the one every
 * library gets from `require('@stoprocent/noble')` — at the proxies, so libraries that create no Noble of
 * their own use them unchanged. Call it before any library touches that instance. Returns the bindings.
 */
export function installNobleBindings(noble: Noble, source: NobleBindingsSource, options: NobleBindingsOptions = {}): NobleBindings {
  // noble keeps its bindings in `_bindings` and starts them on first use (`_initialized`); every noble fork does.
  const target = noble as unknown as { _bindings?: unknown; _initialized?: boolean };
  if (typeof target !== 'object' || target === null || !('_bindings' in target)) {
    throw new InvalidArgumentError('installNobleBindings needs a Noble instance (e.g. the default export of @stoprocent/noble)');
  }
  if (target._initialized === true) {
    throw new InvalidArgumentError('This Noble instance already started its own bindings: install the proxy bindings before first use');
  }
  const bindings = createNobleBindings(source, options);
  target._bindings = bindings;
  return bindings;
}
