import { formatMac } from '../bluetooth/address.js';
import { EspApiError, type RouteDecision } from '../errors.js';
import type { EstablishOptions } from './pool-options.js';
import type { PoolWaits } from './pool-waits.js';
import type { ProxyMember } from './proxy-member.js';
import { type AttemptFailure, classifyAttemptError, unavailableError, unusableError } from './retry-policy.js';
import type { PoolRouter, ResolvedRoute, RoutePlan } from './routing.js';
import type { ScoreBreakdown } from './scoring.js';
import type { SlotQueue } from './slot-queue.js';

/** How long one attempt waits for a slot when every proxy that hears the device is full (bleak-esphome waits 2 s). */
export const SLOT_WAIT_MS = 2_000;
/**
 * How long one attempt waits for some proxy to hear a device it does not know yet (at start-up adverts trickle in),
 * or for a proxy the route allows to be able to connect (reconnecting, say).
 */
export const NOT_FOUND_WAIT_MS = 2_000;

/** The proxy an attempt goes to (its slot lease booked), or why there is none. */
export type Picked =
  | { proxy: ProxyMember; ranking: ScoreBreakdown | undefined; decisions: RouteDecision[]; route: ResolvedRoute }
  | { failure: AttemptFailure; error: EspApiError; decisions: RouteDecision[]; route: ResolvedRoute };

/** What the picker uses of its pool. */
export interface PickerHost {
  readonly router: PoolRouter;
  readonly waits: PoolWaits;
  readonly slotQueue: SlotQueue;
  proxy(id: string): ProxyMember | undefined;
}

/** A proxy that hears the device and could take the connect now or after a wait (a slot freed, a backoff over). */
function isCandidate(r: ScoreBreakdown): boolean {
  return r.eligible || r.reason === 'no free slot' || (r.reason?.startsWith('backing off') ?? false);
}

/** Chooses the proxy of each connect attempt of a pool: where the route sends it, after the waits it needs. */
export class ProxyPicker {
  readonly #host: PickerHost;

  constructor(host: PickerHost) {
    this.#host = host;
  }

