import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import {
  ChannelType,
  InterfaceType,
  MAX_UDP_MESSAGE_SIZE,
  Network,
  NetworkError,
  type NetworkInterface,
  type NetworkInterfaceDetails,
  type TransportInterface,
  type UdpChannel,
  type UdpChannelOptions,
} from '@matter/main';
import { isLoopbackHost } from '../../server/listener-policy.js';

/** The one interface a LoopbackNetwork has (Linux's name; the address is what counts). */
export const LOOPBACK_INTERFACE = 'lo';
/** The port mDNS uses on a real network; a LoopbackNetwork moves it to its own port. */
export const MDNS_PORT = 5353;

const IPV4_LOOPBACK = '127.0.0.1';
const IPV6_LOOPBACK = '::1';
/** mDNS's IPv4 group: the one multicast group loopback can carry (Linux's lo has no IPv6 multicast route). */
const MDNS_IPV4_GROUP = '224.0.0.251';

/** Options of a LoopbackNetwork. */
export interface LoopbackNetworkOptions {
  /** UDP port that stands in for mDNS's 5353, so test runs do not hear each other (default 5353). */
  mdnsPort?: number;
  /** The "MAC" of the loopback interface: matter.js derives its mDNS host name from it. */
  mac?: string;
}

/**
 * A matter.js `Network` that only ever reaches this host: one interface (`lo`) with 127.0.0.1 and ::1, UDP
 * sockets bound to loopback (mDNS to 0.0.0.0 on its port, so it can receive the group), multicast joined and
 * sent on 127.0.0.1 only, and any datagram for another host refused. matter.js's own Node.js network cannot be
 * pinned this way: with `mdns.networkInterface = lo` it still joins the IPv4 group on the default-route
 * interface (so it never hears loopback multicast, and announces the membership on that interface), and IPv6
 * multicast cannot leave through lo at all (ENETUNREACH). IPv6 multicast is therefore dropped here and mDNS runs
 * over IPv4 on loopback; unicast works on both families.
 */
export class LoopbackNetwork extends Network {
  readonly #mdnsPort: number;
  readonly #mac: string;

  constructor(options: LoopbackNetworkOptions = {}) {
    super();
    this.#mdnsPort = options.mdnsPort ?? MDNS_PORT;
    this.#mac = options.mac ?? '00:00:00:00:00:00';
  }

  /** The port mDNS runs on. */
  get mdnsPort(): number {
    return this.#mdnsPort;
  }

  /** The loopback interface's "MAC". */
  get mac(): string {
    return this.#mac;
  }

  getNetInterfaces(_configuration?: NetworkInterface[]): NetworkInterface[] {
    return [{ name: LOOPBACK_INTERFACE, type: InterfaceType.Ethernet }];
  }

