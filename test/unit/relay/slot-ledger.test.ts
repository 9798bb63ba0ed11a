import { describe, expect, it } from 'vitest';
import { LOCAL, RELEASING, SlotLedger } from '../../../src/relay/slot-ledger.js';

const A = 0xa1;
const B = 0xb2;

describe('slot-ledger', () => {
  it('slot-ledger - a reservation counts against free until the proxy reports it, then as the proxy counts it', () => {
    const ledger = new SlotLedger();
    const one = {};
    const two = {};
    expect(ledger.free).toBe(0); // no upstream yet
    ledger.update({ free: 2, limit: 2, allocated: [] });
    ledger.reserve(A, one);
    expect(ledger.free).toBe(1);
    // Each sees only the slots the other does not hold: limit - free is always its own count.
    expect(ledger.viewFor(two)).toEqual({ free: 1, limit: 1, allocated: [] });
    // A report written before the proxy saw the connect keeps the reservation.
    ledger.update({ free: 2, limit: 2, allocated: [] });
    expect(ledger.free).toBe(1);
    ledger.update({ free: 1, limit: 2, allocated: [A] });
    expect(ledger.free).toBe(1);
    expect(ledger.viewFor(one)).toEqual({ free: 1, limit: 2, allocated: [A] });
    expect(ledger.viewFor(two)).toEqual({ free: 1, limit: 1, allocated: [] });
    // Once the proxy is known to list its slots, a reservation it has not reported yet is listed as the firmware would.
    ledger.reserve(B, two);
    expect(ledger.viewFor(two)).toEqual({ free: 0, limit: 1, allocated: [B] });
    expect(ledger.viewFor(one)).toEqual({ free: 0, limit: 1, allocated: [A] });
  });

  it('slot-ledger - connected=false frees at once when the proxy never listed the slot, else on the report that drops it', () => {
    const ledger = new SlotLedger();
    const one = {};
    ledger.update({ free: 1, limit: 2, allocated: [0xf0] });
    const a = ledger.reserve(A, one);
    expect(ledger.handled(A, a)).toBe(false);
    ledger.ended(A); // immediate refusal: no slot was ever allocated
    expect(ledger.holderOf(A)).toBeUndefined();
    const b = ledger.reserve(B, one);
    ledger.update({ free: 0, limit: 2, allocated: [0xf0, B] });
    ledger.handled(B, b);
    ledger.ended(B);
    expect(ledger.holderOf(B)).toBe(one);
    ledger.update({ free: 1, limit: 2, allocated: [0xf0] });
    expect(ledger.holderOf(B)).toBeUndefined();
  });

  it('slot-ledger - a link ending while its holder connects again: nothing is freed until the proxy has handled the connect', () => {
    const ledger = new SlotLedger();
    const one = {};
    ledger.update({ free: 2, limit: 3, allocated: [0xf0] });
    ledger.handled(A, ledger.reserve(A, one));
    ledger.update({ free: 1, limit: 3, allocated: [0xf0, A] });
    ledger.connected(A);
    // DISCONNECT and CONNECT go out back to back; the old link's end arrives before the proxy read the connect.
    const again = ledger.reserve(A, one);
    ledger.ended(A);
    ledger.update({ free: 2, limit: 3, allocated: [0xf0] });
    expect(ledger.holderOf(A)).toBe(one);
    expect(ledger.count((holder) => holder === one)).toBe(1);
    expect(ledger.free).toBe(1); // the connect may take the slot again: not free for anyone else yet
    // It did: the proxy's report lists it again before the connect is known handled.
    ledger.update({ free: 1, limit: 3, allocated: [0xf0, A] });
    expect(ledger.handled(A, again)).toBe(false);
    expect(ledger.holderOf(A)).toBe(one);
    // Had the proxy ignored it (the link still closing), the last report frees the slot once the connect is handled.
    const ignored = ledger.reserve(A, one);
    ledger.ended(A);
    ledger.update({ free: 2, limit: 3, allocated: [0xf0] });
    expect(ledger.holderOf(A)).toBe(one);
    expect(ledger.handled(A, ignored)).toBe(false);
    expect(ledger.holderOf(A)).toBeUndefined();
  });

  it('slot-ledger - without an `allocated` list, a connected=false while a connect is in flight cannot be told: handled asks to settle it', () => {
    const ledger = new SlotLedger();
    const one = {};
    ledger.update({ free: 3, limit: 3, allocated: [] });
    ledger.handled(A, ledger.reserve(A, one));
    ledger.update({ free: 2, limit: 3, allocated: [] });
    ledger.connected(A);
    const again = ledger.reserve(A, one);
    ledger.ended(A); // the old link's end, or the new connect refused
    ledger.update({ free: 3, limit: 3, allocated: [] });
    ledger.update({ free: 2, limit: 3, allocated: [] });
    expect(ledger.holderOf(A)).toBe(one);
    expect(ledger.handled(A, again)).toBe(true);
    // The relay's DISCONNECT is always answered with connected=false: that one frees it.
    ledger.ended(A);
    expect(ledger.holderOf(A)).toBeUndefined();
    // A reservation of an earlier session (the ledger was reset meanwhile) is no longer its address's.
    const stale = ledger.reserve(B, one);
    ledger.reset();
    ledger.update({ free: 3, limit: 3, allocated: [] });
    const fresh = ledger.reserve(B, one);
    expect(ledger.handled(B, stale)).toBe(false);
    ledger.ended(B);
    expect(ledger.holderOf(B)).toBe(one);
    ledger.handled(B, fresh);
  });

  it('slot-ledger - release hands slots to RELEASING; reset empties and keeps the last limit', () => {
    const ledger = new SlotLedger();
    const one = {};
    ledger.update({ free: 3, limit: 3, allocated: [] });
    ledger.reserve(A, one);
    ledger.reserve(B, LOCAL);
    expect(ledger.release(one)).toEqual([A]);
    expect(ledger.holderOf(A)).toBe(RELEASING);
    expect(ledger.addressesOf(one)).toEqual([]);
    // Until the proxy frees it, the slot counts against the holder it was released from.
    expect(ledger.count((holder) => holder === one)).toBe(1);
    expect(ledger.count((holder) => holder === RELEASING)).toBe(0);
    expect(ledger.addressesOf(LOCAL)).toEqual([B]);
    expect(ledger.reset()).toEqual([
      [A, RELEASING],
      [B, LOCAL],
    ]);
    expect(ledger.limit).toBe(3);
    // Downstream, while the upstream is away: nothing free, nothing theirs, so a limit of 0 adds up.
    expect(ledger.viewFor(one)).toEqual({ free: 0, limit: 0, allocated: [] });
  });

  it("slot-ledger - without an `allocated` list (firmware before 2025) the proxy's free is the truth once it saw the connect", () => {
    const ledger = new SlotLedger();
    const one = {};
    const two = {};
    ledger.update({ free: 3, limit: 3, allocated: [] });
    const a = ledger.reserve(A, one);
    expect(ledger.free).toBe(2);
    // The report that answers the accepted connect: the proxy counts the slot, the relay no longer does.
    ledger.update({ free: 2, limit: 3, allocated: [] });
    expect(ledger.free).toBe(2);
    expect(ledger.handled(A, a)).toBe(false);
    const b = ledger.reserve(B, two);
    expect(ledger.free).toBe(1);
    ledger.connected(B); // connected=true before any report also ends the reservation
    ledger.update({ free: 1, limit: 3, allocated: [] });
    expect(ledger.free).toBe(1);
    expect(ledger.handled(B, b)).toBe(false);
    // Held slots stay with their holders through reports that list nothing; connected=false ends them.
    expect([ledger.holderOf(A), ledger.holderOf(B)]).toEqual([one, two]);
    // No list to show, but the limit still leaves out the other holder's slot.
    expect(ledger.viewFor(one)).toEqual({ free: 1, limit: 2, allocated: [] });
    ledger.ended(A);
    ledger.update({ free: 2, limit: 3, allocated: [] });
    expect(ledger.holderOf(A)).toBeUndefined();
    expect(ledger.holderOf(B)).toBe(two);
    expect(ledger.free).toBe(2);
  });

  it('slot-ledger - a quota caps what a holder may still take: free = min(left, quota - own), and limit - free stays its own', () => {
    const ledger = new SlotLedger();
    const busy = {};
    const other = {};
    ledger.update({ free: 3, limit: 3, allocated: [] });
    expect(ledger.viewFor(busy, 2)).toEqual({ free: 2, limit: 2, allocated: [] });
    ledger.reserve(A, busy);
    ledger.reserve(B, busy);
    ledger.update({ free: 1, limit: 3, allocated: [A, B] });
    // At its quota: full for it, its own two listed; the other still sees the last slot.
    expect(ledger.viewFor(busy, 2)).toEqual({ free: 0, limit: 2, allocated: [A, B] });
    expect(ledger.viewFor(other, 2)).toEqual({ free: 1, limit: 1, allocated: [] });
    // Without a quota (Infinity) the ledger's free is all that counts.
    expect(ledger.viewFor(busy)).toEqual({ free: 1, limit: 3, allocated: [A, B] });
  });

  it("slot-ledger - nothing left and nothing of one's own: one slot, taken by the marker, instead of limit 0", () => {
    const ledger = new SlotLedger();
    const one = {};
    const two = {};
    const left = {};
    const MARKER = 0xaabbcc000001;
    ledger.update({ free: 2, limit: 2, allocated: [] });
    ledger.reserve(A, one);
    ledger.reserve(B, two);
    ledger.update({ free: 0, limit: 2, allocated: [A, B] });
    expect(ledger.viewFor(left, 1, MARKER)).toEqual({ free: 0, limit: 1, allocated: [MARKER] });
    // Holders of a slot keep their own view: full, their own link listed.
    expect(ledger.viewFor(one, 1, MARKER)).toEqual({ free: 0, limit: 1, allocated: [A] });
    // An advertisement-only proxy (limit 0) has no slot to show, and the upstream away shows nothing.
    const passive = new SlotLedger();
    passive.update({ free: 0, limit: 0, allocated: [] });
    expect(passive.viewFor(left, 1, MARKER)).toEqual({ free: 0, limit: 0, allocated: [] });
    expect(new SlotLedger().viewFor(left, 1, MARKER)).toEqual({ free: 0, limit: 0, allocated: [] });
  });

  it('slot-ledger - before any `allocated` list was seen (firmware before 2025) the full view lists nothing, as that firmware', () => {
    const ledger = new SlotLedger();
    const one = {};
    ledger.update({ free: 1, limit: 1, allocated: [] });
    ledger.reserve(A, one);
    ledger.update({ free: 0, limit: 1, allocated: [] });
    expect(ledger.viewFor({}, 1, 0xaabbcc000001)).toEqual({ free: 0, limit: 1, allocated: [] });
  });
  it('slot-ledger - a connect handled before any slot report since it went out waits for the next report (a ping answered early)', () => {
    const ledger = new SlotLedger();
    const one = {};
    ledger.update({ free: 1, limit: 2, allocated: [B] });
    const reservation = ledger.reserve(A, one);
    // The barrier's pong came first (an upstream that answers pings ahead of its Bluetooth replies): nothing is known yet.
    expect(ledger.handled(A, reservation)).toBe(false);
    expect(ledger.entries()).toEqual([[A, one]]);
    expect(ledger.free).toBe(0);
    // The report behind it lists the slot: the holder keeps it, and its link can still be released.
    ledger.update({ free: 0, limit: 2, allocated: [B, A] });
    expect(ledger.entries()).toEqual([[A, one]]);
    // A connect refused instead: the next report without it frees it.
    const again = ledger.reserve(A, one);
    ledger.update({ free: 0, limit: 2, allocated: [B, A] });
    expect(ledger.handled(A, again)).toBe(false);
    ledger.update({ free: 1, limit: 2, allocated: [B] });
    expect(ledger.entries()).toEqual([]);
    expect(ledger.free).toBe(1);
  });

  it('slot-ledger - where a connect of the holder stands: waiting while one is in flight or settling, up after connected=true, idle after a DISCONNECT', () => {
    const ledger = new SlotLedger();
    const one = {};
    ledger.update({ free: 2, limit: 2, allocated: [] });
    expect(ledger.connectState(A)).toBeUndefined();
    const a = ledger.reserve(A, one);
    expect(ledger.connectState(A)).toBe('waiting');
    ledger.update({ free: 1, limit: 2, allocated: [A] });
    ledger.handled(A, a);
    expect(ledger.connectState(A)).toBe('idle'); // connecting: not known up
    ledger.connected(A);
    expect(ledger.connectState(A)).toBe('up');
    // Its DISCONNECT went out: a connected=true now may be the link it ends, coming up first.
    ledger.disconnecting(A);
    ledger.connected(A);
    expect(ledger.connectState(A)).toBe('idle');
    // The next connect and its connected=true make it up again; any connected=false ends that.
    ledger.handled(A, ledger.reserve(A, one));
    ledger.connected(A);
    expect(ledger.connectState(A)).toBe('up');
    ledger.ended(A);
    expect(ledger.connectState(A)).not.toBe('up');
  });

  it('slot-ledger - without an `allocated` list, a connected=false that arrived before a connect went out is no question about that connect', () => {
    const ledger = new SlotLedger();
    const one = {};
    ledger.update({ free: 2, limit: 3, allocated: [] });
    const first = ledger.reserve(A, one);
    ledger.ended(A); // a refusal of the first, or the end of a link before it
    const second = ledger.reserve(A, one); // the holder's retry, sent after it heard that
    ledger.update({ free: 1, limit: 3, allocated: [] });
    expect(ledger.handled(A, first)).toBe(false);
    // Handled after whatever the connected=false ended, the retry shows what the proxy holds: no settling needed.
    expect(ledger.handled(A, second)).toBe(false);
    expect(ledger.holderOf(A)).toBe(one);
  });

  it('slot-ledger - settling: the address waits until its DISCONNECT is handled, and the answer before that ends the entry', () => {
    const ledger = new SlotLedger();
    const one = {};
    ledger.update({ free: 2, limit: 3, allocated: [] });
    const a = ledger.reserve(A, one);
    ledger.ended(A);
    ledger.update({ free: 2, limit: 3, allocated: [] });
    expect(ledger.handled(A, a)).toBe(true);
    const settle = ledger.settle(A)!;
    expect(ledger.isSettling(A)).toBe(true);
    expect(ledger.connectState(A)).toBe('waiting');
    // Its answer: connected=false, the slot is not the holder's any more.
    ledger.ended(A);
    expect(ledger.holderOf(A)).toBeUndefined();
    ledger.settled(A, settle);
    expect(ledger.connectState(A)).toBeUndefined();
    // One that is still held when its ping comes back is free for the holder's next connect.
    const b = ledger.reserve(B, one);
    ledger.ended(B);
    expect(ledger.handled(B, b)).toBe(true);
    const settleB = ledger.settle(B)!;
    ledger.settled(B, settleB);
    expect(ledger.isSettling(B)).toBe(false);
    expect(ledger.connectState(B)).toBe('idle');
  });
});
