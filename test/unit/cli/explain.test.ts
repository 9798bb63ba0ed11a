import { describe, expect, it } from 'vitest';
import { ADVERTISEMENT_ONLY_REASON, shownReasons } from '../../../src/cli/commands/explain.js';
import type { ScoreBreakdown } from '../../../src/pool/scoring.js';

const row = (proxy: string, reason: string | undefined, reasonCode: ScoreBreakdown['reasonCode']): ScoreBreakdown => ({
  proxy,
  rssi: -60,
  slotBonus: 0,
  failurePenalty: 0,
  inFlightPenalty: 0,
  preferBonus: 0,
  score: -60,
  available: 0,
  failures: 0,
  eligible: reason === undefined,
  reason,
  reasonCode,
});

describe('explain reasons', () => {
  it('explain - an advertisement-only proxy is renamed by the scoring reason code, whatever its wording', () => {
    const advOnly = new Set(['hub', 'hub-offline']);
    const shown = shownReasons(
      [
        row('hub', 'cannot open connections', 'noConnections'),
        row('hub-offline', 'offline', 'offline'),
        row('passive', 'cannot open connections', 'noConnections'),
        row('full', 'no free slot', 'noFreeSlot'),
      ],
      advOnly,
    );
    expect(shown.map((r) => r.reason)).toEqual([ADVERTISEMENT_ONLY_REASON, 'offline', 'cannot open connections', 'no free slot']);
  });
});
