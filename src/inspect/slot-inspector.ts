import { formatMac } from '../bluetooth/address.js';
import { BluetoothProxyFeature, featureNames, hasFeature, isAdvertisementOnly, resolveFeatureFlags } from '../bluetooth/features.js';
import { answersEveryClient, mayLoseSubscription } from '../bluetooth/firmware-release.js';
import { ownBluetoothAddress, withoutOwnAddress } from '../bluetooth/own-address.js';
import type { BluetoothProxy } from '../bluetooth/proxy-client.js';
import type { ApiConnection } from '../connection/connection.js';
import { FeatureMissingError, TimeoutError } from '../errors.js';
import { messageId } from '../frame/message-types.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceClearCacheResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothDeviceUnpairingResponse,
  BluetoothGATTErrorResponse,
  BluetoothGATTGetServicesDoneResponse,
  BluetoothGATTGetServicesResponse,
  BluetoothGATTNotifyDataResponse,
  BluetoothGATTNotifyResponse,
  BluetoothGATTReadResponse,
  BluetoothGATTWriteResponse,
  BluetoothLEAdvertisementResponse,
  BluetoothLERawAdvertisementsResponse,
  BluetoothScannerStateResponse,
  BluetoothSetConnectionParamsResponse,
  SubscribeBluetoothConnectionsFreeRequest,
} from '../gen/api_pb.js';
import { type CallOptions, sleep, withDeadline } from '../util/abort.js';
import { HOLD_EVIDENCE_MS, judgeSubscriber, type SubscriberVerdict } from './subscriber-verdict.js';

/** Deadline of one slot query: the firmware answers at once; a slow ESP on weak Wi-Fi takes a few seconds. */
export const SLOT_QUERY_TIMEOUT_MS = 5_000;
/** How long release() waits for the proxy to free a slot: it confirms within ~100 ms; one that keeps it 2 s will not let go. */
export const RELEASE_TIMEOUT_MS = 2_000;
/** Advertised names remembered for the table: a busy place has hundreds of advertisers, a slot list at most nine. */
const MAX_NAMES = 512;
/** How often release() asks for the slots while it waits. */
const RELEASE_POLL_MS = 100;
/**
 * Subscriber-only traffic counts this long: a subscribed proxy that hears anything sends advertisements every
 * 100 ms, so ten seconds of silence means the subscription is not ours (or the radio is quiet).
 */
const SUBSCRIBER_TRAFFIC_WINDOW_MS = 10_000;
/**
 * What the firmware (2023.6 on) sends to its Bluetooth subscriber only: advertisements, scanner state, link events,
 * GATT results, pairing and cache answers, connection parameters.
 */
const SUBSCRIBER_ONLY_IDS = [
  BluetoothLEAdvertisementResponse,
  BluetoothLERawAdvertisementsResponse,
  BluetoothScannerStateResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothGATTGetServicesResponse,
  BluetoothGATTGetServicesDoneResponse,
  BluetoothGATTReadResponse,
  BluetoothGATTNotifyDataResponse,
  BluetoothGATTErrorResponse,
  BluetoothGATTWriteResponse,
  BluetoothGATTNotifyResponse,
  BluetoothDevicePairingResponse,
  BluetoothDeviceUnpairingResponse,
  BluetoothDeviceClearCacheResponse,
  BluetoothSetConnectionParamsResponse,
].map(messageId);

/** One slot report of the proxy (its answer to the slot query, or a push to the subscriber). */
export interface SlotReport {
  readonly free: number;
  readonly limit: number;
  /** Addresses holding a slot (absent on firmware before 2025, which sends counts only). */
  readonly allocated: readonly number[];
  /** When it arrived (ms since the epoch). */
  readonly at: number;
}

/** One allocated slot as an inspection sees it. */
export interface SlotAllocation {
  readonly address: number;
  readonly mac: string;
  /** From the first to the latest of our reports that show it allocated without a break (0 when seen once). */
  readonly heldMs: number;
  /** A link of this process (only with the subscription: the links of the BluetoothProxy given to the inspector). */
  readonly owned: boolean;
  /** The device's advertised name, when heard while we hold the subscription (advertisements go to the subscriber only). */
  readonly name: string | undefined;
  /**
   * Why no client can use this slot, when that is shown: we hold the subscription, so its events come to us, and it
   * is not ours (first-wins firmware, or newest-wins with its connect event received by us). Undefined otherwise.
   */
  readonly unclaimed: string | undefined;
}

