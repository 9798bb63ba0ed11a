import { DEFAULT_API_PORT } from '../connection/connection.js';
import { InvalidArgumentError, type ProxyCause, type RouteDecision } from '../errors.js';
import type { ProxyMember } from './proxy-member.js';
import type { ScoreBreakdown } from './scoring.js';

/**
 * Where a device may and should connect: kept per device by the pool (`ProxyPoolOptions.routes`, `pool.setRoute`)
 * and given per call (`establishConnection` options, which win field by field). A proxy is named by its pool id,
 * node name, host, `host:port`, or MAC (network or Bluetooth, any spelling).
 */
export interface DeviceRoute {
  /**
   * Pin with fallback (habluetooth PR #604): these proxies go first, in this order, whenever they can take the
   * connect (online, hearing the device, a slot free, not backing off), whatever their score; otherwise the
   * others are tried by score. A preference, never a reason to fail.
   */
  prefer?: readonly string[] | undefined;
  /** Only these proxies. */
  require?: readonly string[] | undefined;
  /** Never these proxies. */
  exclude?: readonly string[] | undefined;
}

/** A route with every proxy name resolved to pool ids. */
export interface ResolvedRoute {
  readonly require: readonly string[] | undefined;
  readonly exclude: readonly string[];
  /** Pinned proxies by id, in order. */
  readonly prefer: readonly string[];
  /** Names that match no proxy of the pool (yet: a proxy still connecting or to be discovered may match later). */
  readonly unknown: readonly string[];
}

/** The proxies in the order a connect tries them, with the decisions that changed the order or the set. */
export interface RoutePlan {
  readonly ranking: ScoreBreakdown[];
  readonly decisions: RouteDecision[];
}

/** 12 lower-case hex digits of a MAC in any spelling, or undefined for anything else. */
function macKey(text: string): string | undefined {
  const hex = text.replace(/[:-]/g, '').toLowerCase();
  return /^[0-9a-f]{12}$/.test(hex) ? hex : undefined;
}

/** True when `ref` names `proxy`: its pool id, node name, host, host:port, or network or Bluetooth MAC. */
export function proxyMatches(proxy: ProxyMember, ref: string): boolean {
  if (ref === proxy.id || ref === proxy.config.host || ref === `${proxy.config.host}:${proxy.config.port ?? DEFAULT_API_PORT}`) return true;
  const identity = proxy.identity;
  if (ref === identity.name) return true;
  const mac = macKey(ref);
  return mac !== undefined && (mac === identity.mac || mac === identity.bluetoothMac);
}

/**
 * The pool id of the proxy holding a device's bond: the proxy with the bond's Bluetooth MAC (renamed or readdressed
 * since, it is still the controller that holds the key), else the one its recorded id names, else that id as it was
 * (a proxy no longer in the pool: routing reports it as a fallback).
 */
export function bondedProxy(
  proxies: readonly ProxyMember[],
  bond: { proxy: string; bluetoothMac?: string | undefined } | undefined,
): string | undefined {
  if (bond === undefined) return undefined;
  const byMac = bond.bluetoothMac === undefined ? undefined : proxies.find((p) => p.identity.bluetoothMac === bond.bluetoothMac);
  return (byMac ?? proxies.find((p) => proxyMatches(p, bond.proxy)))?.id ?? bond.proxy;
}

/**
 * Resolves the names of a route to pool ids. A name that matches no proxy is left out and reported (`unknown`), so
 * a pinned proxy or a pool-level route never fails a connect; only `strict` names (a call's own require and
 * exclude, in a pool without discovery whose proxies have all been identified) make it an InvalidArgumentError, as
 * does a call's `require` that `exclude` empties: such a connect could never succeed. A `require` none of whose
 * names matches allows no proxy at all (an empty list), never every proxy.
 */
export function resolveRoute(proxies: readonly ProxyMember[], route: DeviceRoute, strict?: StrictNames): ResolvedRoute {
  const unknown: string[] = [];
  const ids = (refs: readonly string[] | undefined): string[] => {
    const out: string[] = [];
    for (const ref of refs ?? []) {
      const matched = proxies.filter((p) => proxyMatches(p, ref));
      if (matched.length === 0 && !unknown.includes(ref)) unknown.push(ref);
      for (const p of matched) if (!out.includes(p.id)) out.push(p.id);
    }
    return out;
  };
  const require = route.require === undefined || route.require.length === 0 ? undefined : ids(route.require);
  const exclude = ids(route.exclude);
  const prefer = ids(route.prefer);
  if (strict !== undefined) {
    const known = proxies.map((p) => p.id).join(', ');
    const refused = [...(strict.require ?? []), ...(strict.exclude ?? [])].filter((name) => unknown.includes(name));
    if (refused.length > 0) {
      throw new InvalidArgumentError(
        `No proxy of the pool is named ${[...new Set(refused)].map((u) => JSON.stringify(u)).join(', ')} (the pool has ${known})`,
      );
    }
    if (strict.require !== undefined && strict.require.length > 0 && require?.length && require.every((id) => exclude.includes(id))) {
      throw new InvalidArgumentError(`require names only proxies that exclude removes: no proxy is left (${require.join(', ')})`);
    }
  }
  return { require, exclude, prefer, unknown };
}

