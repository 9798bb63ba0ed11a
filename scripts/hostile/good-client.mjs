// The well-behaved client of the hostile run: our own ApiConnection + BluetoothProxy, subscribed to
// advertisements and holding a GATT link, asking for DeviceInfo and reading a characteristic in a loop while the
// attack runs. What it got during the attack is the proof that the target kept serving.
import { DEMO, loadDist } from './common.mjs';

const { ApiConnection, BluetoothProxy, DeviceInfoRequest, DeviceInfoResponse } = await loadDist('index.js').then(async (index) => ({
  ...index,
  ...(await loadDist('gen/api_pb.js')),
}));

/** One request round (DeviceInfo, then a GATT read) this often. */
const ROUND_EVERY_MS = 100;
/** Each request's deadline: far beyond what a served client waits (a few ms), short enough to count a stall. */
const REQUEST_TIMEOUT_MS = 3_000;

/** Connects, subscribes, takes a link to the demo peripheral and starts the request loop. */
export async function startGoodClient({ port, psk }) {
  const api = await ApiConnection.connect({
    host: '127.0.0.1',
    port,
    ...(psk ? { psk } : {}),
    clientInfo: 'hostile-run good client',
    timeout: 5_000,
  });
  const proxy = await BluetoothProxy.attach(api, { timeout: 5_000 });
  let ads = 0;
  proxy.onAdvertisement(() => ads++);
  const link = await proxy.connect(DEMO.address, { addressType: DEMO.addressType, timeout: 5_000 });
  const counts = { answers: 0, failures: 0, worstMs: 0, lastError: undefined };
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        await api.request(DeviceInfoRequest, {}, DeviceInfoResponse, () => true, { timeout: REQUEST_TIMEOUT_MS });
        await link.read(DEMO.statusHandle, { timeout: REQUEST_TIMEOUT_MS });
        counts.answers += 2;
        counts.worstMs = Math.max(counts.worstMs, performance.now() - started);
      } catch (error) {
        counts.failures++;
        counts.lastError = error?.code ?? String(error);
        if (api.isClosed) break;
      }
      await new Promise((r) => setTimeout(r, ROUND_EVERY_MS));
    }
  })();
  return {
    /** Advertisements, answers and failures since the last mark. */
    mark() {
      const at = { ads, answers: counts.answers, failures: counts.failures };
      counts.worstMs = 0;
      return () => ({
        ads: ads - at.ads,
        answers: counts.answers - at.answers,
        failures: counts.failures - at.failures,
        worstMs: counts.worstMs,
        lastError: counts.lastError,
        closed: api.isClosed,
      });
    },
    async stop() {
      running = false;
      await loop;
      await link.disconnect({ timeout: 2_000 }).catch(() => {});
      await api.close().catch(() => {});
    },
  };
}

/** Whether a newcomer can get a session now: a connect + Hello within `timeoutMs`. */
export async function newcomerGetsIn({ port, psk }, timeoutMs = 2_000) {
  try {
    const api = await ApiConnection.connect({
      host: '127.0.0.1',
      port,
      ...(psk ? { psk } : {}),
      clientInfo: 'newcomer',
      timeout: timeoutMs,
    });
    await api.close();
    return true;
  } catch {
    return false;
  }
}
