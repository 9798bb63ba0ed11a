import { createSocket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { MatterEnvironmentError } from '../../../src/errors.js';
import type { LoopbackNetwork } from '../../../src/fixture-server/matter/loopback-network.js';
import { prepareMatterEnvironment } from '../../../src/fixture-server/matter/matter-environment.js';
import { SKIP_WITHOUT_IPV6_LOOPBACK } from '../../helpers/ipv6-loopback.js';
import { freeUdpPort } from '../../helpers/matter.js';

/** An IPv4 address of this host on another interface than lo, if it has one (a datagram from it is not from loopback). */
const LAN_ADDRESS = Object.values(networkInterfaces())
  .flat()
  .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)?.address;

let network: LoopbackNetwork;
let mdnsPort: number;

// matter.js (which the network class extends) loads here, before the tests, with its process-wide defaults off.
beforeAll(async () => {
  mdnsPort = await freeUdpPort();
  network = await prepareMatterEnvironment({ mdnsPort, mac: '02:00:00:00:00:01' });
}, 30_000);

type Channel = Awaited<ReturnType<LoopbackNetwork['createUdpChannel']>>;

function received(channel: Channel): Promise<{ from: string; data: string; netInterface: string | undefined }> {
  return new Promise((resolve) => {
    const listener = channel.onData((netInterface, from, _port, data) => {
      void listener.close();
      resolve({ from, data: Buffer.from(data).toString(), netInterface });
    });
  });
}

describe('loopback-network - matter.js on this host only', () => {
  it('loopback-network - has one interface, lo, with the loopback addresses', () => {
    expect(network.getNetInterfaces()).toEqual([{ name: 'lo', type: 2 }]);
    expect(network.getIpMac('lo')).toEqual({ mac: '02:00:00:00:00:01', ipV4: ['127.0.0.1'], ipV6: ['::1'] });
    expect(network.getIpMac('eth0')).toBeUndefined();
  });

  it('loopback-network - carries mDNS multicast over 127.0.0.1 on its own port instead of 5353', async () => {
    const listener = await network.createUdpChannel({ type: 'udp4', listeningPort: 5353, netInterface: 'lo' });
    const sender = await network.createUdpChannel({ type: 'udp4', netInterface: 'lo' });
    try {
      expect(listener.port).toBe(mdnsPort);
      await listener.addMembership('224.0.0.251');
      const got = received(listener);
      await sender.send('224.0.0.251', 5353, new TextEncoder().encode('query'));
      expect(await got).toEqual({ from: '127.0.0.1', data: 'query', netInterface: 'lo' });
    } finally {
      await listener.close();
      await sender.close();
    }
  });

  it("loopback-network - IPv4 off this host is refused, and so is multicast to any group but mDNS's", async () => {
    const v4 = await network.createUdpChannel({ type: 'udp4' });
    try {
      await expect(v4.send('192.0.2.1', 5540, new Uint8Array(1))).rejects.toThrow('does not reach 192.0.2.1');
      await expect(v4.send('239.255.255.250', 1900, new Uint8Array(1))).rejects.toThrow("only carries mDNS's group");
    } finally {
      await v4.close();
    }
  });

  it.skipIf(SKIP_WITHOUT_IPV6_LOOPBACK)(
    'loopback-network - unicast reaches ::1, IPv6 off this host is refused, IPv6 multicast goes nowhere (waits for IPv6 loopback ::1)',
    async () => {
      const a = await network.createUdpChannel({ type: 'udp6' });
      const b = await network.createUdpChannel({ type: 'udp6' });
      try {
        const got = received(b);
        await a.send('::1', b.port, new TextEncoder().encode('case'));
        expect(await got).toMatchObject({ from: '::1', data: 'case' });
        await expect(a.send('fd00::1', 5540, new Uint8Array(1))).rejects.toThrow('does not reach fd00::1');
        await expect(a.send('ff02::fb%eth0', 5353, new Uint8Array(1))).resolves.toBeUndefined();
        expect(a.supports('udp' as never, '::1')).toBe(true);
        expect(a.supports('udp' as never, '127.0.0.1')).toBe(false);
      } finally {
        await a.close();
        await b.close();
      }
    },
  );

  it.skipIf(LAN_ADDRESS === undefined)(
    'loopback-network - the mDNS socket (bound to 0.0.0.0 for the group) drops datagrams from any other address (waits for a non-loopback IPv4 address on this host)',
    async () => {
      const listener = await network.createUdpChannel({ type: 'udp4', listeningPort: 5353, netInterface: 'lo' });
      const lan = createSocket('udp4');
      const local = createSocket('udp4');
      try {
        await new Promise<void>((resolve) => lan.bind(0, LAN_ADDRESS, resolve));
        await new Promise<void>((resolve) => local.bind(0, '127.0.0.1', resolve));
        const got = received(listener);
        // Sent to this host's own LAN address: it never leaves the host, and arrives from that address.
        await new Promise<void>((resolve, reject) => lan.send('from-the-lan', mdnsPort, LAN_ADDRESS, (e) => (e ? reject(e) : resolve())));
        await new Promise<void>((resolve, reject) =>
          local.send('from-loopback', mdnsPort, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
        );
        // The kernel queues them in that order: the first the channel passes on must be the loopback one.
        expect(await got).toEqual({ from: '127.0.0.1', data: 'from-loopback', netInterface: 'lo' });
      } finally {
        lan.close();
        local.close();
        await listener.close();
      }
    },
  );

  it('loopback-network - preparing matter.js again returns the same network; another port or mac is refused', async () => {
    expect(await prepareMatterEnvironment({ mdnsPort, mac: '02:00:00:00:00:01' })).toBe(network);
    await expect(prepareMatterEnvironment({ mdnsPort: mdnsPort + 1, mac: '02:00:00:00:00:01' })).rejects.toThrow(MatterEnvironmentError);
    await expect(prepareMatterEnvironment({ mdnsPort })).rejects.toThrow(`already on loopback with mdnsPort ${mdnsPort}`);
  });

  it('loopback-network - will not listen on an address of another interface', async () => {
    await expect(network.createUdpChannel({ type: 'udp4', listeningAddress: '0.0.0.0' })).rejects.toThrow('cannot listen on 0.0.0.0');
    await expect(network.createUdpChannel({ type: 'udp6', listeningAddress: 'fd00::2' })).rejects.toThrow('cannot listen on fd00::2');
  });

  it('loopback-network - a socket that cannot bind is closed and named (the leak guard checks nothing stays open)', async () => {
    // A v4-mapped loopback address on an IPv6-only socket never binds (EINVAL), as ::1 on a host without IPv6 does not.
    await expect(network.createUdpChannel({ type: 'udp6', listeningAddress: '::ffff:127.0.0.1' })).rejects.toThrow(
      /The loopback network cannot listen on ::ffff:127\.0\.0\.1 \(IPv6 loopback; Docker networks often have none\): EINVAL/,
    );
  });
});
