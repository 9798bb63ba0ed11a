import { formatMac } from '../bluetooth/address.js';
import { BluetoothProxyFeature } from '../bluetooth/features.js';
import type { BluetoothProxy, SlotState } from '../bluetooth/proxy-client.js';
import type { RouteDecision } from '../errors.js';

/**
 * After our link to a device ended, the proxy should free the slot within a moment (the firmware frees it on the
 * close event, ~100 ms after the disconnect). Still listed 5 s later, far beyond a healthy teardown even on a
 * congested Wi-Fi, the link is a ghost: the proxy never completed the disconnect (home-assistant/core#176516 saw one
 * address allocated on five proxies).
 */
export const GHOST_SETTLE_MS = 5_000;
/**
 * A device that advertised before our link and stays silent this long after it ended is likely still held by the
 * proxy's controller (a connected peripheral stops advertising). 15 s is several advertising intervals of the slow
 * advertisers of a home (1–10 s), so a quiet but free device is rarely taken for a ghost, and a wrong guess costs
 * one DISCONNECT for an address without a slot, which the firmware answers harmlessly (spec §6.7).
 */
export const GHOST_SILENCE_MS = 15_000;
/** Links remembered at most: the newest ended links of a large home; older ones are forgotten first. */
const MAX_WATCHED = 1024;
/** Ghost releases remembered per device for the next connect's timeline and for explain. */
const RECENT_PER_DEVICE = 4;

/** Tuning of the ghost-link guard (`ProxyPoolOptions.ghostLinks`; false switches it off). */
export interface GhostLinkOptions {
  /** A slot still listed this long after our link ended is released (default 5 s). */
  settleDelay?: number;
  /** A device silent this long after our link ended gets a DISCONNECT on that proxy (default 15 s). */
  silenceDelay?: number;
}

/** A fresh look at one proxy: are we still its Bluetooth subscriber, and which slots does it hold right now. */
export interface GhostCheck {
  readonly subscriber: boolean;
  readonly slots: SlotState;
}

/** What the guard may look at and do on the pool's proxies. */
export interface GhostHost {
  /** The proxy's last slot report while we hold its subscription (undefined otherwise: it may be stale). */
  slots(proxy: string): SlotState | undefined;
  /** True while a connect or link of ours to `address` exists (on any proxy). */
  busy(address: number): boolean;
  /** True when another user of the proxy's session (a relay's client) holds `address` there: never ours to release. */
  heldElsewhere(proxy: string, address: number): boolean;
  /**
   * The subscriber probe and a fresh slot query (message 80, answered to whoever asks): undefined when the proxy
   * cannot be asked (offline, not subscribed, no active connections) or did not answer.
   */
  check(proxy: string): Promise<GhostCheck | undefined>;
  /** Sends DISCONNECT for `address` on `proxy` unless a link or connect of ours to it exists at that moment; true when sent. */
  release(proxy: string, address: number): Promise<boolean>;
}

/** A ghost link's probe and DISCONNECT wait this long for the proxy (best effort; the proxy is misbehaving already). */
const GHOST_RELEASE_TIMEOUT_MS = 2_000;

/**
 * The guard's view of a pool: each proxy's Bluetooth client by id, whether we are connecting to an address, and
 * whether a relay client holds it on a shared session.
 */
export function proxyGhostHost(
  bluetoothOf: (proxy: string) => BluetoothProxy | undefined,
  busy: (address: number) => boolean,
  heldElsewhere: (proxy: string, address: number) => boolean = () => false,
): GhostHost {
  const subscribed = (proxy: string): BluetoothProxy | undefined => {
    const bluetooth = bluetoothOf(proxy);
    return bluetooth !== undefined && !bluetooth.api.isClosed && bluetooth.subscription.state === 'subscribed' ? bluetooth : undefined;
  };
  return {
    slots: (proxy) => subscribed(proxy)?.slots,
    busy,
    heldElsewhere,
    check: async (proxy) => {
      const bluetooth = subscribed(proxy);
      if (bluetooth === undefined || !bluetooth.hasFeature(BluetoothProxyFeature.ACTIVE_CONNECTIONS)) return undefined;
      return bluetooth.probeSubscriber({ timeout: GHOST_RELEASE_TIMEOUT_MS }).catch(() => undefined);
    },
    release: async (proxy, address) => {
      const bluetooth = subscribed(proxy);
      // Checked in the same tick as the DISCONNECT goes out: releaseSlot would end a link of ours to the address.
      if (bluetooth === undefined || busy(address) || bluetooth.links.has(address) || heldElsewhere(proxy, address)) return false;
      // It rejects only before sending (subscription gone, session closed); a missing answer is waited out and ignored.
      return bluetooth.releaseSlot(address, { timeout: GHOST_RELEASE_TIMEOUT_MS }).then(
        () => true,
        () => false,
      );
    },
  };
}

