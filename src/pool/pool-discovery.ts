import { DEFAULT_API_PORT } from '../connection/connection.js';
import type { ProxyDiscoverySource } from './pool-options.js';
import type { ProxyConfig, ProxyMember } from './proxy-member.js';

/** What discovery may do to the pool's proxies. */
export interface DiscoveryHost {
  get(name: string): ProxyMember | undefined;
  remove(name: string): Promise<void>;
  add(config: ProxyConfig): string;
}

/**
 * Adds the proxies a discovery source announces, with their key by node name or MAC (`*`: every proxy that says it
 * requires encryption); reconnects one at once when it announces itself again, replaces it when its address moved.
 * Ends with `signal` or the source.
 */
export async function followDiscovery(
  source: ProxyDiscoverySource,
  signal: AbortSignal,
  keys: Readonly<Record<string, string>>,
  pool: DiscoveryHost,
): Promise<void> {
  try {
    for await (const event of source.events({ signal })) {
      if (event.type === 'down') continue;
      const found = event.proxy;
      const host = found.addresses.find((a) => a.includes('.')) ?? found.addresses[0];
      if (host === undefined) continue;
      const existing = pool.get(found.name);
      if (existing !== undefined) {
        if (existing.online) continue;
        if (existing.config.host === host && (existing.config.port ?? DEFAULT_API_PORT) === found.port) {
          // A proxy announcing itself while we are disconnected is back: reconnect now instead of waiting out the backoff.
          existing.session.retryNow();
          continue;
        }
        // It came back at another address (DHCP): replace the session.
        await pool.remove(found.name);
      }
      // The wildcard key only goes to proxies that announce they require encryption; plaintext ones would refuse it.
      const wildcard = found.txt?.encryption === 'required' ? keys['*'] : undefined;
      const psk = keys[found.name] ?? (found.txt?.mac ? keys[found.txt.mac] : undefined) ?? wildcard;
      pool.add({ host, port: found.port, name: found.name, ...(psk ? { psk } : {}) });
    }
  } catch {
    // discovery ended
  }
}
