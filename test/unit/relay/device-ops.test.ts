import { describe, expect, it } from 'vitest';
import { DeviceOps, MAX_PENDING_DEVICE_OPS } from '../../../src/relay/device-ops.js';

const A = { name: 'a' };
const B = { name: 'b' };
const DEVICE = 0xc0ffee000100;

describe('relay device operations', () => {
  it('device-ops - answers go to the requests of their kind and address, oldest first; a gone client keeps its place', () => {
    const ops = new DeviceOps<object>();
    ops.track('unpair', DEVICE, A);
    ops.track('clear', DEVICE, B);
    ops.track('unpair', DEVICE, B);
    ops.track('unpair', DEVICE, A);
    ops.forget(B);
    expect(ops.take('clear', DEVICE)).toEqual({ client: undefined });
    expect(ops.take('unpair', DEVICE)?.client).toBe(A);
    expect(ops.take('unpair', DEVICE)).toEqual({ client: undefined });
    expect(ops.take('unpair', DEVICE)?.client).toBe(A);
    expect(ops.take('unpair', DEVICE)).toBeUndefined();
    expect(ops.take('unpair', DEVICE + 1)).toBeUndefined();
    expect(ops.size).toBe(0);
  });

  it('device-ops - each client has a bounded number waiting; an answer, its leaving or the upstream going away makes room', () => {
    const ops = new DeviceOps<object>();
    for (let i = 0; i < MAX_PENDING_DEVICE_OPS; i++) ops.track('clear', DEVICE + i, A);
    expect(ops.hasRoom(A)).toBe(false);
    expect(ops.hasRoom(B)).toBe(true);
    ops.take('clear', DEVICE);
    expect(ops.hasRoom(A)).toBe(true);
    ops.track('clear', DEVICE, A);
    ops.forget(A);
    expect(ops.hasRoom(A)).toBe(true);
    expect(ops.size).toBe(MAX_PENDING_DEVICE_OPS);
    ops.track('unpair', DEVICE, B);
    ops.clear();
    expect(ops.size).toBe(0);
    expect(ops.hasRoom(B)).toBe(true);
  });

  it("device-ops - the cap counts per identity over its sessions; a closed session's operations stop counting", () => {
    const host = (name: string, address: string) => ({ name, address });
    const first = host('first', '10.0.0.2');
    const second = host('second', '10.0.0.2');
    const elsewhere = host('elsewhere', '10.0.0.3');
    const ops = new DeviceOps<{ name: string; address: string }>({ limit: 4, identityOf: (c) => c.address });
    for (let i = 0; i < 2; i++) ops.track('clear', DEVICE + i, first);
    for (let i = 2; i < 4; i++) ops.track('unpair', DEVICE + i, second);
    // Four from one address over two sessions: the cap binds both, not another address.
    expect(ops.hasRoom(first)).toBe(false);
    expect(ops.hasRoom(second)).toBe(false);
    expect(ops.hasRoom(elsewhere)).toBe(true);
    // The first session closes: its two stay queued for their answers' order but no longer count.
    ops.forget(first);
    expect(ops.hasRoom(second)).toBe(true);
    expect(ops.size).toBe(4);
    expect(ops.take('clear', DEVICE)).toEqual({ client: undefined });
    expect(ops.take('unpair', DEVICE + 2)?.client).toBe(second);
    ops.forget(second);
    expect(ops.hasRoom(second)).toBe(true);
    ops.track('clear', DEVICE, second);
    expect(ops.take('clear', DEVICE + 1)).toEqual({ client: undefined });
    expect(ops.take('unpair', DEVICE + 3)).toEqual({ client: undefined });
    expect(ops.take('clear', DEVICE)?.client).toBe(second);
    expect(ops.size).toBe(0);
  });

  it('device-ops - a long queue on one address keeps its order through interleaved adds and takes', () => {
    const ops = new DeviceOps<object>({ limit: Number.POSITIVE_INFINITY });
    const clients = Array.from({ length: 20_000 }, (_, i) => ({ i }));
    const taken: object[] = [];
    for (const [i, client] of clients.entries()) {
      ops.track('clear', DEVICE, client);
      if (i % 3 === 2) taken.push(ops.take('clear', DEVICE)?.client as object);
    }
    while (ops.size > 0) taken.push(ops.take('clear', DEVICE)?.client as object);
    expect(taken.length).toBe(clients.length);
    expect(taken.every((client, i) => client === clients[i])).toBe(true);
  });
});
