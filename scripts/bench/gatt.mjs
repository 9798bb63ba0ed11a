// 3. GATT read round trip: one characteristic of the connected demo peripheral, read back to back.
import { DEMO, le, PSK, row, size, stats, wanted } from './common.mjs';
import { ADAPTERS } from './peers.mjs';

export const title = '3. GATT read round trip (demo peripheral, handle 12, no simulated radio delay), server in a child process';

export async function run(host) {
  const warmup = size(100, 30);
  const count = size(1000, 200);
  const rows = [];
  for (const mode of ['plaintext', 'noise']) {
    const psk = mode === 'noise' ? PSK : undefined;
    for (const adapter of ADAPTERS.filter((a) => wanted(a.name))) {
      const proxy = await host.proxy({ ...(psk ? { psk } : {}), advertise: false });
      let link;
      try {
        link = await adapter.gatt({ port: proxy.port, psk, name: proxy.name });
        const times = [];
        for (let i = 0; i < warmup; i++) await link.read(DEMO.statusHandle);
        const startedCpu = process.cpuUsage();
        for (let i = 0; i < count; i++) {
          const started = performance.now();
          await link.read(DEMO.statusHandle);
          times.push((performance.now() - started) * 1000);
        }
        const used = process.cpuUsage(startedCpu);
        const note = `client CPU ${((used.user + used.system) / count).toFixed(0)} µs/read`;
        rows.push(
          row(adapter.name, `read ${mode}`, {
            ...stats(times),
            unit: 'µs',
            target: adapter.name === 'esphome-ble' ? le(150) : undefined,
            note,
          }),
        );
      } catch (error) {
        rows.push(row(adapter.name, `read ${mode}`, { na: `failed: ${error.message}` }));
      } finally {
        await link?.close().catch(() => {});
        await proxy.close();
      }
    }
  }
  return rows;
}
