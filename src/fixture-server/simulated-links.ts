import type { PartialMessage } from '@protobuf-ts/runtime';
import { BluetoothConnectionsFreeResponse, BluetoothDeviceConnectionResponse, BluetoothGATTNotifyDataResponse } from '../gen/api_pb.js';
import type { BluetoothAudience } from './bluetooth-audience.js';
import type { FirmwareProfile } from './firmware.js';
import type { SimulatedPeripheral } from './simulated-peripheral.js';
import type { TimerSet } from './timer-set.js';

/** How often the firmware notices that the Bluetooth subscriber went away and drops its links. */
const SUBSCRIBER_CHECK_MS = 100;
/** A connect to an address nobody advertises fails like an out-of-range device (ESP_GATT_ERROR 133). */
const UNREACHABLE_CONNECT_MS = 300;
/** ESP-IDF reasons used by the simulation. */
export const REASON = { supervisionTimeout: 0x08, localHost: 0x16, gattError: 0x85 } as const;
/** Where the phantom devices holding busy slots start (F0:00:00:00:00:10, …11, …). */
const PHANTOM_BASE = 0xf0_00_00_00_00_10;

/** Per-address overrides tests apply at run time. */
export interface ConnectBehaviour {
  /** Fail the next connects with this reason (e.g. 0x100 CONN_CANCEL, 0x3e, 0x85). */
  connectError?: number;
  /** How many connects fail with connectError (default: all). */
  connectErrorCount?: number;
  connectDelayMs?: number;
  /** Drop the link this long after it came up. */
  linkLossAfterMs?: number;
  /** Never answer a connect (the client must time out and cancel). */
  hang?: boolean;
  /**
   * The reason of the second `connected=false` (the close event) after a failed connect, when it differs from the
   * first: esphome#18640 logs a cancel (0x100) 20.0 s after the connect, then the open's status 133 (0x85).
   */
  closeError?: number;
  /** Time between the two `connected=false` of a failed connect (default 2 ms; esphome#18640: ~170 ms). */
  closeDelayMs?: number;
  /**
   * A ghost link (home-assistant/core#176516): the first DISCONNECT of an established link is answered but never
   * completed, so the slot stays allocated and the peripheral stays connected (silent); another DISCONNECT ends it.
   */
  ghostDisconnect?: boolean;
}

/** A connection slot: a link or a connect attempt. */
export interface SimulatedLink {
  readonly address: number;
  phase: 'connecting' | 'connected' | 'disconnecting';
  readonly peripheral: SimulatedPeripheral | undefined;
  readonly withCache: boolean;
  servicesSent: boolean;
  /** Its pending timers, cleared when it ends. */
  readonly timers: Set<NodeJS.Timeout>;
  offNotify: (() => void) | undefined;
  offLinkLoss: (() => void) | undefined;
  /** Its first DISCONNECT was answered but not carried out (ConnectBehaviour.ghostDisconnect). */
  ghost?: boolean;
}

/** What the link table needs from the proxy it belongs to. */
export interface SimulatedLinksOptions {
  /** Connection slots. */
  readonly limit: number;
  /** Phantom links wanted at first (SimulatedProxyOptions.slotsBusy). */
  readonly busy: number;
  readonly peripherals: readonly SimulatedPeripheral[];
  readonly audience: BluetoothAudience;
  readonly timers: TimerSet;
  readonly firmware: FirmwareProfile | undefined;
}

/**
 * The connection side of the simulated proxy: its slots, the links and connect attempts holding them (and the
 * phantom links of another client), connects and disconnects with the firmware's replies, and the slot reports.
 */
export class SimulatedLinks {
  readonly limit: number;
  readonly #options: SimulatedLinksOptions;
  readonly #links = new Map<number, SimulatedLink>();
  /** Phantom links wanted (slotsBusy); they hold slots only while somebody is subscribed (see #phantoms). */
  #phantomCount: number;
  readonly #behaviours = new Map<number, ConnectBehaviour>();
  #orphanCheck: NodeJS.Timeout | undefined;

  constructor(options: SimulatedLinksOptions) {
    this.#options = options;
    this.limit = options.limit;
    this.#phantomCount = Math.max(0, Math.min(options.busy, this.limit));
  }

