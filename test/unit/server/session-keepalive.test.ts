import { describe, expect, it } from 'vitest';
import { checkKeepalive, type KeepaliveState } from '../../../src/server/session-keepalive.js';

interface Target extends KeepaliveState {
  name: string;
}

function run(targets: Target[], now: number): { pinged: string[]; expired: string[] } {
  const pinged: string[] = [];
  const expired: string[] = [];
  checkKeepalive(targets, 1000, { ping: (t) => pinged.push(t.name), expire: (t) => expired.push(t.name) }, now);
  return { pinged, expired };
}

describe('server/session-keepalive', () => {
  it('session-keepalive - only authenticated sessions are pinged and dropped (spec §5.6); the others wait for the connect deadline', () => {
    const targets: Target[] = [
      { name: 'authenticated', authenticated: true, lastHeard: 0, pinged: false },
      { name: 'setup', authenticated: false, lastHeard: 0, pinged: false },
    ];
    expect(run(targets, 999)).toEqual({ pinged: [], expired: [] });
    expect(run(targets, 1000)).toEqual({ pinged: ['authenticated'], expired: [] });
    // Pinged once per silence.
    expect(run(targets, 2000)).toEqual({ pinged: [], expired: [] });
    expect(run(targets, 2500)).toEqual({ pinged: [], expired: ['authenticated'] });
    expect(targets[1]!.pinged).toBe(false);
  });

  it('session-keepalive - a session the server holds (input not read) is neither pinged nor dropped', () => {
    const held: Target = { name: 'held', authenticated: true, lastHeard: 0, pinged: false, inputHeld: true };
    expect(run([held], 5000)).toEqual({ pinged: [], expired: [] });
    expect(held.pinged).toBe(false);
  });

  it('session-keepalive - idle time is measured on the monotonic clock by default, not the wall clock', () => {
    const now = performance.now();
    const target: Target = { name: 'fresh', authenticated: true, lastHeard: now, pinged: false };
    const pinged: string[] = [];
    // A wall-clock lastHeard (Date.now(), about 1.7e12) would read as decades of silence here.
    checkKeepalive([target], 60_000, { ping: (t) => pinged.push(t.name), expire: (t) => pinged.push(`${t.name} expired`) });
    expect(pinged).toEqual([]);
  });
});
