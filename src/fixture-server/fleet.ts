import { formatMac } from '../bluetooth/address.js';
import type { ProxySnapshot } from '../pool/proxy-pool.js';
import { ApiServer, type ApiServerOptions, type ListeningInfo } from '../server/api-server.js';
import { firmwareProfile, firmwareServerOptions } from './firmware.js';
import { MatterDevice, type MatterDeviceInfo, type MatterDeviceOptions } from './matter/matter-device.js';
import { type DeviceProfile, loadProfile, resolveProfilePath } from './profile.js';
import { SimulatedProxy, type SimulatedProxyOptions } from './simulated-proxy.js';

/** One simulated proxy: the node and its Bluetooth half. */
export interface SimulatedNode {
  readonly server: ApiServer;
  readonly bluetooth: SimulatedProxy;
  readonly profile: DeviceProfile | undefined;
  /** The Matter devices behind peripherals whose profile has a `matter` entry (stopped with the server). */
  readonly matter: readonly MatterDevice[];
}

/** Options of one simulated proxy. */
export interface SimulatedNodeOptions extends Omit<ApiServerOptions, 'plugins'>, Omit<SimulatedProxyOptions, 'peripherals'> {
  /** A profile object, a profile name in fixtures/profiles (`kitchen`), or a path. Default: `default`. */
  profile?: DeviceProfile | string;
  /**
   * How Matter devices of the profile run (log level, mDNS port on loopback, operational port); `signal` and
   * `timeout` bound each device's start (an aborted start leaves no process behind).
   */
  matter?: MatterDeviceOptions;
}

/** Starts one simulated Bluetooth proxy on loopback. */
export async function startSimulatedProxy(options: SimulatedNodeOptions = {}): Promise<SimulatedNode> {
  const profile =
    typeof options.profile === 'object' ? options.profile : await loadProfile(resolveProfilePath(options.profile ?? 'default'));
  const bluetooth = new SimulatedProxy({ ...options, peripherals: profile.peripherals });
  const matter: MatterDevice[] = [];
  try {
    for (const peripheral of bluetooth.peripherals) {
      const config = peripheral.profile.matter;
      if (config !== undefined) matter.push(await MatterDevice.start(peripheral, config, options.matter));
    }
    // A firmware generation sets the node's API version and login rules; explicit options still win.
    const firmware = options.firmware === undefined ? {} : firmwareServerOptions(firmwareProfile(options.firmware));
    const { matter: _matter, ...serverOptions } = options;
    const server = new ApiServer({ host: '127.0.0.1', port: 0, ...firmware, ...serverOptions, plugins: [bluetooth, ...matter] });
    await server.listen();
    return { server, bluetooth, profile, matter };
  } catch (error) {
    await Promise.allSettled(matter.map((device) => device.close()));
    bluetooth.close();
    throw error;
  }
}

/**
 * Slot leaks between a pool and the simulated proxies it uses (matched by port): slots a proxy holds for a
 * link or attempt that is no link of the pool, and connects of the pool still in flight. Measure it while
 * the sessions are open: once its subscriber leaves, a proxy drops every slot itself, leaked or not.
 */
export function leakedSlots(nodes: readonly SimulatedNode[], proxies: readonly ProxySnapshot[]): string[] {
  const leaks: string[] = [];
  for (const node of nodes) {
    const proxy = proxies.find((p) => p.port === node.server.address.port);
    const owned = new Set(proxy?.owned ?? []);
    for (const address of node.bluetooth.linkAddresses) {
      if (!owned.has(address)) leaks.push(`${node.server.name}: slot of ${formatMac(address)} held without a link of the pool`);
    }
    if (proxy !== undefined && proxy.inFlight > 0) leaks.push(`${node.server.name}: ${proxy.inFlight} connects still in flight`);
  }
  return leaks;
}

/** The line `serve` prints, extended with the simulated peripherals. */
export function nodeListeningInfo(node: SimulatedNode): ListeningInfo & {
  board: string;
  devices: Array<{ mac: string; addressType: number; connectable: boolean; name: string; matter?: MatterDeviceInfo }>;
} {
  return {
    ...node.server.listeningInfo(),
    board: node.bluetooth.board,
    devices: node.bluetooth.peripherals.map((p) => {
      const matter = node.matter.find((device) => device.peripheral === p)?.info;
      return {
        mac: p.mac,
        addressType: p.addressType,
        connectable: p.connectable,
        name: p.name,
        ...(matter === undefined ? {} : { matter }),
      };
    }),
  };
}

/** A set of simulated proxies started together. */
export class SimulatedFleet {
  readonly nodes: SimulatedNode[];

  private constructor(nodes: SimulatedNode[]) {
    this.nodes = nodes;
  }

  /** Starts `count` proxies (or one per options entry); the defaults give each its own name and profile. */
  static async start(specs: number | readonly SimulatedNodeOptions[], common: SimulatedNodeOptions = {}): Promise<SimulatedFleet> {
    const list = typeof specs === 'number' ? Array.from({ length: specs }, () => ({})) : specs;
    const nodes: SimulatedNode[] = [];
    try {
      for (const [i, spec] of list.entries()) {
        nodes.push(await startSimulatedProxy({ name: `proxy-${i + 1}`, bluetoothMac: bluetoothMacFor(i), ...common, ...spec }));
      }
    } catch (error) {
      await Promise.allSettled(nodes.map((n) => n.server.close()));
      throw error;
    }
    return new SimulatedFleet(nodes);
  }

  /** `host:port` of every node. */
  get addresses(): string[] {
    return this.nodes.map((n) => `${n.server.address.host}:${n.server.address.port}`);
  }

  /** Closes every node. */
  async close(): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => n.server.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function bluetoothMacFor(index: number): string {
  return `AA:BB:CC:00:00:${(index + 1).toString(16).padStart(2, '0').toUpperCase()}`;
}
