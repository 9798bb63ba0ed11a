import { formatMac } from '../bluetooth/address.js';
import type { BluetoothProxy } from '../bluetooth/proxy-client.js';
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

/** What the guard may look at and do on the pool's proxies. */
export interface GhostHost {
  /** The proxy's slot list, when we hold its subscription (else undefined: our DISCONNECT's answer would go elsewhere). */
  allocated(proxy: string): readonly number[] | undefined;
  /** True while a connect or link of ours to `address` exists (on any proxy). */
  busy(address: number): boolean;
  /** Sends DISCONNECT for `address` on `proxy` (best effort). */
  release(proxy: string, address: number): Promise<void>;
}

/** A ghost link's DISCONNECT waits this long for the proxy's answer (best effort; the proxy is misbehaving already). */
const GHOST_RELEASE_TIMEOUT_MS = 2_000;

/** The guard's view of a pool: each proxy's Bluetooth client by id, and whether we are connecting to an address. */
export function proxyGhostHost(bluetoothOf: (proxy: string) => BluetoothProxy | undefined, busy: (address: number) => boolean): GhostHost {
  return {
    allocated: (proxy) => {
      const bluetooth = bluetoothOf(proxy);
      return bluetooth?.subscription.state === 'subscribed' ? bluetooth.slots?.allocated : undefined;
    },
    busy,
    release: async (proxy, address) => {
      await bluetoothOf(proxy)
        ?.releaseSlot(address, { timeout: GHOST_RELEASE_TIMEOUT_MS })
        .catch(() => {});
    },
  };
}

interface Watched {
  readonly proxy: string;
  readonly address: number;
  readonly endedAt: number;
  heardSince: boolean;
}

/** One ghost found: where, which device, and the sign. */
export interface Ghost {
  readonly proxy: string;
  readonly address: number;
  readonly sign: 'listed' | 'silent';
  readonly sinceMs: number;
}

/**
 * The ghost-link guard: remembers the proxy that last held each device we let go, and sends a DISCONNECT there
 * when that proxy still lists the device's slot after the teardown should be done, or when the device stays
 * silent right after (bleak-esphome PR #422, home-assistant/core#176516). Never for a device another client
 * connected since (the proxy reports that connection to us, its subscriber), nor while we connect to it.
 */
export class GhostLinkGuard {
  readonly #host: GhostHost;
  readonly #settleMs: number;
  readonly #silenceMs: number;
  readonly #watched = new Map<number, Watched>();
  readonly #recent = new Map<number, RouteDecision[]>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(host: GhostHost, options: GhostLinkOptions = {}) {
    this.#host = host;
    this.#settleMs = options.settleDelay ?? GHOST_SETTLE_MS;
    this.#silenceMs = options.silenceDelay ?? GHOST_SILENCE_MS;
  }

  /** Our link (or an attempt we cancelled) to `address` through `proxy` ended. */
  linkEnded(proxy: string, address: number, now = Date.now()): void {
    if (this.#closed) return;
    this.#watched.delete(address);
    this.#watched.set(address, { proxy, address, endedAt: now, heardSince: false });
    if (this.#watched.size > MAX_WATCHED) this.#watched.delete(this.#watched.keys().next().value as number);
    this.#arm();
  }

  /** Some proxy heard `address` advertise (the hot path: one Map lookup). */
  heard(address: number): void {
    if (this.#watched.size === 0) return;
    const watched = this.#watched.get(address);
    if (watched !== undefined) watched.heardSince = true;
  }

  /** A proxy reported `address` connected (ours or another client's): whatever held it before is not a ghost. */
  connected(proxy: string, address: number): void {
    if (this.#watched.get(address)?.proxy === proxy) this.#watched.delete(address);
  }

  /** The ghosts known now: all of them, or of one device. */
  ghosts(now = Date.now(), address?: number): Ghost[] {
    const out: Ghost[] = [];
    const entries = address === undefined ? this.#watched.values() : [this.#watched.get(address)].filter((w) => w !== undefined);
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

  /** What the guard would do for `address` now, as decisions (for explain). */
  pending(address: number, now = Date.now()): RouteDecision[] {
    return this.ghosts(now, address).map((g) => ({ kind: 'ghost', proxy: g.proxy, detail: describe(g, 'would get') }));
  }

  /** Releases the ghosts of one device (before a connect) or of all; resolves with what it did. */
  async heal(address?: number, now = Date.now()): Promise<RouteDecision[]> {
    const done: RouteDecision[] = [];
    for (const ghost of this.ghosts(now, address)) {
      this.#watched.delete(ghost.address);
      const decision: RouteDecision = { kind: 'ghost', proxy: ghost.proxy, detail: describe(ghost, 'got') };
      // Released for a connect: that connect reports it. Released on its own: the device's next connect does.
      if (address === undefined) {
        const recent = [...(this.#recent.get(ghost.address) ?? []), decision].slice(-RECENT_PER_DEVICE);
        this.#recent.delete(ghost.address);
        this.#recent.set(ghost.address, recent);
        if (this.#recent.size > MAX_WATCHED) this.#recent.delete(this.#recent.keys().next().value as number);
      }
      done.push(decision);
      await this.#host.release(ghost.proxy, ghost.address);
    }
    this.#forgetSettled(now);
    this.#arm();
    return done;
  }

  /** Stops the timer; nothing is watched any more. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#watched.clear();
  }

  #signOf(w: Watched, now: number): Ghost['sign'] | undefined {
    if (this.#host.busy(w.address)) return undefined;
    const allocated = this.#host.allocated(w.proxy);
    if (allocated === undefined) return undefined;
    const age = now - w.endedAt;
    if (age >= this.#settleMs && allocated.includes(w.address)) return 'listed';
    if (age >= this.#silenceMs && !w.heardSince) return 'silent';
    return undefined;
  }

  /** Links whose slot is gone and whose device was heard again are settled: nothing more can come of them. */
  #forgetSettled(now: number): void {
    for (const [address, w] of this.#watched) {
      const allocated = this.#host.allocated(w.proxy);
      const settled = now - w.endedAt >= this.#settleMs && w.heardSince && allocated !== undefined && !allocated.includes(address);
      if (settled || now - w.endedAt >= 4 * this.#silenceMs) this.#watched.delete(address);
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
      for (const due of [w.endedAt + this.#settleMs, w.endedAt + this.#silenceMs]) if (due > now) next = Math.min(next, due);
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
