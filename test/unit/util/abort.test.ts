import { describe, expect, it } from 'vitest';
import { TimeoutError } from '../../../src/errors.js';
import { pendingReply, sleep, withDeadline } from '../../../src/util/abort.js';

describe('util/abort', () => {
  it('abort - withDeadline rejects with a TimeoutError naming the operation', async () => {
    const error = await withDeadline('Reading the thing', { timeout: 20 }, undefined, (signal) => sleep(1000, signal)).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).message).toBe('Reading the thing timed out after 20 ms');
  });

  it('abort - a caller abort rejects with the caller reason, also when already aborted', async () => {
    const controller = new AbortController();
    const reason = new Error('mine');
    const pending = withDeadline('x', { signal: controller.signal, timeout: 1000 }, undefined, (signal) => sleep(1000, signal));
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    await expect(withDeadline('x', { signal: controller.signal }, 10, async () => 1)).rejects.toBe(reason);
  });

  it('abort - resolves with the value and clears its timer', async () => {
    expect(await withDeadline('x', {}, 1000, async () => 42)).toBe(42);
  });

  it('abort - pendingReply rejects with the error of an install that throws, uninstalls, and leaves no abort listener', async () => {
    const controller = new AbortController();
    let uninstalled = 0;
    const refused = new Error('refused before sending');
    const reply = pendingReply<number>(
      controller.signal,
      () => {
        throw refused;
      },
      () => uninstalled++,
    );
    await expect(reply).rejects.toBe(refused);
    expect(uninstalled).toBe(1);
    controller.abort(new Error('later'));
    expect(uninstalled).toBe(1);
  });
});