/** What one inspection of a proxy found. */
export interface SlotInspection {
  /** When it was taken (ms since the epoch). */
  readonly at: number;
  readonly name: string;
  readonly friendlyName: string;
  readonly esphomeVersion: string;
  /** `major.minor` from the device's Hello. */
  readonly apiVersion: string;
  readonly model: string;
  readonly manufacturer: string;
  /** Feature bitmask (BluetoothProxyFeature) and the names of its bits. */
  readonly features: number;
  readonly featureNames: readonly string[];
  /** Forwards advertisements but opens no connections: no slots to read (isAdvertisementOnly). */
  readonly advertisementOnly: boolean;
  /** The latest slot report; undefined on advertisement-only proxies and before the first answer. */
  readonly slots: SlotReport | undefined;
  /** The allocated slots, in report order. */
  readonly allocations: readonly SlotAllocation[];
  /** Who holds the Bluetooth subscription, and how sure that is. */
  readonly subscriber: SubscriberVerdict;
  /** Scanner mode, known only to the subscriber (the BluetoothProxy given to the inspector). */
  readonly scannerMode: 'active' | 'passive' | undefined;
}

/** Options of a SlotInspector. */
export interface SlotInspectorOptions {
  /**
   * The Bluetooth client attached to the same session, when the caller chose to hold the subscription: its state
   * says whether we are the subscriber, its links are "ours", and releases go through it. Without it the inspector
   * takes nothing: it sends only the slot query, which the firmware answers to any client.
   */
  readonly bluetooth?: BluetoothProxy | undefined;
}

/**
 * Reads a proxy's connection slots without disturbing whoever holds its Bluetooth subscription: it sends only the
 * slot query (80), answered to any client, never the advertisement subscribe (66: on 2026.7+ firmware that takes
 * the subscription from Home Assistant) nor a subscriber probe (a DISCONNECT whose answer goes to the subscriber).
 * Slot updates are pushed to the subscriber only (spec §6.6), so a watcher polls `poll()`.
 */
export class SlotInspector {
  readonly api: ApiConnection;
  readonly bluetooth: BluetoothProxy | undefined;
  /** Feature bitmask (BluetoothProxyFeature). */
  readonly features: number;
  #report: SlotReport | undefined;
  /** When each allocated address was first seen in an unbroken run of reports. */
  readonly #firstSeen = new Map<number, number>();
  /**
   * Addresses whose connected=true reached this session and that are not links of ours: only the subscriber
   * receives link events, so we were the subscriber when they came up and whoever opened them heard nothing.
   */
  readonly #announced = new Set<number>();
  /** Advertised names heard with the subscription ours, newest last, at most MAX_NAMES. */
  readonly #names = new Map<number, string>();
  readonly #answersEveryClient: boolean;
  readonly #firstWins: boolean;
  #lastTrafficAt = 0;
  #lostBy: string | undefined;
  readonly #offs: Array<() => void> = [];
  readonly #ownAddress: number | undefined;