/** The names a connect's own options gave, which may fail it at once when they match no proxy (see resolveRoute). */
export interface StrictNames {
  readonly require?: readonly string[] | undefined;
  readonly exclude?: readonly string[] | undefined;
}

/** The pool's proxies a connect may use under `route` (require and exclude applied). */
export function candidateProxies(proxies: Iterable<ProxyMember>, route: ResolvedRoute): ProxyMember[] {
  const out: ProxyMember[] = [];
  for (const proxy of proxies) {
    if (route.require !== undefined && !route.require.includes(proxy.id)) continue;
    if (route.exclude.includes(proxy.id)) continue;
    out.push(proxy);
  }
  return out;
}

/**
 * The causes when every proxy a connect may use is unusable for a reason retrying cannot fix (wrong key, another
 * device at the address...), else undefined: then the connect fails at once instead of waiting to hear the device.
 */
export function unusableCauses(candidates: readonly ProxyMember[]): ProxyCause[] | undefined {
  if (candidates.length === 0) return undefined;
  const causes: ProxyCause[] = [];
  for (const proxy of candidates) {
    const problem = proxy.connectProblem;
    if (problem === undefined) return undefined;
    causes.push(problem);
  }
  return causes;
}

/** Causes of the proxies a connect may use that are unusable for good (for the final error's `unusable`). */
export function unusableAmong(candidates: readonly ProxyMember[]): ProxyCause[] {
  return candidates.flatMap((p) => p.connectProblem ?? []);
}

/**
 * Puts a scored ranking in the order a connect tries it. Eligible proxies stay ahead of the rest; among them the
 * proxy holding the device's bond goes first (a bond lives in one proxy's controller: habluetooth#628), then the
 * pinned ones in their order, then the rest by score (a stable sort, as habluetooth PR #604 applies its pin).
 */
export function planRoute(ranking: readonly ScoreBreakdown[], route: ResolvedRoute, bond: string | undefined): RoutePlan {
  const decisions: RouteDecision[] = [];
  if (route.require !== undefined) {
    const only =
      route.require.length === 0 ? 'require names no proxy of the pool: none may connect' : `only ${route.require.join(', ')} may connect`;
    decisions.push({ kind: 'require', proxy: undefined, detail: only });
  }
  if (route.exclude.length > 0)
    decisions.push({ kind: 'exclude', proxy: undefined, detail: `${route.exclude.join(', ')} may not connect` });
  for (const name of route.unknown) {
    decisions.push({ kind: 'fallback', proxy: undefined, detail: `${JSON.stringify(name)} names no proxy of the pool (yet): left out` });
  }
  const bondId = bond !== undefined && !route.exclude.includes(bond) && (route.require?.includes(bond) ?? true) ? bond : undefined;
  if (bond !== undefined && bondId === undefined) {
    decisions.push({ kind: 'fallback', proxy: bond, detail: `the device is bonded through ${bond}, which this connect may not use` });
  }
  const rankOf = (r: ScoreBreakdown): number => {
    if (!r.eligible) return Number.POSITIVE_INFINITY;
    if (r.proxy === bondId) return 0;
    const pinned = route.prefer.indexOf(r.proxy);
    return pinned >= 0 ? 1 + pinned : route.prefer.length + 1;
  };
  const ordered = ranking
    .map((r, index) => ({ r, index, rank: rankOf(r) }))
    .sort((a, b) => a.rank - b.rank || a.index - b.index)
    .map((x) => x.r);
  const first = ordered[0];
  const bestByScore = ranking.find((r) => r.eligible);
  for (const wanted of [...(bondId === undefined ? [] : [bondId]), ...route.prefer]) {
    const kind = wanted === bondId ? 'bond' : 'prefer';
    const why = kind === 'bond' ? 'holds the bond' : 'is pinned';
    const entry = ranking.find((r) => r.proxy === wanted);
    if (entry?.eligible) {
      if (first?.proxy === wanted) {
        const over = bestByScore !== undefined && bestByScore.proxy !== wanted ? `, ahead of ${bestByScore.proxy} (better score)` : '';
        decisions.push({ kind, proxy: wanted, detail: `${wanted} ${why} and goes first${over}` });
      }
      break;
    }
    const reason = entry === undefined ? 'does not hear the device' : (entry.reason ?? 'cannot connect now');
    decisions.push({ kind: 'fallback', proxy: wanted, detail: `${wanted} ${why} but ${reason}: the others are tried by score` });
  }
  return { ranking: ordered, decisions };
}