  getIpMac(netInterface: string): NetworkInterfaceDetails | undefined {
    if (netInterface !== LOOPBACK_INTERFACE) return undefined;
    return { mac: this.#mac, ipV4: [IPV4_LOOPBACK], ipV6: [IPV6_LOOPBACK] };
  }

  createUdpChannel(options: UdpChannelOptions): Promise<UdpChannel> {
    return LoopbackUdpChannel.create(options, this.#mdnsPort);
  }
}

/** A dgram socket that only talks to this host. */
class LoopbackUdpChannel implements UdpChannel {
  readonly maxPayloadSize = MAX_UDP_MESSAGE_SIZE;
  readonly #socket: Socket;
  readonly #ipv4: boolean;
  readonly #mdnsPort: number;

  static async create(options: UdpChannelOptions, mdnsPort: number): Promise<LoopbackUdpChannel> {
    const ipv4 = options.type === 'udp4';
    const listeningAddress = options.listeningAddress;
    if (listeningAddress !== undefined && !isLoopback(listeningAddress)) {
      throw new NetworkError(`A loopback network cannot listen on ${listeningAddress}`);
    }
    const isMdns = options.listeningPort === MDNS_PORT;
    const socket = createSocket({ type: options.type, reuseAddr: true, ...(ipv4 ? {} : { ipv6Only: true }) });
    // A socket bound to 127.0.0.1 would not accept datagrams addressed to the group; the group is joined on 127.0.0.1 only.
    const host = listeningAddress ?? (isMdns && ipv4 ? '0.0.0.0' : ipv4 ? IPV4_LOOPBACK : IPV6_LOOPBACK);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(isMdns ? mdnsPort : (options.listeningPort ?? 0), host, () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      // A socket that could not bind (no ::1 on a host without IPv6) is closed, not left open.
      try {
        socket.close();
      } catch {
        // already closed
      }
      const cause = error as NodeJS.ErrnoException;
      throw new NetworkError(
        `The loopback network cannot listen on ${host}${ipv4 ? '' : ' (IPv6 loopback; Docker networks often have none)'}: ${cause.code ?? cause.message}`,
      );
    }
    // Errors after binding arrive with the send that caused them; an 'error' event must not crash the process.
    socket.on('error', () => undefined);
    if (ipv4) {
      socket.setMulticastInterface(IPV4_LOOPBACK);
      socket.setMulticastLoopback(true);
    }
    return new LoopbackUdpChannel(socket, ipv4, mdnsPort);
  }

  private constructor(socket: Socket, ipv4: boolean, mdnsPort: number) {
    this.#socket = socket;
    this.#ipv4 = ipv4;
    this.#mdnsPort = mdnsPort;
  }

  get port(): number {
    return this.#socket.address().port;
  }

  addMembership(address: string): void {
    // IPv6 groups: lo cannot carry them, and joining elsewhere is what this class exists to avoid.
    if (this.#ipv4) this.#socket.addMembership(address, IPV4_LOOPBACK);
  }

  dropMembership(address: string): void {
    if (!this.#ipv4) return;
    try {
      this.#socket.dropMembership(address, IPV4_LOOPBACK);
    } catch {
      // not a member (or already closed): nothing to drop
    }
  }

  onData(listener: UdpChannel.Callback): TransportInterface.Listener {
    const onMessage = (data: Buffer, remote: { address: string; port: number }): void => {
      // The mDNS socket is bound to 0.0.0.0 (to receive the group): other hosts can reach it, and must not.
      if (!isLoopback(remote.address)) return;
      listener(LOOPBACK_INTERFACE, remote.address, remote.port, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    };
    this.#socket.on('message', onMessage);
    return {
      close: async () => {
        this.#socket.off('message', onMessage);
      },
    };
  }

  async send(host: string, port: number, data: Uint8Array): Promise<void> {
    const target = host.replace(/%.*$/, '');
    const multicast = isMulticast(target);
    if (multicast && isIP(target) === 6) return; // no IPv6 multicast on loopback: the datagram goes nowhere
    if (!multicast && !isLoopback(target)) throw new NetworkError(`A loopback network does not reach ${host}`);
    if (multicast && target !== MDNS_IPV4_GROUP) throw new NetworkError(`A loopback network only carries mDNS's group, not ${host}`);
    const targetPort = port === MDNS_PORT ? this.#mdnsPort : port;
    await new Promise<void>((resolve, reject) => {
      this.#socket.send(data, targetPort, target, (error) => (error ? reject(new NetworkError(error.message)) : resolve()));
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      try {
        this.#socket.close(() => resolve());
      } catch {
        resolve(); // already closed
      }
    });
  }

  supports(type: ChannelType, address?: string): boolean {
    if (type !== ChannelType.UDP) return false;
    if (address === undefined) return true;
    return isIP(address.replace(/%.*$/, '')) === (this.#ipv4 ? 4 : 6);
  }
}

/** 127.0.0.0/8, ::1 and ::ffff:127.x.x.x (a zone suffix ignored). */
function isLoopback(address: string): boolean {
  return isLoopbackHost(address.replace(/%.*$/, ''));
}

function isMulticast(address: string): boolean {
  if (isIP(address) === 6) return address.toLowerCase().startsWith('ff');
  const first = Number(address.split('.')[0]);
  return first >= 224 && first <= 239;
}