  constructor(api: ApiConnection, options: SlotInspectorOptions = {}) {
    this.api = api;
    this.bluetooth = options.bluetooth;
    const info = api.deviceInfo;
    this.features = resolveFeatureFlags({
      deviceInfoFlags: info.bluetoothProxyFeatureFlags,
      legacyVersion: info.legacyBluetoothProxyVersion,
    });
    const version = { major: api.hello.apiVersionMajor, minor: api.hello.apiVersionMinor };
    this.#answersEveryClient = answersEveryClient(info.esphomeVersion, version);
    this.#firstWins = !mayLoseSubscription(info.esphomeVersion);
    this.#ownAddress = ownBluetoothAddress(info);
    const now = Date.now();
    for (const address of this.bluetooth?.slots?.allocated ?? []) this.#firstSeen.set(address, now);
    for (const id of SUBSCRIBER_ONLY_IDS) this.#offs.push(api.onRaw(id, () => (this.#lastTrafficAt = Date.now())));
    this.#offs.push(api.on(BluetoothConnectionsFreeResponse, (message) => this.#apply(message)));
    this.#offs.push(
      api.on(BluetoothDeviceConnectionResponse, (message) => {
        if (!message.connected) this.#announced.delete(message.address);
        else if (this.bluetooth?.links.has(message.address) !== true) this.#announced.add(message.address);
      }),
    );
    if (this.bluetooth !== undefined) {
      this.#offs.push(this.bluetooth.onAdvertisement((ad) => this.#noteName(ad.address, ad.localName)));
      // Lost before we were made: the attach itself found the subscription taken (first wins, another client has it).
      if (this.bluetooth.subscription.state === 'lost') this.#lostBy = 'subscribe';
      this.#offs.push(
        this.bluetooth.onStatus((status) => {
          if (status.type === 'subscriptionLost') this.#lostBy = status.detectedBy;
        }),
      );
    }
  }

  /** Proxy name and address for messages. */
  get label(): string {
    return this.api.label;
  }

  /** True for a proxy that forwards advertisements but opens no connections (and answers no slot query). */
  get advertisementOnly(): boolean {
    return isAdvertisementOnly(this.features);
  }

  /** True when the proxy answers the slot query: it has a connection half (ACTIVE_CONNECTIONS). */
  get readsSlots(): boolean {
    return hasFeature(this.features, BluetoothProxyFeature.ACTIVE_CONNECTIONS);
  }

  /** The latest slot report (undefined before the first). */
  get slots(): SlotReport | undefined {
    return this.#report;
  }

  /**
   * Asks for the slots (one slot query, skipped on a proxy that answers none) and returns the inspection.
   * Rejects with TimeoutError after `timeout` (default SLOT_QUERY_TIMEOUT_MS), ConnectionClosedError when the session ends.
   */
  async poll(options: CallOptions = {}): Promise<SlotInspection> {
    options.signal?.throwIfAborted();
    if (this.readsSlots) await this.#query(options);
    return this.inspection();
  }

  /** The inspection from what is known now, without asking the proxy. */
  inspection(now = Date.now()): SlotInspection {
    const api = this.api;
    const info = api.deviceInfo;
    const bluetooth = this.bluetooth;
    const reportedAt = this.#report?.at ?? now;
    const allocations = (this.#report?.allocated ?? []).map((address): SlotAllocation => {
      // Held as far as reports show: from the first report that listed it to the latest one, not to now.
      const heldMs = Math.max(0, reportedAt - (this.#firstSeen.get(address) ?? reportedAt));
      const owned = bluetooth?.links.has(address) ?? false;
      return {
        address,
        mac: formatMac(address),
        heldMs,
        owned,
        name: this.#names.get(address),
        unclaimed: owned ? undefined : this.#unclaimed(address, heldMs, now),
      };
    });
    const others = allocations.filter((a) => !a.owned).sort((a, b) => b.heldMs - a.heldMs);
    const own = bluetooth?.subscription;
    const subscriber = judgeSubscriber({
      online: !api.isClosed,
      answersEveryClient: this.#answersEveryClient,
      own: own === undefined ? undefined : { state: own.state, confirmed: own.confirmed, lostBy: this.#lostBy },
      subscriberTraffic: this.#lastTrafficAt !== 0 && now - this.#lastTrafficAt <= SUBSCRIBER_TRAFFIC_WINDOW_MS,
      isProxy: this.features !== 0,
      readsSlots: this.readsSlots,
      reported: this.#report !== undefined,
      longestHeld: others[0] === undefined ? undefined : { mac: others[0].mac, heldMs: others[0].heldMs },
    });
    return {
      at: now,
      name: api.hello.name || info.name,
      friendlyName: info.friendlyName,
      esphomeVersion: info.esphomeVersion,
      apiVersion: `${api.hello.apiVersionMajor}.${api.hello.apiVersionMinor}`,
      model: info.model,
      manufacturer: info.manufacturer,
      features: this.features,
      featureNames: featureNames(this.features),
      advertisementOnly: this.advertisementOnly,
      slots: this.#report,
      allocations,
      subscriber,
      scannerMode: bluetooth?.scannerState?.mode,
    };
  }

  /**
   * Asks the proxy to free the slot of `address`: sends DISCONNECT, which the firmware carries out whoever sends it
   * (its answer goes to the subscriber; with the subscription ours, through our Bluetooth client), then asks for the
   * slots until the address is gone. Resolves true once it is, false when it is still allocated after `timeout`
   * (default RELEASE_TIMEOUT_MS). This ends whatever link holds the slot, another client's included: callers decide.
   */
  async release(address: number, options: CallOptions = {}): Promise<boolean> {
    options.signal?.throwIfAborted();
    if (!this.readsSlots) {
      const why = this.features === 0 ? 'not a Bluetooth proxy' : 'an advertisement-only proxy has none';
      throw new FeatureMissingError(this.label, `connection slots (${why})`);
    }
    const timeout = options.timeout ?? RELEASE_TIMEOUT_MS;
    const bluetooth = this.bluetooth;
    try {
      return await withDeadline(
        `Releasing the slot of ${formatMac(address)} on ${this.label}`,
        { ...options, timeout },
        undefined,
        async (signal) => {
          if (bluetooth?.subscription.state === 'subscribed') await bluetooth.releaseSlot(address, { signal, timeout });
          else this.api.send(BluetoothDeviceRequest, { address, requestType: BluetoothDeviceRequestType.DISCONNECT });
          for (;;) {
            const report = await this.#query({ signal });
            if (!report.allocated.includes(address)) return true;
            await sleep(RELEASE_POLL_MS, signal);
          }
        },
      );
    } catch (error) {
      if (error instanceof TimeoutError && !options.signal?.aborted) return false;
      throw error;
    }
  }

  /** Stops listening to the session (which stays open: it is the caller's). */
  close(): void {
    for (const off of this.#offs.splice(0)) off();
  }

  async #query(options: CallOptions): Promise<SlotReport> {
    await this.api.request(SubscribeBluetoothConnectionsFreeRequest, {}, BluetoothConnectionsFreeResponse, () => true, {
      signal: options.signal,
      timeout: options.timeout ?? SLOT_QUERY_TIMEOUT_MS,
    });
    // #apply ran for the reply (listeners see every message before the request settles).
    return this.#report!;
  }

  #apply(message: BluetoothConnectionsFreeResponse): void {
    const now = Date.now();
    // A relay's full marker (the node's own address) is no device's slot: never listed, never released.
    const { free, limit, allocated } = withoutOwnAddress(
      { free: message.free, limit: message.limit, allocated: message.allocated.filter((a) => a !== 0) },
      this.#ownAddress,
    );
    for (const address of [...this.#firstSeen.keys()]) if (!allocated.includes(address)) this.#firstSeen.delete(address);
    for (const address of allocated) if (!this.#firstSeen.has(address)) this.#firstSeen.set(address, now);
    this.#report = { free, limit, allocated, at: now };
  }

  #noteName(address: number, name: string | undefined): void {
    if (name === undefined || name === '') return;
    this.#names.delete(address);
    this.#names.set(address, name);
    if (this.#names.size > MAX_NAMES) this.#names.delete(this.#names.keys().next().value!);
  }

  /** Why no client can use the slot of `address`, when our own subscription shows it (see SlotAllocation.unclaimed). */
  #unclaimed(address: number, heldMs: number, now: number): string | undefined {
    const subscription = this.bluetooth?.subscription;
    if (this.#answersEveryClient || subscription?.state !== 'subscribed' || !subscription.confirmed) return undefined;
    // A slot must outlast the firmware's own clean-up, and, on first-wins firmware, our subscription by as much.
    if (heldMs < HOLD_EVIDENCE_MS) return undefined;
    if (this.#firstWins) {
      if (now - subscription.since < HOLD_EVIDENCE_MS) return undefined;
      return 'we hold the subscription on first-wins firmware, so nobody held it before us and no other client receives this link';
    }
    // Newest wins: the subscription may have moved on since, so only a link whose connect event came to us counts.
    if (!this.#announced.has(address)) return undefined;
    return 'its connect event came to us, the subscriber, and it is not ours: the client that opened it heard nothing of it';
  }
}
