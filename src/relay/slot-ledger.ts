import type { SlotState } from '../bluetooth/proxy-client.js';

/** Who holds a slot of the upstream proxy through the relay: a downstream client, the in-process pool, or nobody any more. */
export type SlotHolder = object;

/** A slot whose holder went away: the relay disconnected it upstream and waits for the proxy to free it. */
export const RELEASING: SlotHolder = Object.freeze({ releasing: true });
/** A connect sent by the in-process pool over the shared upstream session. */
export const LOCAL: SlotHolder = Object.freeze({ local: true });

type Phase = 'pending' | 'held' | 'ending';

/** A slot report as one holder is shown it (the fields of BluetoothConnectionsFreeResponse). */
export interface SlotView {
  readonly free: number;
  readonly limit: number;
  readonly allocated: number[];
}

interface Entry {
  holder: SlotHolder;
  phase: Phase;
  /** Who held a RELEASING slot: it still counts against that holder's quota until the proxy frees it. */
  releasedBy?: SlotHolder;
  /**
   * Connects sent for the address that the proxy has not handled yet (`handled` ends them). Until then no
   * connected=false and no slot report can tell whether the proxy holds the slot: they may have been written before
   * the connect reached it (a link ending as its holder connects again, a stray answer to an earlier disconnect),
   * and the connect may still take the slot after them. So the entry stays, and counts, until they are handled.
   */
  inFlight: number;
  /** A connected=false arrived while connects were in flight (and no connected=true since). */
  endedInFlight: boolean;
  /**
   * A slot report arrived since the last connect went out. Until one has, a report that does not list the address
   * proves nothing: an upstream may answer the barrier's ping before its slot report (a relay in front of a relay).
   */
  reportedSinceConnect: boolean;
  /**
   * connected=true arrived since the last connect went out, and no connected=false and no DISCONNECT since: a
   * connect of its holder gets the firmware's answer for a connected address without going upstream.
   */
  up: boolean;
  /** A DISCONNECT for the address went out since the last connect: its link may be ending, whatever arrives meanwhile. */
  disconnecting: boolean;
  /** The relay's settling DISCONNECT (see `handled`) whose ping has not come back. */
  settling: Settle | undefined;
}

/** What `reserve` returns and `handled` takes: the reservation of one connect. */
export type Reservation = object;
/** What `settle` returns and `settled` takes: one settling DISCONNECT. */
export type Settle = object;

/**
 * Which address holds which upstream slot, and what each holder may see. The proxy's own counts lag behind
 * the relay: a connect the relay let through is not in the proxy's `allocated` until its next slot report,
 * so such "pending" reservations are subtracted from `free` for everyone. Firmware before 2025 sends no
 * `allocated` list: there the proxy's `free` is the truth once it has seen the connect, so a reservation
 * counts as held from the first slot report after it went upstream (the firmware answers an accepted
 * connect with one at once) or from its connected=true, and ends only with its connected=false.
 */
export class SlotLedger {
  #upstream: SlotState | undefined;
  #lastLimit = 0;
  /** The proxy has sent an `allocated` list (firmware from 2025); before 2025 it never does. */
  #listsSeen = false;
  readonly #entries = new Map<number, Entry>();
  #version = 0;

  /** The proxy has sent an `allocated` list: views list every slot of their holder, pending ones included. */
  get listsSeen(): boolean {
    return this.#listsSeen;
  }

  /** Grows with every change of the ledger: whoever shows views of it compares it to know when to show them again. */
  get version(): number {
    return this.#version;
  }

  /** The proxy's last report (undefined while the upstream is down). */
  get upstream(): SlotState | undefined {
    return this.#upstream;
  }

  /** Slots anyone may still take: the proxy's free count minus reservations it has not reported yet. */
  get free(): number {
    const upstream = this.#upstream;
    if (upstream === undefined) return 0;
    return Math.max(0, upstream.free - this.unreported);
  }

