import { describe, expect, it } from 'vitest';
import { planRoute, type ResolvedRoute } from '../../../src/pool/routing.js';
import type { ScoreBreakdown } from '../../../src/pool/scoring.js';

function entry(proxy: string, score: number, reason?: string): ScoreBreakdown {
  return {
    proxy,
    rssi: score,
    slotBonus: 0,
    failurePenalty: 0,
    inFlightPenalty: 0,
    preferBonus: 0,
    score,
    available: reason === undefined ? 1 : 0,
    failures: 0,
    eligible: reason === undefined,
    reason,
  };
}

const NONE: ResolvedRoute = { require: undefined, exclude: [], prefer: [], unknown: [] };

describe('pool/routing', () => {
  it('routing - without pins or bonds the order is the score order, and nothing is decided', () => {
    const plan = planRoute([entry('a', -50), entry('b', -60), entry('c', -40, 'no free slot')], NONE, undefined);
    expect(plan.ranking.map((r) => r.proxy)).toEqual(['a', 'b', 'c']);
    expect(plan.decisions).toEqual([]);
  });

  it('routing - pins go first in their order among eligible proxies; an ineligible pin is a fallback, never first', () => {
    const ranking = [entry('a', -40), entry('b', -50), entry('c', -60), entry('d', -30, 'no free slot')];
    const plan = planRoute(ranking, { ...NONE, prefer: ['d', 'c', 'b'] }, undefined);
    expect(plan.ranking.map((r) => r.proxy)).toEqual(['c', 'b', 'a', 'd']);
    expect(plan.decisions).toEqual([
      { kind: 'fallback', proxy: 'd', detail: 'd is pinned but no free slot: the others are tried by score' },
      { kind: 'prefer', proxy: 'c', detail: 'c is pinned and goes first, ahead of a (better score)' },
    ]);
  });

  it('routing - the bonded proxy goes ahead of a pin; an excluded bond is reported, not used', () => {
    const ranking = [entry('a', -40), entry('b', -50), entry('c', -60)];
    expect(planRoute(ranking, { ...NONE, prefer: ['b'] }, 'c').ranking.map((r) => r.proxy)).toEqual(['c', 'b', 'a']);
    const excluded = planRoute([entry('a', -40), entry('b', -50)], { ...NONE, exclude: ['c'] }, 'c');
    expect(excluded.decisions).toEqual([
      { kind: 'exclude', proxy: undefined, detail: 'c may not connect' },
      { kind: 'fallback', proxy: 'c', detail: 'the device is bonded through c, which this connect may not use' },
    ]);
  });

  it('routing - a pinned proxy that does not hear the device falls back, and names not yet known are reported', () => {
    const plan = planRoute([entry('a', -40)], { ...NONE, prefer: ['b'], unknown: ['attic'] }, undefined);
    expect(plan.ranking.map((r) => r.proxy)).toEqual(['a']);
    expect(plan.decisions.map((d) => d.detail)).toEqual([
      '"attic" names no proxy of the pool (yet): left out',
      'b is pinned but does not hear the device: the others are tried by score',
    ]);
  });
});
