/**
 * Language features that third-party clients under test use but Node 20 lacks.
 * Each is installed only where the runtime does not already provide it, so Node 22+ runs the real thing.
 */

interface Resolvers<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
}

type PromiseWithResolvers = PromiseConstructor & { withResolvers?: <T>() => Resolvers<T> };

/** `Promise.withResolvers` (ES2024, Node 22): esphome-client 2.x calls it in its transport and request correlator. */
export function installPromiseWithResolvers(): void {
  const ctor = Promise as PromiseWithResolvers;
  if (typeof ctor.withResolvers === 'function') return;
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function withResolvers<T>(this: PromiseConstructor): Resolvers<T> {
      let resolve!: Resolvers<T>['resolve'];
      let reject!: Resolvers<T>['reject'];
      const promise = new this<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}

installPromiseWithResolvers();
