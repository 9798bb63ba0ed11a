// #region readme
import { type ProxyDiagnostics, ProxyPool } from 'esphome-ble';

/** Prints and returns the health of every proxy, e.g. `await printDiagnostics(['192.168.1.40', '192.168.1.41'])`. */
async function printDiagnostics(proxies: string[]): Promise<ProxyDiagnostics[]> {
  const pool = new ProxyPool(proxies);
  try {
    await pool.ready({ timeout: 10_000 });
    for (const d of pool.diagnostics()) {
      const slots = d.slots ? `${d.slots.free}/${d.slots.limit} free, ${d.slots.leases} connecting` : 'no slot report';
      console.log(`${d.name ?? d.id}: ${d.state} since ${new Date(d.since).toISOString()}, subscription ${d.subscription.state}`);
      console.log(`  ${slots}, ${d.adsPerSecond} ads/s, last error: ${d.lastErrors.at(-1)?.code ?? 'none'}`);
    }
    return pool.diagnostics();
  } finally {
    await pool.close();
  }
}

// #endregion readme

export { printDiagnostics };
