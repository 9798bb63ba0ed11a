// #region readme
import {
  ConnectFailedError,
  ConnectionAbortedError,
  DeviceNotFoundError,
  NoProxyAvailableError,
  OutOfSlotsError,
  type ProxyPool,
} from 'esphome-ble';

/** Connects and disconnects once; says what went wrong, per final error class (`advice`: what to do, `code`: which cause). */
async function tryConnect(pool: ProxyPool, mac: string): Promise<string> {
  try {
    const device = await pool.establishConnection(mac, { maxAttempts: 2, timeout: 30_000 });
    await device.disconnect();
    return 'connected';
  } catch (error) {
    // Every proxy refused us for a reason retrying cannot fix (wrong key, another device at the address...).
    if (error instanceof NoProxyAvailableError) return `no usable proxy: ${error.proxies.map((p) => `${p.proxy} ${p.code}`).join(', ')}`;
    if (error instanceof DeviceNotFoundError) return `not found: ${error.advice}`;
    // 0x100 ends here too: `code` tells slots all taken from a proxy that refused at once or a device that never answered.
    if (error instanceof OutOfSlotsError) return `${error.code} after ${error.attempts} attempts: ${error.advice}`;
    if (error instanceof ConnectionAbortedError) return `aborted: ${error.advice}`;
    if (error instanceof ConnectFailedError) return `failed: ${error.message}`;
    throw error;
  }
}

// #endregion readme

export { tryConnect };
