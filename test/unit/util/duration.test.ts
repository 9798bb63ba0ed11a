import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors.js';
import { formatDuration, parseDuration } from '../../../src/util/duration.js';

describe('util/duration', () => {
  it('duration - units and bare numbers in the unit the flag documents', () => {
    expect(parseDuration('500ms', '--timeout')).toBe(500);
    expect(parseDuration('5s', '--timeout')).toBe(5_000);
    expect(parseDuration('1.5m', '--timeout')).toBe(90_000);
    expect(parseDuration('2h', '--timeout')).toBe(7_200_000);
    expect(parseDuration('250', '--timeout')).toBe(250);
    expect(parseDuration('3', '--duration', 's')).toBe(3_000);
    expect(parseDuration('5S', '--duration', 's')).toBe(5_000);
  });

  it('duration - junk is a typed error naming the flag', () => {
    for (const junk of ['', 'abc', '-5s', '5 sec', '1e3']) {
      expect(() => parseDuration(junk, '--timeout')).toThrow(InvalidArgumentError);
    }
    expect(() => parseDuration('soon', '--listen')).toThrow(/--listen/);
  });

  it('duration - formatDuration prints what parseDuration reads back', () => {
    for (const ms of [850, 2_500, 180_000, 7_200_000]) expect(parseDuration(formatDuration(ms), 'x')).toBe(ms);
  });
});