  /** Reservations (connects let through, or in flight) the proxy has not reported yet. */
  get unreported(): number {
    const allocated = this.#upstream?.allocated ?? [];
    let pending = 0;
    for (const [address, entry] of this.#entries) if (this.#unlisted(entry) && !allocated.includes(address)) pending++;
    return pending;
  }

  /** The configured slot count (the last known one while the upstream is down). */
  get limit(): number {
    return this.#upstream?.limit ?? this.#lastLimit;
  }

  /** Holder of `address`, if any. */
  holderOf(address: number): SlotHolder | undefined {
    return this.#entries.get(address)?.holder;
  }

  /** Addresses held by `holder`. */
  addressesOf(holder: SlotHolder): number[] {
    const out: number[] = [];
    for (const [address, entry] of this.#entries) if (entry.holder === holder) out.push(address);
    return out;
  }

  /**
   * How many slots the holders `match` accepts hold, a slot being released counted for the holder it was released
   * from: until the proxy frees it, it is as taken as before, so dropping links and taking others at once does
   * not buy a holder more than its quota.
   */
  count(match: (holder: SlotHolder) => boolean): number {
    let count = 0;
    for (const entry of this.#entries.values()) if (match(entry.releasedBy ?? entry.holder)) count++;
    return count;
  }

  /** Every address with its holder. */
  entries(): Array<[number, SlotHolder]> {
    return [...this.#entries].map(([address, entry]) => [address, entry.holder]);
  }

  /**
   * Books `address` for `holder` as its connect request goes upstream; the returned reservation goes to `handled`
   * once the proxy has handled the connect (UpstreamBarrier), and the slot counts as taken at least until then.
   */
  reserve(address: number, holder: SlotHolder): Reservation {
    let entry = this.#entries.get(address);
    if (entry === undefined || entry.holder !== holder) {
      entry = {
        holder,
        phase: 'pending',
        inFlight: 0,
        endedInFlight: false,
        reportedSinceConnect: false,
        up: false,
        disconnecting: false,
        settling: undefined,
      };
      this.#entries.set(address, entry);
      this.#version++;
    } else if (entry.phase === 'ending') {
      // A new connect while the old link is still being torn down: keep it through the report that frees the old slot.
      entry.phase = 'pending';
      this.#version++;
    }
    entry.inFlight++;
    entry.reportedSinceConnect = false;
    // A connected=false that arrived before this connect went out was written before the proxy read it: whatever it
    // ended, this connect's own handling tells what the proxy holds now.
    entry.endedInFlight = false;
    entry.up = false;
    entry.disconnecting = false;
    return entry;
  }

  /**
   * The proxy has handled the connect of `reservation` (everything it answered at once has arrived). With the last
   * of an address's connects handled, the proxy's last slot report is the truth about it: every reservation and
   * every freed slot is followed by one at once. Firmware without the `allocated` list (before 2025) reports counts
   * only: if a connected=false arrived meanwhile, it cannot be told whether it ended the old link (and the connect
   * then took the slot) or refused the connect. Returns true then, and the entry stays: the relay settles it with its
   * holder's next connect if one waits (handled after whatever ended, it shows what the proxy holds), else with a
   * DISCONNECT (`settle`), whose answer (connected=false, always given) ends the entry.
   */
  handled(address: number, reservation: Reservation): boolean {
    const entry = this.#entries.get(address);
    if (entry !== reservation || entry === undefined) return false;
    entry.inFlight--;
    if (entry.inFlight > 0) return false;
    const ended = entry.endedInFlight;
    entry.endedInFlight = false;
    const upstream = this.#upstream;
    if (upstream === undefined || !listsAllocated(upstream)) return ended;
    if (!upstream.allocated.includes(address)) {
      // No report since the connect went out: the next one decides (update), the slot counting as taken until then.
      if (!entry.reportedSinceConnect) return false;
      this.#entries.delete(address);
    } else if (entry.phase === 'pending') entry.phase = 'held';
    else return false; // nothing changed: no new views to push
    this.#version++;
    return false;
  }

  /**
   * The connect of `reservation` went out on a session that ended before its handling could be told (the barrier
   * could not be placed): it no longer keeps the entry. The session's end resets the ledger (the proxy drops every
   * link of a subscriber that went away) and tells each holder.
   */
  abandon(address: number, reservation: Reservation): void {
    const entry = this.#entries.get(address);
    if (entry === reservation && entry !== undefined && entry.inFlight > 0) entry.inFlight--;
  }

  /**
   * Where a connect of the holder of `address` stands: 'waiting' while one it sent is not handled yet or the relay is
   * settling the address (another connect would cross them), 'up' when its link is up as far as the proxy has said
   * (connected=true since the last connect, no connected=false or DISCONNECT since), else 'idle'. Undefined when
   * nobody holds it.
   */
  connectState(address: number): 'waiting' | 'up' | 'idle' | undefined {
    const entry = this.#entries.get(address);
    if (entry === undefined) return undefined;
    if (entry.inFlight > 0 || entry.settling !== undefined) return 'waiting';
    return entry.up ? 'up' : 'idle';
  }

  /** A DISCONNECT for `address` went out: until the next connect, nothing that arrives makes its link up again. */
  disconnecting(address: number): void {
    const entry = this.#entries.get(address);
    if (entry === undefined) return;
    entry.up = false;
    entry.disconnecting = true;
  }

  /**
   * The relay sends a settling DISCONNECT for `address` (`handled` asked for one); `settled` takes the returned token
   * once the ping behind it is answered. Undefined when nobody holds the address.
   */
  settle(address: number): Settle | undefined {
    const entry = this.#entries.get(address);
    if (entry === undefined) return undefined;
    this.disconnecting(address);
    entry.settling = {};
    return entry.settling;
  }

  /**
   * The settling DISCONNECT's ping came back: everything that arrived before was written before the proxy read any
   * connect sent after the DISCONNECT, so none of it is a connected=false for such a connect.
   */
  settled(address: number, settle: Settle): void {
    const entry = this.#entries.get(address);
    if (entry === undefined || entry.settling !== settle) return;
    entry.settling = undefined;
    entry.endedInFlight = false;
  }

  /** True while a settling DISCONNECT of `address` is on its way (its answers are the relay's, not news of a connect). */
  isSettling(address: number): boolean {
    return this.#entries.get(address)?.settling !== undefined;
  }

  /** Hands every slot of `holder` to RELEASING; returns their addresses. */
  release(holder: SlotHolder): number[] {
    const released: number[] = [];
    for (const [address, entry] of this.#entries) {
      if (entry.holder !== holder) continue;
      entry.holder = RELEASING;
      entry.releasedBy = holder;
      released.push(address);
    }
    if (released.length > 0) this.#version++;
    return released;
  }

  /** The proxy reported connected=true for `address`: it holds the slot, whatever its slot reports list. */
  connected(address: number): void {
    const entry = this.#entries.get(address);
    if (entry === undefined) return;
    entry.endedInFlight = false;
    // After a DISCONNECT this may be the link it is ending, coming up first: not one a connect can be answered with.
    if (!entry.disconnecting) entry.up = true;
    if (entry.phase !== 'pending') return;
    entry.phase = 'held';
    this.#version++;
  }

  /** The proxy reported connected=false for `address`: the slot is gone now, or once a slot report stops listing it. */
  ended(address: number): void {
    const entry = this.#entries.get(address);
    if (entry === undefined) return;
    entry.up = false;
    if (entry.inFlight > 0) {
      // The old link's end, or the connect's refusal: `handled` tells which from the slot report.
      entry.endedInFlight = true;
      return;
    }
    if (this.#upstream?.allocated.includes(address)) entry.phase = 'ending';
    else this.#entries.delete(address);
    this.#version++;
  }

  /** A slot report from the proxy. */
  update(slots: SlotState): void {
    this.#version++;
    this.#upstream = slots;
    this.#lastLimit = slots.limit;
    if (slots.allocated.length > 0) this.#listsSeen = true;
    if (!listsAllocated(slots)) {
      for (const entry of this.#entries.values()) if (entry.phase === 'pending') entry.phase = 'held';
      return;
    }
    for (const [address, entry] of this.#entries) {
      entry.reportedSinceConnect = true;
      const listed = slots.allocated.includes(address);
      if (listed) {
        if (entry.phase === 'pending') entry.phase = 'held';
      } else if (entry.inFlight === 0) {
        // A connect in flight may not have reached the proxy when it wrote this report: `handled` decides then.
        this.#entries.delete(address);
      }
    }
  }

  /** The upstream went away: every link is gone with it. Returns what each holder had. */
  reset(): Array<[number, SlotHolder]> {
    const had = this.entries();
    this.#version++;
    this.#entries.clear();
    this.#upstream = undefined;
    return had;
  }

  /**
   * What `holder` sees: a proxy with only the slots nobody else holds, as many of them as its `quota` leaves it.
   * Its own `allocated`, `free` = what it may still take, and `limit` = free + its own slots, so that `limit - free`
   * is its own count as on the firmware, where `free` and `allocated` are one fact: bleak-esphome checks
   * `len(allocated) == limit - free` on every report, warns when it does not add up and then stops reconciling its
   * links against the list. Firmware without the list (before 2025) sends none, so neither does the view.
   *
   * A holder with nothing, when nothing is left for it, would read limit 0, which habluetooth takes for "no slot
   * report" (no "all full" reachability diagnostic, no full-proxy score penalty). So it sees one slot, taken:
   * `{free: 0, limit: 1, allocated: [othersMarker]}` — the marker is the proxy's own Bluetooth address, which no
   * client can hold a link to, so no reaper or reconciliation of a client ever acts on it. While the upstream is
   * away nothing is known: limit 0.
   */
  viewFor(holder: SlotHolder, quota = Number.POSITIVE_INFINITY, othersMarker?: number): SlotView {
    const upstream = this.#upstream;
    if (upstream === undefined) return { free: 0, limit: 0, allocated: [] };
    const allocated: number[] = [];
    let own = 0;
    for (const [address, entry] of this.#entries) {
      if (entry.holder !== holder) continue;
      if (upstream.allocated.includes(address)) {
        own++;
        allocated.push(address);
      } else if (this.#unlisted(entry)) {
        // Not reported yet, so subtracted from `free` by the relay: the firmware lists a slot from its reservation.
        own++;
        if (this.#listsSeen) allocated.push(address);
      } else if (!this.#listsSeen) {
        own++; // firmware without the list: its `free` counts the held slot
      }
    }
    const free = Math.max(0, Math.min(this.free, quota - own));
    const limit = Math.min(upstream.limit, free + own);
    if (limit === 0 && upstream.limit > 0) {
      return { free: 0, limit: 1, allocated: this.#listsSeen && othersMarker !== undefined ? [othersMarker] : [] };
    }
    return { free, limit, allocated };
  }

  /** A slot the proxy may hold without listing it yet: a reservation, or (firmware with lists) a connect in flight. */
  #unlisted(entry: Entry): boolean {
    return entry.phase === 'pending' || (entry.inFlight > 0 && this.#listsSeen);
  }
}

/**
 * True when a report accounts for every taken slot in `allocated`: firmware that has the list sends one address
 * per taken slot, so an empty list with slots taken means a firmware without it (before 2025).
 */
function listsAllocated(slots: SlotState): boolean {
  return slots.allocated.length > 0 || slots.free >= slots.limit;
}
