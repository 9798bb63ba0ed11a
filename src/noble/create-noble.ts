import { EventEmitter } from 'node:events';
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
 * Works with noble 2.x and with noble 1.x / @abandonware/noble, whose constructor already subscribed to the
 * bindings it was built with: those subscriptions move to the proxy bindings.
 */
export function installNobleBindings(noble: Noble, source: NobleBindingsSource, options: NobleBindingsOptions = {}): NobleBindings {
  // noble keeps its bindings in `_bindings` and starts them on first use: 2.x sets `_initialized`, 1.x and
  // @abandonware/noble `initialized`.
  const target = noble as unknown as { _bindings?: unknown; _initialized?: boolean; initialized?: boolean };
  if (typeof target !== 'object' || target === null || !('_bindings' in target)) {
    throw new InvalidArgumentError('installNobleBindings needs a Noble instance (e.g. the default export of @stoprocent/noble)');
  }
  if (target._initialized === true || target.initialized === true) {
    throw new InvalidArgumentError('This Noble instance already started its own bindings: install the proxy bindings before first use');
  }
  const bindings = createNobleBindings(source, options);
  // noble 2.x subscribes to its bindings' events when it starts them; 1.x in its constructor, so its listeners
  // sit on the bindings it was built with (the HCI ones of the default export) and would never hear ours.
  const previous = target._bindings;
  if (previous instanceof EventEmitter) {
    for (const event of previous.eventNames()) {
      for (const listener of previous.listeners(event) as Array<(...args: unknown[]) => void>) {
        previous.removeListener(event, listener);
        bindings.on(event, listener);
      }
    }
  }
  target._bindings = bindings;
  return bindings;
}
