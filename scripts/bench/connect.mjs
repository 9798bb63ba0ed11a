// 1. connect→ready: TCP + transport handshake + Hello + device info, then close (close not timed).
import { le, PSK, row, size, stats, wanted } from './common.mjs';
import { ADAPTERS } from './peers.mjs';

export const title = '1. connect → ready (device info available), server in a child process';

/** Runs the group; `host` is a SimHost. */
export async function run(host) {
  const warmup = size(10, 3);
  const count = size(60, 30);
  const rows = [];
  for (const mode of ['plaintext', 'noise']) {
    const psk = mode === 'noise' ? PSK : undefined;
    const proxy = await host.proxy({ ...(psk ? { psk } : {}), advertise: false });
    const server = { port: proxy.port, psk, name: proxy.name };
    for (const adapter of ADAPTERS.filter((a) => wanted(a.name))) {
      const times = [];
      let cpuMicros = 0;
      try {
        for (let i = 0; i < warmup + count; i++) {
          const startedCpu = process.cpuUsage();
          const started = performance.now();
          const session = await adapter.connect(server);
          const elapsed = performance.now() - started;
          const used = process.cpuUsage(startedCpu);
          await session.close();
          if (i >= warmup) {
            times.push(elapsed);
            cpuMicros += used.user + used.system;
          }
        }
        const s = stats(times);
        // Per-connect CPU is summed over the timed connects: single readings are too coarse to take a median of.
        const notes = [`client CPU ${(cpuMicros / count / 1000).toFixed(2)} ms/connect`];
        if (adapter.name === 'esphome-client' && mode === 'noise') notes.push('earlier measurement ~4.2 ms');
        const target = adapter.name === 'esphome-ble' && mode === 'noise' ? le(2) : undefined;
        rows.push(row(adapter.name, `connect ${mode}`, { ...s, unit: 'ms', target, note: notes.join('; ') }));
      } catch (error) {
        rows.push(row(adapter.name, `connect ${mode}`, { na: `failed: ${error.message}` }));
      }
    }
    await proxy.close();
  }
  return rows;
}
