import { describe, expect, it } from 'vitest';
import { useClosers } from '../helpers/closers.js';
import { startProxy } from '../helpers/fleet.js';
import { SKIP_WITHOUT_IPV6_LOOPBACK } from '../helpers/ipv6-loopback.js';
import { useMatterController } from '../helpers/matter.js';
import { commissionSimulatedLight } from './matter-simulated.js';

const closers = useClosers();
// The example prepares matter.js itself; the helper does it first (same port, so the example's call returns the same
// network) to load matter.js outside the test and to close its process-wide mDNS afterwards.
const matter = useMatterController();

describe.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)(
  'README examples - Matter, the simulated device from your own script (waits for IPv6 loopback ::1)',
  () => {
    it('examples - a script commissions serve --profile matter over BLE and reaches it over CASE, on loopback', async () => {
      const node = await startProxy(closers, { profile: 'matter', matter: { mdnsPort: matter.mdnsPort } });
      const result = await commissionSimulatedLight(`127.0.0.1:${node.server.address.port}`, matter.mdnsPort);
      expect(result).toEqual({ product: 'Simulated light', connected: true });
      expect(node.matter[0]!.events).toContainEqual({ type: 'commissioned', fabrics: 1 });
    }, 60_000);
  },
);
