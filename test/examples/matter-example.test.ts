import { describe, expect, it } from 'vitest';
import { useClosers } from '../helpers/closers.js';
import { startProxy } from '../helpers/fleet.js';
import { SKIP_WITHOUT_IPV6_LOOPBACK } from '../helpers/ipv6-loopback.js';
import { useMatterController } from '../helpers/matter.js';
import { commissionOverProxies } from './matter.js';

const closers = useClosers();
// The README's controller runs on a real LAN; here matter.js is first pinned to loopback (mDNS on a private port).
const matter = useMatterController();

describe.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)('README examples - Matter (waits for IPv6 loopback ::1)', () => {
  it('examples - a matter.js controller commissions the simulated Matter light through a proxy', async () => {
    const node = await startProxy(closers, { profile: 'matter', matter: { mdnsPort: matter.mdnsPort } });
    const result = await commissionOverProxies([`127.0.0.1:${node.server.address.port}`], 20202021, 3840, {
      ssid: 'home',
      password: 'secret',
    });
    expect(typeof result.nodeId).toBe('bigint');
    expect(result.product).toBe('Simulated light');
    expect(node.matter[0]!.events).toContainEqual({ type: 'commissioned', fabrics: 1 });
  }, 60_000);
});
