// 1. connect→ready: TCP + transport handshake + Hello + device info, then close (close not timed).
import { le, PSK, row, size, stats, wanted } from './common.mjs';
import { ADAPTERS } from './peers.mjs';

export const title = '1. connect → ready (device info available), server in a child process';

/** Connects `count` times; returns the connect times (ms) and the client CPU they used (µs). */
async function measure(adapter, server, count) {
  const times = [];
  let cpuMicros = 0;
  for (let i = 0; i < count; i++) {
    const startedCpu = process.cpuUsage();
    const started = performance.now();
    const session = await adapter.connect(server);
    const elapsed = performance.now() - started;
    const used = process.cpuUsage(startedCpu);
    await session.close();
    times.push(elapsed);
    cpuMicros += used.user + used.system;
  }
  return { times, cpuMicros };
}

/**
 * Runs the group; `host` is a SimHost. Two rows per library and mode: the first connects of the process
 * (after a short warm-up; what a backend sees when it starts), and the steady state after enough connects
 * for V8 to have optimized the connect path (a connect runs most of its code once, so that takes ~1000).
 * The simulated proxy is warmed up first from inside its own process, so it stands in for a device whose
 * speed does not change during the run, and the first library measured does not meet a colder server.
 */
export async function run(host) {
  const phases = [
    { label: 'first connects', warmup: size(10, 3), count: size(60, 30) },
    { label: 'steady state', warmup: size(1000, 300), count: size(60, 30) },
  ];
  const rows = [];
  for (const mode of ['plaintext', 'noise']) {
    const psk = mode === 'noise' ? PSK : undefined;
    const proxy = await host.proxy({ ...(psk ? { psk } : {}), advertise: false });
    await proxy.warm(size(1000, 300), psk);
    const server = { port: proxy.port, psk, name: proxy.name };
    for (const adapter of ADAPTERS.filter((a) => wanted(a.name))) {
      let done = 0;
      for (const phase of phases) {
        const scenario = `connect ${mode}, ${phase.label}`;
        try {
          await measure(adapter, server, phase.warmup);
          const { times, cpuMicros } = await measure(adapter, server, phase.count);
          done += phase.warmup + phase.count;
          const s = stats(times);
          // Per-connect CPU is summed over the timed connects: single readings are too coarse to take a median of.
          const notes = [`client CPU ${(cpuMicros / phase.count / 1000).toFixed(2)} ms/connect`, `after ${done - phase.count} connects`];
          if (adapter.name === 'esphome-client' && mode === 'noise' && phase === phases[0]) notes.push('earlier measurement ~4.2 ms');
          const target = adapter.name === 'esphome-ble' && mode === 'noise' ? le(2) : undefined;
          rows.push(row(adapter.name, scenario, { ...s, unit: 'ms', target, note: notes.join('; ') }));
        } catch (error) {
          rows.push(row(adapter.name, scenario, { na: `failed: ${error.message}` }));
          break;
        }
      }
    }
    await proxy.close();
  }
  return rows;
}
