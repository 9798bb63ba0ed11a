import { describe, expect, it } from 'vitest';
import { answersEveryClient } from '../../../src/bluetooth/firmware-release.js';
import { HOLD_EVIDENCE_MS, judgeSubscriber, SURE_HOLD_MS, type VerdictInput } from '../../../src/inspect/subscriber-verdict.js';

const BASE: VerdictInput = {
  online: true,
  answersEveryClient: false,
  own: undefined,
  subscriberTraffic: false,
  isProxy: true,
  readsSlots: true,
  reported: true,
  longestHeld: undefined,
};

const judge = (input: Partial<VerdictInput>) => judgeSubscriber({ ...BASE, ...input });

describe('subscriber verdict', () => {
  it('subscriber verdict - a slot held 1 s speaks for another client, held past any supervision timeout proves it; shorter, nothing', () => {
    // A link to a peer that stopped answering can outlive its subscriber by its supervision timeout (up to 32 s).
    const likely = judge({ longestHeld: { mac: 'C0:FF:EE:00:00:01', heldMs: HOLD_EVIDENCE_MS } });
    expect(likely).toMatchObject({ holder: 'otherClient', sure: false });
    expect(likely.evidence).toContain('supervision timeout, up to 32 s');
    expect(judge({ longestHeld: { mac: 'C0:FF:EE:00:00:01', heldMs: SURE_HOLD_MS - 1 } })).toMatchObject({ sure: false });
    expect(judge({ longestHeld: { mac: 'C0:FF:EE:00:00:01', heldMs: SURE_HOLD_MS } })).toMatchObject({
      holder: 'otherClient',
      sure: true,
    });
    expect(judge({ longestHeld: { mac: 'C0:FF:EE:00:00:01', heldMs: HOLD_EVIDENCE_MS - 1 } })).toMatchObject({
      holder: 'unknown',
      sure: false,
    });
    expect(judge({})).toMatchObject({ holder: 'nobodySeen', sure: false });
  });

  it('subscriber verdict - our own subscription decides first; subscriber-only traffic means this process', () => {
    expect(judge({ own: { state: 'subscribed', confirmed: true } })).toMatchObject({ holder: 'thisProcess', sure: true });
    expect(judge({ own: { state: 'subscribed', confirmed: false } })).toMatchObject({ holder: 'thisProcess', sure: false });
    expect(judge({ own: { state: 'lost', confirmed: false, lostBy: 'subscribe' } })).toMatchObject({ holder: 'otherClient', sure: true });
    expect(judge({ own: { state: 'lost', confirmed: false, lostBy: 'silence' } })).toMatchObject({ holder: 'otherClient', sure: false });
    expect(judge({ subscriberTraffic: true, longestHeld: { mac: 'x', heldMs: 5_000 } })).toMatchObject({ holder: 'thisProcess' });
  });

  it('subscriber verdict - offline, advertisement-only, old firmware and no report yet', () => {
    expect(judge({ online: false })).toMatchObject({ holder: 'unknown', evidence: 'not connected' });
    expect(judge({ readsSlots: false, reported: false })).toMatchObject({ holder: 'unknown', sure: false });
    expect(judge({ readsSlots: false, reported: false }).evidence).toContain('advertisement-only proxy');
    // A node with feature flags 0 is no proxy at all, not an advertisement-only one.
    const none = judge({ isProxy: false, readsSlots: false, reported: false });
    expect(none).toMatchObject({ holder: 'notAProxy', sure: true });
    expect(none.evidence).toContain('not a Bluetooth proxy');
    expect(none.evidence).not.toContain('advertisement-only');
    expect(judge({ reported: false })).toMatchObject({ holder: 'unknown', evidence: 'no slot report yet' });
    expect(judge({ answersEveryClient: true, subscriberTraffic: true })).toMatchObject({ holder: 'everyClient', sure: true });
  });

  it('subscriber verdict - firmware before 2023.6 answers every client (by version, else by API minor)', () => {
    expect(answersEveryClient('2023.5.5', { major: 1, minor: 8 })).toBe(true);
    expect(answersEveryClient('2023.6.0', { major: 1, minor: 9 })).toBe(false);
    expect(answersEveryClient('custom', { major: 1, minor: 7 })).toBe(true);
    expect(answersEveryClient('', { major: 1, minor: 15 })).toBe(false);
  });
});