/** What the router reads from its pool. */
export interface RouterHost {
  proxies(): readonly ProxyMember[];
  /** Proxies may still appear (discovery): a name matching nothing may match later. */
  readonly discovering: boolean;
  /** The proxy `mac` was paired through, from the GATT cache. */
  bondOf(mac: string): string | undefined;
  /** Scores the proxies that hear `address` (scoring.ts). */
  rank(proxies: Iterable<ProxyMember>, address: number, route: ResolvedRoute): ScoreBreakdown[];
}

/**
 * The pool's routing: per-device routes, pinned and bonded proxies first, require/exclude, and which proxies are
 * unusable for good. Kept apart from the connect loop, which asks it where to go and records what it decided.
 */
export class PoolRouter {
  readonly #host: RouterHost;
  readonly #routes = new Map<number, DeviceRoute>();

  constructor(host: RouterHost, routes: Readonly<Record<string, DeviceRoute>> = {}, parseMac: (mac: string) => number) {
    this.#host = host;
    for (const [mac, route] of Object.entries(routes)) this.#routes.set(parseMac(mac), route);
  }

  /** The pool's own route for a device (undefined: none). */
  routeOf(address: number): DeviceRoute | undefined {
    return this.#routes.get(address);
  }

  /** Sets (or with undefined clears) the pool's route for a device. */
  setRoute(address: number, route: DeviceRoute | undefined): void {
    if (route === undefined) this.#routes.delete(address);
    else this.#routes.set(address, route);
  }

  /** The route of one connect: the call's fields over the pool's route for the device, names resolved to ids. */
  resolve(address: number, call: DeviceRoute = {}): ResolvedRoute {
    const own = this.#routes.get(address) ?? {};
    const merged: DeviceRoute = {
      prefer: call.prefer ?? own.prefer,
      require: call.require ?? own.require,
      exclude: [...(own.exclude ?? []), ...(call.exclude ?? [])],
    };
    const proxies = this.#host.proxies();
    // Names can be checked only once every proxy has told its node name and MACs (or was configured by name).
    const identified = proxies.every((p) => p.config.name !== undefined || p.identity.name !== undefined);
    const strict = !this.#host.discovering && identified ? { require: call.require, exclude: call.exclude } : undefined;
    return resolveRoute(proxies, merged, strict);
  }

  /** The proxies in the order a connect tries them now, with the decisions behind the order. */
  plan(address: number, mac: string, route: ResolvedRoute): RoutePlan {
    const ranking = this.#host.rank(this.#host.proxies(), address, route);
    return planRoute(ranking, route, this.#host.bondOf(mac));
  }

  /** Pinned or bonded proxies the route allows that are up and able to connect but have not heard the device yet. */
  awaited(route: ResolvedRoute, mac: string, plan: RoutePlan): string[] {
    const bond = this.#host.bondOf(mac);
    const wanted = [...(bond === undefined ? [] : [bond]), ...route.prefer];
    const allowed = candidateProxies(this.#host.proxies(), route);
    return wanted.filter((id) => !plan.ranking.some((r) => r.proxy === id) && allowed.some((p) => p.id === id && p.canConnect));
  }

  /** Causes, when every proxy the route allows is unusable for good; else undefined. */
  unusable(route: ResolvedRoute): ProxyCause[] | undefined {
    return unusableCauses(candidateProxies(this.#host.proxies(), route));
  }

  /** Proxies the route allows that are unusable for good (for the final error). */
  unusableAmong(route: ResolvedRoute): ProxyCause[] {
    return unusableAmong(candidateProxies(this.#host.proxies(), route));
  }

  /** Ids of the proxies the route allows. */
  allowed(route: ResolvedRoute): string[] {
    return candidateProxies(this.#host.proxies(), route).map((p) => p.id);
  }

  /** True when some proxy the route allows can take a connect now (online, able to connect, our subscription). */
  anyCanConnect(route: ResolvedRoute): boolean {
    return candidateProxies(this.#host.proxies(), route).some((p) => p.canConnect);
  }

  /** Why each proxy the route allows cannot take a connect now (for good or for the moment). */
  unavailable(route: ResolvedRoute): ProxyCause[] {
    return candidateProxies(this.#host.proxies(), route).flatMap((p) => p.connectProblem ?? p.unavailable ?? []);
  }
}
