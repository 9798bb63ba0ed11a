import { GeneralCommissioningServer } from '@matter/main/behaviors/general-commissioning';
import { NetworkCommissioningServer } from '@matter/main/behaviors/network-commissioning';
import { NetworkCommissioning } from '@matter/main/clusters/network-commissioning';

const Status = NetworkCommissioning.NetworkCommissioningStatus;

/** The part of the Wi-Fi cluster state this server keeps. */
interface WifiState {
  readonly maxNetworks: number;
  networks: Array<{ networkId: Uint8Array; connected: boolean }>;
  lastNetworkingStatus: NetworkCommissioning.NetworkCommissioningStatus | null;
  lastNetworkId: Uint8Array | null;
  lastConnectErrorValue: number | null;
}

/**
 * `NetworkCommissioningServer.with('WiFiNetworkInterface')`, typed by hand: under this project's
 * exactOptionalPropertyTypes matter.js's own `with()` typing rejects its `this`; the call is the one its docs show.
 */
const WifiServerBase = (NetworkCommissioningServer.with as (...features: string[]) => unknown).call(
  NetworkCommissioningServer,
  'WiFiNetworkInterface',
) as new (
  ...args: never[]
) => { readonly state: WifiState; readonly agent: { get(type: typeof GeneralCommissioningServer): GeneralCommissioningServer } };
/** Typical figures of an ESP32 Matter device; the commissioner arms its fail-safe for these. */
const SCAN_MAX_TIME_S = 10;
const CONNECT_MAX_TIME_S = 20;

/**
 * A Wi-Fi network interface for a simulated device that is already on the network (loopback): a scan finds the
 * SSID the commissioner asks for, AddOrUpdateWiFiNetwork stores the credentials (one network, as most devices),
 * and ConnectNetwork "joins" it at once. This is the commissioning flow's network step with no radio behind it:
 * what a commissioner sends and reads (Networks, LastNetworkingStatus, breadcrumbs) is the cluster's real behaviour.
 */
export class SimulatedWifiNetworkCommissioningServer extends WifiServerBase {
  /** Initial cluster state of the simulated interface (the endpoint option `networkCommissioning`). */
  static readonly initialState = {
    maxNetworks: 1,
    interfaceEnabled: true,
    scanMaxTimeSeconds: SCAN_MAX_TIME_S,
    connectMaxTimeSeconds: CONNECT_MAX_TIME_S,
    supportedWiFiBands: [NetworkCommissioning.WiFiBand['2G4']],
    networks: [],
    lastNetworkingStatus: null,
    lastNetworkId: null,
    lastConnectErrorValue: null,
  };

  scanNetworks({ ssid, breadcrumb }: NetworkCommissioning.ScanNetworksRequest): NetworkCommissioning.ScanNetworksResponse {
    this.#breadcrumb(breadcrumb);
    const found = ssid === undefined || ssid === null ? [] : [ssid];
    return {
      networkingStatus: Status.Success,
      wiFiScanResults: found.map((network) => ({
        security: { wpa2Personal: true },
        ssid: network,
        bssid: new Uint8Array([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]),
        channel: 6,
        wiFiBand: NetworkCommissioning.WiFiBand['2G4'],
        rssi: -50,
      })),
    };
  }

  addOrUpdateWiFiNetwork({
    ssid,
    breadcrumb,
  }: NetworkCommissioning.AddOrUpdateWiFiNetworkRequest): NetworkCommissioning.NetworkConfigResponse {
    this.#breadcrumb(breadcrumb);
    const networks = this.state.networks.filter((n) => !sameBytes(n.networkId, ssid));
    if (networks.length >= this.state.maxNetworks) {
      return { networkingStatus: Status.BoundsExceeded, debugText: 'one network at a time' };
    }
    this.state.networks = [...networks, { networkId: ssid, connected: false }];
    this.state.lastNetworkingStatus = Status.Success;
    this.state.lastNetworkId = ssid;
    return { networkingStatus: Status.Success, networkIndex: this.state.networks.length - 1 };
  }

  removeNetwork({ networkId, breadcrumb }: NetworkCommissioning.RemoveNetworkRequest): NetworkCommissioning.NetworkConfigResponse {
    this.#breadcrumb(breadcrumb);
    const index = this.state.networks.findIndex((n) => sameBytes(n.networkId, networkId));
    if (index < 0) return { networkingStatus: Status.NetworkIdNotFound };
    this.state.networks = this.state.networks.filter((_, i) => i !== index);
    return { networkingStatus: Status.Success, networkIndex: index };
  }

  connectNetwork({ networkId, breadcrumb }: NetworkCommissioning.ConnectNetworkRequest): NetworkCommissioning.ConnectNetworkResponse {
    this.#breadcrumb(breadcrumb);
    const index = this.state.networks.findIndex((n) => sameBytes(n.networkId, networkId));
    if (index < 0) return { networkingStatus: Status.NetworkIdNotFound, errorValue: null };
    this.state.networks = this.state.networks.map((n, i) => ({ ...n, connected: i === index }));
    this.state.lastNetworkingStatus = Status.Success;
    this.state.lastNetworkId = networkId;
    this.state.lastConnectErrorValue = null;
    return { networkingStatus: Status.Success, errorValue: null };
  }

  reorderNetwork({
    networkId,
    networkIndex,
    breadcrumb,
  }: NetworkCommissioning.ReorderNetworkRequest): NetworkCommissioning.NetworkConfigResponse {
    this.#breadcrumb(breadcrumb);
    const index = this.state.networks.findIndex((n) => sameBytes(n.networkId, networkId));
    if (index < 0) return { networkingStatus: Status.NetworkIdNotFound };
    if (networkIndex >= this.state.networks.length) return { networkingStatus: Status.OutOfRange };
    const networks = [...this.state.networks];
    const [moved] = networks.splice(index, 1);
    networks.splice(networkIndex, 0, moved!);
    this.state.networks = networks;
    return { networkingStatus: Status.Success, networkIndex };
  }

  /** A successful network command stores the commissioner's breadcrumb (Core spec 11.9.7). */
  #breadcrumb(breadcrumb: number | bigint | undefined): void {
    if (breadcrumb === undefined) return;
    const general = this.agent.get(GeneralCommissioningServer);
    general.state.breadcrumb = breadcrumb;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
