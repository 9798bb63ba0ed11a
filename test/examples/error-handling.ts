import { ConnectFailedError, ConnectionAbortedError, DeviceNotFoundError, OutOfSlotsError, ProxyPool } from 'esphome-ble';

/** README: one branch per final error class; `advice` says what to do. */
export async function errorHandling(proxies: string[], mac: string): Promise<string> {
  const pool = new ProxyPool(proxies);
  try {
    // #region readme
    try {
      const device = await pool.establishConnection(mac, { maxAttempts: 2, timeout: 30_000 });
      await device.disconnect();
      return 'connected';
    } catch (error) {
      if (error instanceof DeviceNotFoundError) return `not found: ${error.advice}`;
      if (error instanceof OutOfSlotsError) return `out of slots after ${error.attempts} attempts: ${error.advice}`;
      if (error instanceof ConnectionAbortedError) return `aborted: ${error.advice}`;
      if (error instanceof ConnectFailedError) return `failed: ${error.message}`;
      throw error;
    }
    // #endregion readme
  } finally {
    await pool.close();
  }
}
