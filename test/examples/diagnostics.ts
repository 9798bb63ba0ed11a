import { type ProxyDiagnostics, ProxyPool } from 'esphome-ble';

/** README: the health of every proxy, as `slots --json` and the relay's table show it. */
export async function diagnostics(proxies: string[]): Promise<ProxyDiagnostics[]> {
  // #region readme
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
  // #endregion readme
}
