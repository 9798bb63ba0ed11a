import { describe, expect, it } from 'vitest';
import { ByteSlab, concatBytes } from '../../../src/util/bytes.js';

describe('util/bytes', () => {
  it('bytes - concatBytes joins parts in order', () => {
    expect([...concatBytes([Uint8Array.of(1), new Uint8Array(0), Uint8Array.of(2, 3)])]).toEqual([1, 2, 3]);
  });

  it('bytes - a slab copy keeps its bytes when the source is overwritten', () => {
    const slab = new ByteSlab(64);
    const source = Uint8Array.of(1, 2, 3, 4);
    const a = slab.copy(source);
    source.fill(9);
    const b = slab.copy(source);
    expect([...a]).toEqual([1, 2, 3, 4]);
    expect([...b]).toEqual([9, 9, 9, 9]);
    // Small copies share one block, side by side.
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBe(a.byteOffset + 4);
  });

  it('bytes - a full block is replaced, never reused, and large runs get their own buffer', () => {
    const slab = new ByteSlab(64);
    const first = slab.copy(new Uint8Array(16).fill(1));
    for (let i = 0; i < 3; i++) slab.copy(new Uint8Array(16).fill(2));
    const next = slab.copy(new Uint8Array(16).fill(3));
    expect(next.buffer).not.toBe(first.buffer);
    expect([...first]).toEqual(new Array(16).fill(1));
    const large = slab.copy(new Uint8Array(17).fill(4));
    expect(large.buffer.byteLength).toBe(17);
    expect(slab.copy(new Uint8Array(0))).toHaveLength(0);
  });
});