  /** Addresses holding a slot (phantoms first), as the proxy reports them. */
  get allocated(): number[] {
    return [...this.#phantoms(), ...this.#links.keys()];
  }

  /** Addresses holding a slot for a link or a connect attempt (no phantoms). */
  get linkAddresses(): number[] {
    return [...this.#links.keys()];
  }

  /** Free slots. */
  get free(): number {
    return Math.max(0, this.limit - this.#phantoms().length - this.#links.size);
  }

  /** The established link to `address`, if any (GATT requests need one). */
  connected(address: number): SimulatedLink | undefined {
    const link = this.#links.get(address);
    return link?.phase === 'connected' ? link : undefined;
  }

  /** Overrides connect behaviour for one address (undefined clears it). */
  setBehaviour(address: number, behaviour: ConnectBehaviour | undefined): void {
    if (behaviour === undefined) this.#behaviours.delete(address);
    else this.#behaviours.set(address, { ...behaviour });
  }

  /** Occupies or frees phantom slots (held only while somebody is subscribed). */
  setBusySlots(count: number): void {
    this.#phantomCount = Math.max(0, Math.min(count, this.limit));
    this.pushSlots();
  }

  /** Drops an established link (or attempt) as if the peripheral went out of range. */
  dropLink(address: number, reason: number): void {
    const link = this.#links.get(address);
    if (link !== undefined) this.#endLink(link, reason);
  }

  /** A CONNECT_V3 request: reserve a slot, then connect to the peripheral as the behaviour and the peripheral decide. */
  connect(address: number, hasAddressType: boolean, withCache: boolean): void {
    const existing = this.#links.get(address);
    if (existing?.phase === 'connected') {
      this.connectionResponse(address, true, 0, 0);
      this.pushSlots();
      return;
    }
    if (existing !== undefined) return; // already connecting / disconnecting: ignored
    if (!hasAddressType || this.free === 0) {
      this.connectionResponse(address, false, 0, 0);
      return;
    }
    const peripheral = this.#options.peripherals.find((p) => p.address === address);
    const link: SimulatedLink = {
      address,
      phase: 'connecting',
      peripheral,
      withCache,
      servicesSent: false,
      timers: new Set(),
      offNotify: undefined,
      offLinkLoss: undefined,
    };
    this.#links.set(address, link);
    this.pushSlots();
    if (!this.#options.audience.hasListener()) this.scheduleOrphanCheck();
    const behaviour = this.#behaviours.get(address);
    if (behaviour?.hang) return;
    const timers = this.#options.timers;
    if (peripheral === undefined) {
      timers.inGroup(link.timers, UNREACHABLE_CONNECT_MS, () => this.#endLink(link, REASON.gattError));
      return;
    }
    const forced = this.#takeConnectError(address, behaviour);
    timers.inGroup(link.timers, behaviour?.connectDelayMs ?? peripheral.connectDelayMs, () => {
      const result = forced !== undefined ? { connected: false as const, error: forced } : peripheral.connect();
      if (!result.connected) {
        this.#endLink(link, result.error, behaviour);
        return;
      }
      link.phase = 'connected';
      link.offNotify = peripheral.onNotify((handle, data) => {
        if (link.phase === 'connected') this.#options.audience.send(BluetoothGATTNotifyDataResponse, { address, handle, data });
      });
      link.offLinkLoss = peripheral.onLinkLoss((reason) => this.#endLink(link, reason));
      // On cached connects the firmware reports connected before MTU negotiation: the value is not meaningful.
      this.connectionResponse(address, true, withCache ? 0 : result.mtu, 0);
      this.pushSlots();
      if (behaviour?.linkLossAfterMs !== undefined)
        timers.inGroup(link.timers, behaviour.linkLossAfterMs, () => this.#endLink(link, REASON.supervisionTimeout));
    });
  }

  /** A DISCONNECT request. */
  disconnect(address: number): void {
    const link = this.#links.get(address);
    if (link === undefined) {
      this.connectionResponse(address, false, 0, 0);
      this.pushSlots();
      return;
    }
    if (link.phase === 'connected' && link.ghost !== true && this.#behaviours.get(address)?.ghostDisconnect === true) {
      link.ghost = true;
      this.connectionResponse(address, false, 0, REASON.localHost);
      this.pushSlots();
      return;
    }
    this.#endLink(link, REASON.localHost);
  }

  /** Reports a link's state (BluetoothDeviceConnectionResponse). */
  connectionResponse(address: number, connected: boolean, mtu: number, error: number): void {
    this.#options.audience.send(BluetoothDeviceConnectionResponse, { address, connected, mtu, error });
  }

  /** Reports the slots to whoever hears the Bluetooth answers. */
  pushSlots(): void {
    this.#options.audience.send(BluetoothConnectionsFreeResponse, this.slotsMessage());
  }

  /** The slot report as the played generation writes it (the `allocated` list arrived in 2025). */
  slotsMessage(): PartialMessage<BluetoothConnectionsFreeResponse> {
    const withList = this.#options.firmware?.reportsBluetoothMacAndAllocated ?? true;
    return { free: this.free, limit: this.limit, ...(withList ? { allocated: this.allocated } : {}) };
  }

  /**
   * With no subscriber (before 2023.6: no client connected at all) the firmware's loop disconnects every
   * slot it holds (checked every 100 ms) and tells nobody: its replies go to the subscriber only. That
   * includes a slot that a connect from an unsubscribed client has just reserved.
   */
  scheduleOrphanCheck(): void {
    if (this.#orphanCheck !== undefined || this.#options.timers.closed) return;
    this.#orphanCheck = setTimeout(() => {
      this.#orphanCheck = undefined;
      if (this.#options.audience.hasListener()) return;
      for (const link of [...this.#links.values()]) this.#endLink(link, REASON.localHost);
    }, SUBSCRIBER_CHECK_MS);
  }

  /** Forgets every link (the proxy closes; its timers are the TimerSet's to clear). */
  close(): void {
    clearTimeout(this.#orphanCheck);
    for (const link of this.#links.values()) this.#clearLink(link);
    this.#links.clear();
  }

  /**
   * The phantom links holding a slot now: none while nobody is subscribed (the firmware drops every link then, the
   * phantoms' included), all of them while somebody is (their client opens them again at once).
   */
  #phantoms(): number[] {
    if (this.#phantomCount === 0 || !this.#options.audience.hasListener()) return [];
    return Array.from({ length: this.#phantomCount }, (_, i) => PHANTOM_BASE + i);
  }

  #takeConnectError(address: number, behaviour: ConnectBehaviour | undefined): number | undefined {
    if (behaviour?.connectError === undefined) return undefined;
    if (behaviour.connectErrorCount !== undefined) {
      if (behaviour.connectErrorCount <= 0) return undefined;
      behaviour.connectErrorCount--;
      if (behaviour.connectErrorCount === 0) {
        const { connectError: _spent, ...rest } = behaviour;
        this.#behaviours.set(address, rest);
      }
    }
    return behaviour.connectError;
  }

  /** Ends a link or attempt the way current firmware does: disconnect event, close event, then the slot is freed. */
  #endLink(link: SimulatedLink, reason: number, close: Pick<ConnectBehaviour, 'closeError' | 'closeDelayMs'> = {}): void {
    if (this.#links.get(link.address) !== link || link.phase === 'disconnecting') return;
    link.phase = 'disconnecting';
    this.#clearLink(link, reason);
    this.connectionResponse(link.address, false, 0, reason);
    if (this.#options.firmware?.closeEvent === false) {
      this.#links.delete(link.address);
      this.pushSlots();
      return;
    }
    this.#options.timers.later(close.closeDelayMs ?? 2, () => {
      this.connectionResponse(link.address, false, 0, close.closeError ?? reason);
      this.#links.delete(link.address);
      this.pushSlots();
    });
  }

  #clearLink(link: SimulatedLink, reason?: number): void {
    this.#options.timers.clearGroup(link.timers);
    link.offNotify?.();
    link.offLinkLoss?.();
    link.offNotify = undefined;
    link.offLinkLoss = undefined;
    link.peripheral?.reset(reason);
  }
}
