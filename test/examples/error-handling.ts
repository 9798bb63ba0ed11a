// #region readme
import { ConnectFailedError, ConnectionAbortedError, DeviceNotFoundError, OutOfSlotsError, type ProxyPool } from 'esphome-ble';

/** Connects and disconnects once; says what went wrong, per final error class. */
async function tryConnect(pool: ProxyPool, mac: string): Promise<string> {
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
}

// #endregion readme

export { tryConnect };
