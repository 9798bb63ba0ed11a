// `npm run fuzz`: seeded fuzzing of every decoder, both request paths and the relay's, one worker thread per target.
// `--help` prints the usage below.
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { TARGETS } from './fuzz/targets.mjs';

/** An input still running after this long is a hang. */
const HANG_MS = 1000;
/** A target's set-up (corpus, servers, a connected client) still running after this long is a hang. */
const SETUP_MS = 30_000;
/** How often the main thread looks at a worker's progress. */
const WATCH_INTERVAL_MS = 100;
/** Full and quick budgets: the full run stays within the issue's 5 minutes, the quick one within CI's 30 s. */
const FULL_SECONDS = 240;
const QUICK_SECONDS = 20;
/** A crash report shows this much of the input; the reproduce line rebuilds all of it. */
const MAX_SHOWN_CHARS = 4000;
/** The quick run is seeded, so CI fuzzes the same inputs every time. */
const QUICK_SEED = 12;

const USAGE = `npm run fuzz [-- options]      (node scripts/fuzz.mjs [options] after npm run build)

  (no options)                  full run: ${FULL_SECONDS} s shared by the targets, random seed (printed)
  --quick                       the CI variant: seed ${QUICK_SEED}, ${QUICK_SECONDS} s
  --seed N                      run seed (each input is derived from seed, target and index)
  --time S                      total time budget in seconds, shared by the targets by weight
  --only a,b                    run only these targets
  --only T --seed N --index I   rebuild and run exactly one input (what a crash report prints)
  -h, --help                    this text

Targets: ${TARGETS.map((t) => t.name).join(', ')}.
A crash is an exception that is not one of our typed errors (EspApiError), a broken invariant (bytes outside
the input, split feed differing from whole feed, a disagreement with protobuf-ts, a slot the simulated proxy
will not release, a request the relay lets through to the proxy for a link its sender does not own or that its policy
forbids, more links of one client address than its quota), a hang
(one input running over ${HANG_MS} ms), or a worker that exits with an error code or without its final report. Prints inputs/s per target and the error codes seen. Exit code: 0 when no target crashed,
1 otherwise.`;

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', short: 'h', default: false },
    quick: { type: 'boolean', default: false },
    seed: { type: 'string' },
    time: { type: 'string' },
    only: { type: 'string' },
    index: { type: 'string' },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const seed = Number(values.seed ?? (values.quick ? QUICK_SEED : Math.floor(Math.random() * 2 ** 31)));
const totalMs = 1000 * Number(values.time ?? (values.quick ? QUICK_SECONDS : FULL_SECONDS));
const only = values.only?.split(',').map((s) => s.trim());
const index = values.index === undefined ? undefined : Number(values.index);
const selected = TARGETS.filter((t) => only === undefined || only.includes(t.name));
if (selected.length === 0) {
  console.error(`no such target; targets: ${TARGETS.map((t) => t.name).join(', ')}`);
  process.exit(2);
}
const weights = selected.reduce((sum, t) => sum + t.weight, 0);

function runTarget(target) {
  const progress = new SharedArrayBuffer(8);
  const watch = new Int32Array(progress);
  // -1 until the first input starts: the set-up is not input 0, and on a loaded host it can take over HANG_MS.
  Atomics.store(watch, 0, -1);
  const budgetMs = (totalMs * target.weight) / weights;
  const worker = new Worker(new URL('./fuzz/worker.mjs', import.meta.url), {
    workerData: { name: target.name, seed, budgetMs, maxInputs: Number.POSITIVE_INFINITY, index, progress },
  });
  return new Promise((resolve) => {
    let result = { inputs: 0, ms: 0, codes: {} };
    let reported = false;
    let crash;
    let seen = -1;
    let beaten = 0;
    let since = performance.now();
    const timer = setInterval(() => {
      const now = Atomics.load(watch, 0);
      const beats = Atomics.load(watch, 1);
      if (now !== seen || beats !== beaten) {
        seen = now;
        beaten = beats;
        since = performance.now();
      } else if (performance.now() - since > (now < 0 ? SETUP_MS : HANG_MS) && crash === undefined) {
        crash = {
          index: now,
          error: now < 0 ? `hang: the set-up has run for over ${SETUP_MS} ms` : `hang: input ${now} has run for over ${HANG_MS} ms`,
        };
        void worker.terminate();
      }
    }, WATCH_INTERVAL_MS);
    worker.on('message', (message) => {
      if (message.crash) crash ??= message.crash;
      if (message.done) {
        result = message.done;
        reported = true;
      }
      if (message.reproduced) console.log(JSON.stringify(message.reproduced, null, 2));
    });
    worker.on('error', (error) => {
      crash ??= { index: Atomics.load(watch, 0), error: error?.stack ?? String(error) };
    });
    worker.on('exit', (code) => {
      clearInterval(timer);
      // A worker that died (process.exit in a target, an abort) may have posted nothing: that is a crash too.
      if (code !== 0) crash ??= { index: Atomics.load(watch, 0), error: `worker exited with code ${code}` };
      if (!reported) crash ??= { index: Atomics.load(watch, 0), error: 'worker ended without its final report' };
      resolve({ ...result, crash });
    });
  });
}

console.log(
  `fuzz: seed ${seed}, ${selected.length} targets, ${(totalMs / 1000).toFixed(0)} s budget${index === undefined ? '' : `, input ${index} only`}`,
);
const rows = [];
let crashed = false;
for (const target of selected) {
  const result = await runTarget(target);
  const rate = result.ms > 0 ? Math.round((result.inputs / result.ms) * 1000) : 0;
  rows.push({
    target: target.name,
    inputs: result.inputs,
    seconds: (result.ms / 1000).toFixed(1),
    'inputs/s': rate,
    crash: result.crash ? 'YES' : 0,
  });
  const codes = Object.entries(result.codes).sort((a, b) => b[1] - a[1]);
  console.log(
    `\n${target.name}: ${result.inputs} inputs in ${(result.ms / 1000).toFixed(1)} s (${rate}/s)${result.summary ? `; ${result.summary}` : ''}`,
  );
  for (const [code, count] of codes) console.log(`  ${code.padEnd(36)} ${String(count).padStart(9)}`);
  if (result.crash) {
    crashed = true;
    console.log(`  CRASH ${result.crash.index < 0 ? 'in the set-up' : `at input ${result.crash.index}`}: ${result.crash.error}`);
    if (result.crash.input !== undefined) {
      const shown = JSON.stringify(result.crash.input);
      console.log(
        `  input: ${shown.length > MAX_SHOWN_CHARS ? `${shown.slice(0, MAX_SHOWN_CHARS)}… (${shown.length} characters; --index prints it whole)` : shown}`,
      );
    }
    console.log(`  reproduce: npm run fuzz -- --only ${target.name} --seed ${seed} --index ${Math.max(0, result.crash.index)}`);
  }
}
const total = rows.reduce((sum, r) => sum + r.inputs, 0);
console.log('');
console.table(rows);
console.log(`fuzz: ${total} inputs, ${rows.filter((r) => r.crash).length} crashed targets, seed ${seed}`);
process.exit(crashed ? 1 : 0);