  /**
   * Picks the proxy the route puts first and books a slot lease on it. Waits, each bounded by the not-found wait,
   * for a proxy the route allows to be able to connect (offline and reconnecting, another client's subscription, a
   * name not known yet), for the device to be heard (by the pinned or bonded proxy too, on the first attempt), and,
   * when every proxy that hears it is full, in the fair slot queue; else says why not. Rejects at once when every
   * proxy the route allows is unusable for a reason retrying cannot fix. The route is resolved anew on each look:
   * a proxy named in it may have identified itself meanwhile.
   */
  async pick(address: number, label: string, options: EstablishOptions, signal: AbortSignal, patient: boolean): Promise<Picked> {
    const mac = formatMac(address);
    const notFoundWait = options.notFoundWait ?? NOT_FOUND_WAIT_MS;
    const router = this.#host.router;
    let route = router.resolve(address, options);
    const failFast = (): void => {
      route = router.resolve(address, options);
      const causes = router.unusable(route);
      if (causes !== undefined) throw unusableError(`Connecting to ${label}`, causes);
    };
    // A wait's condition, looked at on every proxy change: met, or the proxies became unusable for good.
    const until = (met: (route: ResolvedRoute) => boolean) => (): boolean => {
      let now: ResolvedRoute;
      try {
        now = router.resolve(address, options);
      } catch {
        return true; // the names can be checked now: failFast throws it
      }
      return router.unusable(now) !== undefined || met(now);
    };
    const usable = (plan: RoutePlan): ScoreBreakdown[] => plan.ranking.filter(isCandidate);
    failFast();
    if (!router.anyCanConnect(route)) {
      await this.#host.waits.wait(notFoundWait, signal, { until: until((r) => router.anyCanConnect(r)) });
      failFast();
      if (!router.anyCanConnect(route)) {
        const unknown = route.require?.length === 0 ? route.unknown : [];
        const error = unavailableError(`Connecting to ${label}`, router.unavailable(route), unknown);
        return { failure: classifyAttemptError(error).failure, error, decisions: router.plan(address, mac, route).decisions, route };
      }
    }
    let plan = router.plan(address, mac, route);
    if (usable(plan).length === 0) {
      const by = new Set(router.allowed(route));
      await this.#host.waits.wait(notFoundWait, signal, {
        address,
        by,
        until: until((r) => usable(router.plan(address, mac, r)).length > 0),
      });
      failFast();
      plan = router.plan(address, mac, route);
      if (usable(plan).length === 0) {
        const why = plan.ranking.map((r) => `${r.proxy}: ${r.reason}`).join(', ');
        const message = why === '' ? `No proxy hears ${mac}` : `No usable proxy hears ${mac} (${why})`;
        return { failure: 'notFound', error: new EspApiError('ESPAPI_ERR_DEVICE_NOT_FOUND', message), decisions: plan.decisions, route };
      }
    }
    // A pinned or bonded proxy that is up but has not heard the device yet (a fresh start) gets the not-found wait to
    // hear it before the connect falls back to the others: once per connect.
    const awaited = patient ? router.awaited(route, mac, plan) : [];
    if (awaited.length > 0) {
      await this.#host.waits.wait(notFoundWait, signal, { address, by: new Set(awaited), until: until(() => false) });
      failFast();
      plan = router.plan(address, mac, route);
    }
    const { ranking, decisions } = plan;
    const chosen = (id: string) => ({ proxy: this.#host.proxy(id)!, ranking: ranking.find((r) => r.proxy === id), decisions, route });
    const candidates = usable(plan);
    if (candidates.length === 0) {
      const message = `No usable proxy hears ${mac} (${ranking.map((r) => `${r.proxy}: ${r.reason}`).join(', ')})`;
      return { failure: 'notFound', error: new EspApiError('ESPAPI_ERR_DEVICE_NOT_FOUND', message), decisions, route };
    }
    const best = ranking[0]!;
    if (best.eligible && !this.#host.slotQueue.hasWaiterFor(candidates.map((r) => r.proxy))) {
      this.#host.proxy(best.proxy)!.lease(address);
      return chosen(best.proxy);
    }
    // Everyone who hears the device is busy (or someone queued first): wait our turn, bounded. When every one is only
    // backing off (after 0x100, say), wait the backoff out and try again, as bleak-retry-connector sleeps it out.
    const backingOff = candidates.filter((r) => r.reason?.startsWith('backing off'));
    const untilBackoffEnds = Math.min(...backingOff.map((r) => (this.#host.proxy(r.proxy)?.backoffUntil.get(address) ?? 0) - Date.now()));
    const waitMs = Math.max(0, backingOff.length === candidates.length ? untilBackoffEnds : (options.slotWait ?? SLOT_WAIT_MS));
    const waitController = new AbortController();
    const onAbort = (): void => waitController.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => waitController.abort(), waitMs);
    try {
      const granted = await this.#host.slotQueue.wait(
        candidates.map((r) => r.proxy),
        waitController.signal,
        (id) => this.#host.proxy(id)!.lease(address),
      );
      return chosen(granted);
    } catch {
      if (signal.aborted) throw signal.reason;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
    const after = this.#host.router.plan(address, mac, route);
    const first = after.ranking[0];
    if (first?.eligible && !this.#host.slotQueue.hasWaiterFor([first.proxy])) {
      this.#host.proxy(first.proxy)!.lease(address);
      return { proxy: this.#host.proxy(first.proxy)!, ranking: first, decisions: after.decisions, route };
    }
    return {
      failure: 'outOfSlots',
      error: new EspApiError('ESPAPI_ERR_OUT_OF_SLOTS', `Every proxy that hears ${mac} is out of connection slots`),
      decisions: after.decisions,
      route,
    };
  }
}
