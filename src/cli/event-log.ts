import { formatMac } from '../bluetooth/address.js';
import { describeConnectionError } from '../bluetooth/codes.js';
import type { MessageTap } from '../connection/connection.js';
import { EspApiError } from '../errors.js';
import { classifyConnectError, failureRule } from '../failure-table.js';
import { messageId } from '../frame/message-types.js';
import { BluetoothConnectionsFreeResponse, BluetoothDeviceConnectionResponse, BluetoothScannerStateResponse } from '../gen/api_pb.js';
import type { ProxyInspection } from '../inspect/proxy-inspector.js';

/** One line of `esphome-ble events` (JSON: `{"time","event",...fields}`). */
export type ConnectionEvent =
  | { event: 'proxyUp'; proxy: string; name: string | null; esphomeVersion: string | null }
  | { event: 'proxyDown'; proxy: string; code: string; message: string; failure: string; permanent: boolean }
  | { event: 'slotTaken'; proxy: string; mac: string; free: number; limit: number }
  | { event: 'slotReleased'; proxy: string; mac: string; heldMs: number | null; free: number; limit: number }
  | { event: 'slots'; proxy: string; free: number; limit: number }
  | { event: 'connected'; proxy: string; mac: string; mtu: number }
  | { event: 'disconnected'; proxy: string; mac: string; reason: number; reasonName: string }
  | { event: 'connectFailed'; proxy: string; mac: string; reason: number; reasonName: string; failure: string }
  | { event: 'subscription'; proxy: string; holder: string; sure: boolean; evidence: string }
  | { event: 'scannerState'; proxy: string; state: string; mode: string };

const SLOTS_ID = messageId(BluetoothConnectionsFreeResponse);
const CONNECTION_ID = messageId(BluetoothDeviceConnectionResponse);
const SCANNER_ID = messageId(BluetoothScannerStateResponse);
const SCANNER_STATES = ['idle', 'starting', 'running', 'failed', 'stopping', 'stopped'];
/** The close event follows the disconnect event once the controller released the link: well within a few seconds. */
const CLOSE_ECHO_MS = 5_000;

interface ProxyState {
  /** Allocated addresses with the time they were first seen, from the latest slot report. */
  allocated: Map<number, number> | undefined;
  free: number | undefined;
  limit: number | undefined;
  /** Links the proxy reported connected (only the subscriber hears connection events). */
  connected: Set<number>;
  /** When each link was last reported closed: the firmware's second `connected=false` for it is no news. */
  closed: Map<number, number>;
  online: boolean | undefined;
  holder: string | undefined;
}

/**
 * Turns what the proxies say into connection events, per proxy: slot reports (answers to our polls, or pushes to the
 * subscriber) become slotTaken/slotReleased, connection responses (the subscriber's only) connected/disconnected/
 * connectFailed with the cause, inspection snapshots proxyUp/proxyDown and subscription changes.
 */
export class EventLog {
  readonly #emit: (event: ConnectionEvent) => void;
  readonly #proxies = new Map<string, ProxyState>();

  constructor(emit: (event: ConnectionEvent) => void) {
    this.#emit = emit;
  }

  /** The tap of a session to `host:port`, identified in events as `proxy` (the inspection's id). */
  tapFor(proxy: string): MessageTap {
    return (direction, id, payload) => {
      if (direction !== 'd2c') return;
      try {
        if (id === SLOTS_ID) this.#slots(proxy, BluetoothConnectionsFreeResponse.fromBinary(payload));
        else if (id === CONNECTION_ID) this.#connection(proxy, BluetoothDeviceConnectionResponse.fromBinary(payload));
        else if (id === SCANNER_ID) this.#scanner(proxy, BluetoothScannerStateResponse.fromBinary(payload));
      } catch {
        // A message that does not decode ends its session in the connection layer; nothing to log here.
      }
    };
  }

