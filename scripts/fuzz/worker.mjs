// Runs one fuzz target in a worker thread; the main thread watches `progress` to catch hangs.
import { parentPort, workerData } from 'node:worker_threads';
import { Rng, streamOf, toHex } from './common.mjs';
import { loadCorpus } from './corpus.mjs';
import { TARGETS } from './targets.mjs';

const { name, seed, budgetMs, maxInputs, index, progress } = workerData;
const target = TARGETS.find((t) => t.name === name);
// [input index, heartbeats]: a target that must wait on purpose (reconnecting a client) beats between steps.
const watch = new Int32Array(progress);
const beat = () => Atomics.add(watch, 1, 1);
const stream = streamOf(name);

process.on('unhandledRejection', (reason) => {
  parentPort.postMessage({ crash: { index: Atomics.load(watch, 0), error: `unhandled rejection: ${reason?.stack ?? reason}` } });
  process.exit(1);
});

function describe(input) {
  if (target.describe) return target.describe(input);
  return input instanceof Uint8Array ? toHex(input) : input;
}

const state = await target.setup(loadCorpus());
const codes = {};
let inputs = 0;
// A stateful target's input depends on the ones before it: reproducing input I replays 0..I.
const first = index === undefined || target.stateful ? 0 : index;
let i = first;
const started = performance.now();
const deadline = started + budgetMs;
try {
  while (index !== undefined ? i <= index : inputs < maxInputs && (inputs & 63 || performance.now() < deadline)) {
    Atomics.store(watch, 0, i);
    const rng = new Rng(seed, stream, i);
    const input = target.generate(rng, state);
    let result;
    try {
      result = target.run(input, state, rng, beat);
      if (result instanceof Promise) result = await result;
    } catch (error) {
      parentPort.postMessage({ crash: { index: i, input: describe(input), error: error?.stack ?? String(error) } });
      break;
    }
    for (const code of Array.isArray(result) ? result : [result]) {
      const key = code ?? 'ok';
      codes[key] = (codes[key] ?? 0) + 1;
      inputs++;
    }
    if (i === index) parentPort.postMessage({ reproduced: { index: i, input: describe(input), result } });
    i++;
  }
} finally {
  await target.teardown?.(state);
}
parentPort.postMessage({ done: { inputs, ms: performance.now() - started, codes, summary: target.summary?.(state) } });