/** True when a slot report lists every taken slot (firmware from 2025 on; before, `allocated` is never sent). */
function listsAllocated(slots: SlotState): boolean {
  return slots.allocated.length > 0 || slots.free >= slots.limit;
}

/** True when `slots` says the proxy holds no slot for `address` (only a report that lists its slots can say so). */
function freed(slots: SlotState, address: number): boolean {
  return listsAllocated(slots) ? !slots.allocated.includes(address) : false;
}

interface Watched {
  readonly key: string;
  readonly proxy: string;
  readonly address: number;
  readonly endedAt: number;
  heardSince: boolean;
  /** A `connected=false` for the address reached us from that proxy: it answered our disconnect (we were its subscriber). */
  confirmed: boolean;
  /** Not checked again before this time (a check that could not prove we are still the subscriber). */
  retryAt: number;
}

/** One ghost found: where, which device, and the sign. */
export interface Ghost {
  readonly proxy: string;
  readonly address: number;
  readonly sign: 'listed' | 'silent';
  readonly sinceMs: number;
}

const keyOf = (proxy: string, address: number): string => `${address}|${proxy}`;

/**
 * The ghost-link guard: remembers each (proxy, device) link of ours that ended, and sends a DISCONNECT there when
 * that proxy kept listing the device's slot the whole time since (bleak-esphome PR #422, home-assistant/core#176516),
 * or on firmware without slot lists when the device stays silent. It never acts on another client's link: not when
 * a slot report showed the slot freed since (a later listing is someone else's connect), not for a device another
 * client connected (the proxy reports that to us, its subscriber), not when the proxy never confirmed our
 * disconnect (its answers went elsewhere: a newer subscriber took the proxy), and only after a fresh slot query
 * behind the subscriber probe proves we still are the subscriber and the slot still listed.
 */
