// `npm run hostile`: hostile peers against `esphome-ble serve` and `esphome-ble relay` (as built, each in its own
// process), with a memory oracle. Each scenario starts fresh targets, connects a well-behaved client (subscribed,
// holding a GATT link, asking and reading in a loop), takes the target's memory after a forced GC, runs one
// attack from a worker thread while sampling the target's RSS, heap, external and arrayBuffers (process.memoryUsage
// inside the target, over IPC), and fails when a figure passes its bound or the client stopped being served.
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { kib, mb, sleep } from './hostile/common.mjs';
import { newcomerGetsIn, startGoodClient } from './hostile/good-client.mjs';
import {
  BUFFER_SLACK,
  GROWTH_SLACK,
  HEAP_RETAINED_SLACK,
  INPUT_BOUND,
  QUEUE_BOUND,
  RSS_SLACK,
  SOCKET_SLACK,
  scenarios,
  UPSTREAM_QUEUE_BOUND,
} from './hostile/scenarios.mjs';
import { killTargets, METRICS, startSampling, startTarget } from './hostile/target.mjs';

const USAGE = `npm run hostile [-- options]     (node scripts/hostile.mjs [options] after npm run build)

  (no options)   every scenario (about three minutes)
  --quick        the CI subset: four scenarios, smaller floods (under 30 s)
  --only TEXT    scenarios whose target or name contains TEXT (e.g. relay, flood, "01 FF FF")
  -h, --help     this text

HOSTILE_DIST=DIR attacks another build's CLI (DIR/cli/main.js), e.g. one made from an older commit.

For each scenario (one attack on one target), what the target's own sockets and sessions hold, sampled inside it
(probe.mjs), against the per-session bound (README "Security"): bytes queued for one client at most
${mb(QUEUE_BOUND)} MB (the close level and one write), for all of them that times the sessions the attack can
hold; input held by one session at most ${mb(INPUT_BOUND)} MB; towards the relay's upstream at most
${mb(UPSTREAM_QUEUE_BOUND)} MB; open server sockets at the end at most the sessions it can hold, the good client
and ${SOCKET_SLACK}. Process memory: the per-session bound per held session plus, for the peak RSS
${mb(RSS_SLACK)} MB (garbage between collections), for the peak of Buffers (external, arrayBuffers)
${mb(BUFFER_SLACK)} MB, for the heap still used after a forced GC at the end ${mb(HEAP_RETAINED_SLACK)} MB; and
no growth of heap or Buffers after a forced GC from the middle of the attack to its end beyond
${mb(GROWTH_SLACK)} MB plus, per held session, what it may still add up to its bound. The well-behaved client must get advertisements and every answer during the attack.
Exit code 1 when a bound or a client check fails.`;

/** How often the target's memory is sampled during an attack. */
const SAMPLE_EVERY_MS = 50;
/** Time for a fresh target and its client to settle before the baseline. */
const SETTLE_MS = 300;

// However the run ends (done, a failure, Ctrl-C, a crash), no target process outlives it.
process.on('exit', killTargets);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killTargets();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}
process.on('uncaughtException', (error) => {
  console.error(error);
  killTargets();
  process.exit(1);
});
process.on('unhandledRejection', (error) => {
  console.error(error);
  killTargets();
  process.exit(1);
});