  /** Compares a snapshot of the inspection with the last one: proxies up or down, subscription holders. */
  inspect(snapshot: readonly ProxyInspection[]): void {
    for (const p of snapshot) {
      const state = this.#state(p.id);
      if (p.online && state.online !== true) {
        this.#emit({ event: 'proxyUp', proxy: p.id, name: p.name ?? null, esphomeVersion: p.inspection?.esphomeVersion ?? null });
      } else if (!p.online && state.online !== false && p.error !== undefined) {
        const rule = failureRule(new EspApiError(isCode(p.error.code) ? p.error.code : 'ESPAPI_ERR_CONNECT', p.error.message));
        this.#emit({
          event: 'proxyDown',
          proxy: p.id,
          code: p.error.code,
          message: p.error.message,
          failure: rule.class,
          permanent: rule.permanent,
        });
        state.allocated = undefined;
        state.connected.clear();
      }
      if (p.online || p.error !== undefined) state.online = p.online;
      const verdict = p.inspection?.subscriber;
      if (verdict !== undefined && verdict.holder !== state.holder) {
        state.holder = verdict.holder;
        this.#emit({ event: 'subscription', proxy: p.id, holder: verdict.holder, sure: verdict.sure, evidence: verdict.evidence });
      }
    }
  }

  #state(proxy: string): ProxyState {
    let state = this.#proxies.get(proxy);
    if (state === undefined) {
      state = {
        allocated: undefined,
        free: undefined,
        limit: undefined,
        connected: new Set(),
        closed: new Map(),
        online: undefined,
        holder: undefined,
      };
      this.#proxies.set(proxy, state);
    }
    return state;
  }

  #slots(proxy: string, report: BluetoothConnectionsFreeResponse): void {
    const state = this.#state(proxy);
    const now = Date.now();
    const addresses = report.allocated.map(Number).filter((a) => a !== 0);
    const changed = report.free !== state.free || report.limit !== state.limit;
    // Firmware before 2025 lists no addresses: a slot count is all there is (a report with every slot free is one too).
    const listed = addresses.length > 0 || report.free === report.limit;
    if (!listed) {
      if (changed) this.#emit({ event: 'slots', proxy, free: report.free, limit: report.limit });
    } else {
      const before = state.allocated;
      const after = new Map<number, number>();
      for (const address of addresses) after.set(address, before?.get(address) ?? now);
      if (before !== undefined) {
        for (const [address, since] of before) {
          if (after.has(address)) continue;
          this.#emit({
            event: 'slotReleased',
            proxy,
            mac: formatMac(address),
            heldMs: now - since,
            free: report.free,
            limit: report.limit,
          });
        }
      }
      for (const address of addresses) {
        if (before?.has(address) === true) continue;
        this.#emit({ event: 'slotTaken', proxy, mac: formatMac(address), free: report.free, limit: report.limit });
      }
      state.allocated = after;
    }
    state.free = report.free;
    state.limit = report.limit;
  }

  #connection(proxy: string, message: BluetoothDeviceConnectionResponse): void {
    const state = this.#state(proxy);
    const address = Number(message.address);
    const mac = formatMac(address);
    if (message.connected) {
      if (state.connected.has(address)) return;
      state.connected.add(address);
      this.#emit({ event: 'connected', proxy, mac, mtu: message.mtu });
      return;
    }
    const { name } = describeConnectionError(message.error);
    const now = Date.now();
    for (const [closed, at] of state.closed) if (now - at > CLOSE_ECHO_MS) state.closed.delete(closed);
    // The firmware reports one disconnect twice (the disconnect event, then the close event): the first one counts.
    if (state.connected.delete(address)) {
      state.closed.set(address, now);
      this.#emit({ event: 'disconnected', proxy, mac, reason: message.error, reasonName: name });
    } else if (state.closed.has(address)) {
      return;
    } else if (message.error !== 0 || state.allocated?.has(address) === true) {
      state.closed.set(address, now);
      this.#emit({
        event: 'connectFailed',
        proxy,
        mac,
        reason: message.error,
        reasonName: name,
        failure: classifyConnectError(message.error).class,
      });
    }
  }

  #scanner(proxy: string, message: BluetoothScannerStateResponse): void {
    this.#emit({
      event: 'scannerState',
      proxy,
      state: SCANNER_STATES[message.state] ?? `unknown(${message.state})`,
      mode: message.mode === 1 ? 'active' : 'passive',
    });
  }
}

function isCode(code: string): code is EspApiError['code'] {
  return code.startsWith('ESPAPI_ERR_');
}