export class GhostLinkGuard {
  readonly #host: GhostHost;
  readonly #settleMs: number;
  readonly #silenceMs: number;
  readonly #watched = new Map<string, Watched>();
  /** The same entries by device, for the advertisement hot path. */
  readonly #byAddress = new Map<number, Set<Watched>>();
  /** When each (proxy, device) last reported `connected=false`, bounded like the watched links. */
  readonly #downAt = new Map<string, number>();
  readonly #recent = new Map<number, RouteDecision[]>();
  /** Checks running, by key: a connect waits for those of its device; the timer skips them. */
  readonly #inFlight = new Map<string, { address: number; done: Promise<void> }>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(host: GhostHost, options: GhostLinkOptions = {}) {
    this.#host = host;
    this.#settleMs = options.settleDelay ?? GHOST_SETTLE_MS;
    this.#silenceMs = options.silenceDelay ?? GHOST_SILENCE_MS;
  }

  /**
   * Our link (or an attempt we cancelled) to `address` through `proxy`, begun at `since` (ms since the epoch), ended.
   * Nothing to watch when the proxy's slot report already shows the slot free.
   */
  linkEnded(proxy: string, address: number, since: number, now = Date.now()): void {
    if (this.#closed) return;
    const key = keyOf(proxy, address);
    this.#forget(key);
    const slots = this.#host.slots(proxy);
    if (slots !== undefined && freed(slots, address)) return;
    const confirmed = (this.#downAt.get(key) ?? Number.NEGATIVE_INFINITY) >= since;
    const watched: Watched = { key, proxy, address, endedAt: now, heardSince: false, confirmed, retryAt: 0 };
    this.#watched.set(key, watched);
    let forAddress = this.#byAddress.get(address);
    if (forAddress === undefined) this.#byAddress.set(address, (forAddress = new Set()));
    forAddress.add(watched);
    if (this.#watched.size > MAX_WATCHED) this.#forget(this.#watched.keys().next().value as string);
    this.#arm();
  }

  /** `proxy` reported `connected=false` for `address` (to us, its subscriber): it answered a disconnect there. */
  down(proxy: string, address: number, now = Date.now()): void {
    if (this.#closed) return;
    const key = keyOf(proxy, address);
    this.#downAt.delete(key);
    this.#downAt.set(key, now);
    if (this.#downAt.size > MAX_WATCHED) this.#downAt.delete(this.#downAt.keys().next().value as string);
    const watched = this.#watched.get(key);
    if (watched !== undefined) watched.confirmed = true;
  }

  /** Some proxy heard `address` advertise (the hot path: one Map lookup). */
  heard(address: number): void {
    if (this.#watched.size === 0) return;
    const watched = this.#byAddress.get(address);
    if (watched !== undefined) for (const w of watched) w.heardSince = true;
  }

  /** A proxy reported `address` connected (ours or another client's): whatever held it before is not a ghost. */
  connected(proxy: string, address: number): void {
    this.#forget(keyOf(proxy, address));
  }

  /**
   * A slot report of `proxy`: a watched slot it no longer lists was freed, so the link is gone for good, and a later
   * listing of the address is another connect (another client's, still connecting, say): stop watching it.
   */
  slots(proxy: string, slots: SlotState): void {
    if (this.#watched.size === 0 || !listsAllocated(slots)) return;
    for (const w of this.#watched.values()) if (w.proxy === proxy && !slots.allocated.includes(w.address)) this.#forget(w.key);
  }

  /** The ghosts known now (by what the proxies last reported): all of them, or of one device. */
  ghosts(now = Date.now(), address?: number): Ghost[] {
    const out: Ghost[] = [];
    const entries = address === undefined ? this.#watched.values() : (this.#byAddress.get(address) ?? []);
    for (const w of entries) {
      const sign = this.#signOf(w, now);
      if (sign !== undefined) out.push({ proxy: w.proxy, address: w.address, sign, sinceMs: now - w.endedAt });
    }
    return out;
  }

  /** Ghost releases of `address` since its last connect (for explain; the connect takes them with takeRecent). */
  recent(address: number): readonly RouteDecision[] {
    return this.#recent.get(address) ?? [];
  }

  /** The ghost releases of `address` since its last connect, for that connect's timeline; forgets them. */
  takeRecent(address: number): RouteDecision[] {
    const recent = this.#recent.get(address) ?? [];
    this.#recent.delete(address);
    return recent;
  }

  /** What the guard would do for `address` now, as decisions (for explain; each is checked with the proxy first). */
  pending(address: number, now = Date.now()): RouteDecision[] {
    return this.ghosts(now, address).map((g) => ({ kind: 'ghost', proxy: g.proxy, detail: describe(g, 'would get') }));
  }

  /**
   * Checks and releases the ghosts of one device (before a connect to it: after the checks already running for it)
   * or of all. What was released is kept for `recent` / `takeRecent`.
   */
  async heal(address?: number, now = Date.now()): Promise<void> {
    if (address !== undefined) {
      const running = [...this.#inFlight.values()].filter((job) => job.address === address).map((job) => job.done);
      await Promise.allSettled(running);
    }
    const checks = new Map<string, Promise<GhostCheck | undefined>>();
    const jobs: Promise<void>[] = [];
    for (const ghost of this.ghosts(now, address)) {
      const key = keyOf(ghost.proxy, ghost.address);
      if (this.#inFlight.has(key)) continue;
      // One probe per proxy per run, however many of its links look like ghosts.
      let check = checks.get(ghost.proxy);
      if (check === undefined) checks.set(ghost.proxy, (check = this.#host.check(ghost.proxy)));
      const done = this.#healOne(key, ghost, check, now).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, { address: ghost.address, done });
      jobs.push(done);
    }
    await Promise.allSettled(jobs);
    this.#forgetSettled(now);
    this.#arm();
  }

  /** Stops the timer; nothing is watched any more. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#watched.clear();
    this.#byAddress.clear();
    this.#downAt.clear();
  }

  async #healOne(key: string, ghost: Ghost, check: Promise<GhostCheck | undefined>, now: number): Promise<void> {
    const watched = this.#watched.get(key);
    if (watched === undefined) return;
    const fresh = await check;
    if (this.#closed || this.#watched.get(key) !== watched) return;
    if (fresh === undefined || !fresh.subscriber) {
      // No proof that the proxy's answers still come to us (a newer client may hold it): act on nothing, look later.
      watched.retryAt = now + this.#settleMs;
      return;
    }
    if (freed(fresh.slots, ghost.address) || (!listsAllocated(fresh.slots) && fresh.slots.free >= fresh.slots.limit)) {
      this.#forget(key);
      return;
    }
    // A connect of ours may have begun while the proxy was asked: then its slot may be our new link (checked again
    // by the host in the very tick the DISCONNECT goes out).
    if (this.#host.busy(ghost.address) || !(await this.#host.release(ghost.proxy, ghost.address))) {
      watched.retryAt = now + this.#settleMs;
      return;
    }
    this.#forget(key);
    const decision: RouteDecision = { kind: 'ghost', proxy: ghost.proxy, detail: describe(ghost, 'got') };
    const recent = [...(this.#recent.get(ghost.address) ?? []), decision].slice(-RECENT_PER_DEVICE);
    this.#recent.delete(ghost.address);
    this.#recent.set(ghost.address, recent);
    if (this.#recent.size > MAX_WATCHED) this.#recent.delete(this.#recent.keys().next().value as number);
  }

  #signOf(w: Watched, now: number): Ghost['sign'] | undefined {
    if (!w.confirmed || w.retryAt > now || this.#host.busy(w.address) || this.#host.heldElsewhere(w.proxy, w.address)) return undefined;
    const slots = this.#host.slots(w.proxy);
    if (slots === undefined) return undefined;
    const age = now - w.endedAt;
    if (age >= this.#settleMs && listsAllocated(slots) && slots.allocated.includes(w.address)) return 'listed';
    if (age >= this.#silenceMs && !w.heardSince) return 'silent';
    return undefined;
  }

  #forget(key: string): void {
    const watched = this.#watched.get(key);
    if (watched === undefined) return;
    this.#watched.delete(key);
    const forAddress = this.#byAddress.get(watched.address);
    forAddress?.delete(watched);
    if (forAddress?.size === 0) this.#byAddress.delete(watched.address);
  }

  /** Links whose device was heard again after the settle delay, and very old ones: nothing more can come of them. */
  #forgetSettled(now: number): void {
    for (const w of [...this.#watched.values()]) {
      const slots = this.#host.slots(w.proxy);
      const settled = now - w.endedAt >= this.#settleMs && w.heardSince && slots !== undefined && freed(slots, w.address);
      if (settled || now - w.endedAt >= 4 * this.#silenceMs) this.#forget(w.key);
    }
  }

  /** One timer for the next moment a watched link could become a ghost. */
  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#closed || this.#watched.size === 0) return;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const w of this.#watched.values()) {
      for (const due of [w.endedAt + this.#settleMs, w.endedAt + this.#silenceMs, w.retryAt]) if (due > now) next = Math.min(next, due);
    }
    // Every link is past both delays: what is left is checked again once the silence delay has passed once more.
    const wait = Number.isFinite(next) ? next - now : this.#silenceMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.heal().catch(() => {});
    }, wait);
    this.#timer.unref?.();
  }
}

function describe(ghost: Ghost, verb: string): string {
  const seconds = Math.round(ghost.sinceMs / 100) / 10;
  const why =
    ghost.sign === 'listed'
      ? `still lists ${formatMac(ghost.address)} allocated ${seconds} s after our link ended`
      : `${formatMac(ghost.address)} went silent after our link through it ended (${seconds} s)`;
  return `${ghost.proxy} ${why}: it ${verb} a DISCONNECT for it`;
}