const { values } = parseArgs({
  options: { help: { type: 'boolean', short: 'h' }, quick: { type: 'boolean' }, only: { type: 'string' } },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

async function startTargets(spec) {
  const started = [];
  try {
    let args = spec.args;
    if (spec.relay) {
      // The relay's upstream: a plain simulated proxy in its own process (not measured).
      const upstream = await startTarget('serve', ['--port', '0', '--name', 'hostile-upstream', '--max-connections', '2']);
      started.push(upstream);
      args = ['--proxy', `127.0.0.1:${upstream.port}`, ...args];
    }
    const target = await startTarget(spec.command, args, { env: spec.env ?? {} });
    started.push(target);
    return { target, all: started };
  } catch (error) {
    await Promise.all(started.map((t) => t.stop()));
    throw error;
  }
}

function runAttack(scenario, port, psk) {
  const worker = new Worker(new URL('./hostile/attacker.mjs', import.meta.url), {
    workerData: { attack: scenario.attack, port, psk, params: scenario.params },
  });
  let failure;
  worker.on('message', (message) => {
    if (message.type === 'error') failure = message.message;
  });
  worker.on('error', (error) => (failure = String(error)));
  return {
    failure: () => failure,
    async stop() {
      const done = new Promise((resolve) => {
        worker.on('message', (message) => {
          if (message.type === 'done') resolve(message.stats);
        });
        setTimeout(() => resolve(undefined), 5_000);
      });
      worker.postMessage({ type: 'stop' });
      const stats = await done;
      await worker.terminate();
      return stats;
    },
  };
}

async function runScenario(scenario) {
  const { target, all } = await startTargets(scenario.target);
  const psk = scenario.target.psk;
  let client;
  try {
    client = await startGoodClient({ port: target.port, psk });
    await sleep(SETTLE_MS);
    const baseline = await target.sample(true);
    const served = client.mark();
    const sampling = startSampling(target, SAMPLE_EVERY_MS);
    const attack = runAttack(scenario, target.port, psk);
    await sleep(scenario.ms / 2);
    const newcomer = scenario.newcomer === undefined ? undefined : await newcomerGetsIn({ port: target.port, psk });
    const middle = await target.sample(true);
    await sleep(scenario.ms / 2);
    const retained = await target.sample(true);
    const { peak, samples } = await sampling.stop();
    const attacker = await attack.stop();
    const got = served();
    const delta = Object.fromEntries(METRICS.map((m) => [m, peak[m] - baseline[m]]));
    const kept = Object.fromEntries(METRICS.map((m) => [m, retained[m] - baseline[m]]));
    const growth = { heapUsed: retained.heapUsed - middle.heapUsed, external: retained.external - middle.external };
    const sessionBytes = scenario.held * scenario.perSession;
    const bounds = {
      rss: RSS_SLACK + sessionBytes,
      buffers: BUFFER_SLACK + sessionBytes,
      heap: HEAP_RETAINED_SLACK + sessionBytes,
      queued: Math.max(1, scenario.held) * QUEUE_BOUND,
      sockets: scenario.held + 1 + SOCKET_SLACK,
      // Between the middle and the end a session may still be filling up to its bound (a flooder reaching the
      // pause level), but not beyond: anything more is growth a longer attack would keep adding.
      growth: GROWTH_SLACK + scenario.held * Math.min(scenario.perSession, QUEUE_BOUND),
    };
    const problems = [];
    if (attack.failure()) problems.push(`attacker failed: ${attack.failure()}`);
    // What the sockets and sessions hold first: the figures backpressure bounds directly.
    if (peak.queuedMax > QUEUE_BOUND) problems.push(`one client had ${mb(peak.queuedMax)} MB queued > ${mb(QUEUE_BOUND)} MB`);
    if (peak.queued > bounds.queued) problems.push(`clients had ${mb(peak.queued)} MB queued > ${mb(bounds.queued)} MB`);
    if (peak.inputMax > INPUT_BOUND) problems.push(`one session held ${mb(peak.inputMax)} MB of input > ${mb(INPUT_BOUND)} MB`);
    if (peak.upstreamQueued > UPSTREAM_QUEUE_BOUND) {
      problems.push(`${mb(peak.upstreamQueued)} MB queued upstream > ${mb(UPSTREAM_QUEUE_BOUND)} MB`);
    }
    if (retained.serverSockets > bounds.sockets)
      problems.push(`${retained.serverSockets} server sockets open at the end > ${bounds.sockets}`);
    for (const m of ['heapUsed', 'external']) {
      if (growth[m] > bounds.growth) {
        problems.push(`${m} after a GC grew ${mb(growth[m])} MB > ${mb(bounds.growth)} MB from the middle of the attack to its end`);
      }
    }
    if (delta.rss > bounds.rss) problems.push(`RSS +${mb(delta.rss)} MB > ${mb(bounds.rss)} MB`);
    for (const m of ['external', 'arrayBuffers']) {
      if (delta[m] > bounds.buffers) problems.push(`${m} +${mb(delta[m])} MB > ${mb(bounds.buffers)} MB`);
    }
    if (kept.heapUsed > bounds.heap) problems.push(`heap kept after a GC +${mb(kept.heapUsed)} MB > ${mb(bounds.heap)} MB`);
    if (got.closed) problems.push('the good client was disconnected');
    if (got.ads === 0) problems.push('the good client got no advertisements');
    if (got.answers === 0 || got.failures > 0)
      problems.push(`the good client: ${got.answers} answers, ${got.failures} failures (${got.lastError})`);
    if (scenario.newcomer === 'in' && newcomer === false) problems.push('a newcomer could not connect');
    const events = target.events.filter((e) => e.event !== 'listening' && e.event !== 'stats');
    return { scenario, delta, kept, growth, peak, retained, bounds, got, newcomer, attacker, samples, events, problems };
  } finally {
    await client?.stop().catch(() => {});
    await Promise.all(all.map((t) => t.stop()));
  }
}

function summarizeEvents(events) {
  const counts = new Map();
  for (const e of events) {
    const key = e.reason ? `${e.event === 'sessionRefused' || e.event === 'clientRefused' ? 'refused' : 'dropped'} ${e.reason}` : e.event;
    // serve and relay print refusals and drops coalesced: a line stands for `count` of them.
    counts.set(key, (counts.get(key) ?? 0) + (e.count ?? 1));
  }
  return [...counts].map(([k, n]) => `${k} ${n}`).join(', ') || '-';
}

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells
      .map((c, i) => String(c).padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const list = scenarios(values.quick === true).filter((s) => {
  if (values.only === undefined) return true;
  return `${s.target.command} ${s.target.psk ? 'noise' : ''} ${s.id}`.includes(values.only);
});
const started = performance.now();
const results = [];
for (const scenario of list) {
  const name = `${scenario.target.command}${scenario.target.psk ? ' (Noise)' : ''}: ${scenario.id}`;
  process.stdout.write(`${name} ... `);
  try {
    const result = await runScenario(scenario);
    results.push({ name, ...result });
    console.log(result.problems.length === 0 ? 'ok' : `FAIL: ${result.problems.join('; ')}`);
  } catch (error) {
    results.push({ name, scenario, problems: [String(error?.message ?? error)] });
    console.log(`FAIL: ${error?.message ?? error}`);
  }
}

const measured = results.filter((r) => r.delta !== undefined);
console.log('\nTarget memory during each attack (peak minus the baseline after a forced GC; MB):\n');
console.log(
  table(
    [
      'target: attack',
      'held',
      'RSS',
      'heap',
      'external',
      'arrayBuffers',
      'after GC: RSS / heap / ext.',
      'bounds: RSS / Buffers / heap after GC',
      'result',
    ],
    measured.map((r) => [
      r.name,
      r.scenario.held,
      mb(r.delta.rss, true),
      mb(r.delta.heapUsed, true),
      mb(r.delta.external, true),
      mb(r.delta.arrayBuffers, true),
      `${mb(r.kept.rss, true)} / ${mb(r.kept.heapUsed, true)} / ${mb(r.kept.external, true)}`,
      `${mb(r.bounds.rss)} / ${mb(r.bounds.buffers)} / ${mb(r.bounds.heap)}`,
      r.problems.length === 0 ? 'ok' : 'FAIL',
    ]),
  ),
);
console.log("\nWhat the target's sockets and sessions held (peaks, sampled inside it; KiB), and growth after a GC (MB):\n");
console.log(
  table(
    [
      'target: attack',
      'queued: one client / all',
      'input: one session / all',
      'unread in Node',
      'upstream queue',
      'server sockets at the end',
      'growth middle→end: heap / ext.',
    ],
    measured.map((r) => [
      r.name,
      `${kib(r.peak.queuedMax)} / ${kib(r.peak.queued)} (≤ ${kib(QUEUE_BOUND)} / ${kib(r.bounds.queued)})`,
      `${kib(r.peak.inputMax)} / ${kib(r.peak.input)} (≤ ${kib(INPUT_BOUND)})`,
      kib(r.peak.readable),
      `${kib(r.peak.upstreamQueued)} (≤ ${kib(UPSTREAM_QUEUE_BOUND)})`,
      `${r.retained.serverSockets} (≤ ${r.bounds.sockets})`,
      `${mb(r.growth.heapUsed, true)} / ${mb(r.growth.external, true)} (≤ ${mb(r.bounds.growth)})`,
    ]),
  ),
);
console.log('\nThe well-behaved client during each attack, and what the target reported:\n');
console.log(
  table(
    [
      'target: attack',
      'ads',
      'answers',
      'failures',
      'worst round ms',
      'newcomer',
      'attacker sockets (opened / refused / closed by target)',
      'target events',
    ],
    measured.map((r) => [
      r.name,
      r.got.ads,
      r.got.answers,
      r.got.failures,
      Math.round(r.got.worstMs),
      r.newcomer === undefined ? '-' : r.newcomer ? 'got in' : 'locked out',
      r.attacker ? `${r.attacker.opened} / ${r.attacker.refused} / ${r.attacker.closedByPeer}` : '-',
      summarizeEvents(r.events),
    ]),
  ),
);
const failed = results.filter((r) => r.problems.length > 0);
console.log(`\n${results.length} scenarios in ${((performance.now() - started) / 1000).toFixed(1)} s, ${failed.length} failed.`);
for (const r of failed) console.log(`  ${r.name}: ${r.problems.join('; ')}`);
process.exit(failed.length === 0 ? 0 : 1);
