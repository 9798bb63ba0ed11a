import type { RelayStatus } from '../relay/relay-status.js';
import { formatDuration } from '../util/duration.js';
import { EventCoalescer } from './event-coalescer.js';
import type { Output } from './output.js';
import { sanitize } from './single-proxy.js';

/** A refused or dropped downstream client. */
export type ClientNotice = Extract<RelayStatus, { type: 'clientRefused' | 'clientDropped' }>;

/** What a relay's upstreams and clients do that its user must hear about at once, as text lines or JSON events. */
export interface RelayNotices {
  /** One relay event: a line (or JSON object) for upstream failures and recoveries and refused or dropped clients. */
  push(event: RelayStatus): void;
  /** Prints what the client coalescer still holds and stops its timers. */
  flush(): void;
}

/**
 * The relay's notices, for `relay` and `mqtt --relay` alike. Text lines go to `show` (stderr, or under the live
 * table on a terminal), prefixed with the clock; with `json` client notices are JSON events with their `count`
 * (upstream events are left to the caller's JSON stream, or written here too with `jsonUpstream`). Refused and
 * dropped clients: the first of a kind at once, the rest of each second as one line with a count.
 */
export function relayNotices(out: Output, options: { json: boolean; show: (line: string) => void; jsonUpstream?: boolean }): RelayNotices {
  const clients = new EventCoalescer<ClientNotice>(
    (event) => `${event.type}:${event.proxy}:${event.type === 'clientDropped' ? event.reason : 'maxClients'}`,
    (event, count) => {
      if (options.json) {
        const { type, ...rest } = event;
        out.json({ event: type, ...rest, count });
      } else options.show(`${clock()} ${noticeLine(event, count)}`);
    },
  );
  return {
    push(event) {
      if (event.type === 'clientRefused' || event.type === 'clientDropped') {
        clients.push(event);
        return;
      }
      const line = upstreamLine(event);
      if (line === undefined) return;
      if (options.json && options.jsonUpstream === true) {
        const { type, ...rest } = event;
        out.json({ event: type, ...rest });
      }
      // Also with --json: a person watching stderr learns of a failing upstream at once.
      options.show(`${clock()} ${line}`);
    },
    flush: () => clients.flush(),
  };
}

/** The line of an upstream failure or recovery (undefined for other events). */
export function upstreamLine(event: RelayStatus): string | undefined {
  switch (event.type) {
    case 'upstreamDown':
      return `upstream ${sanitize(event.proxy)} failed: ${sanitize(event.error ?? 'closed')}; retrying in ${formatDuration(event.retryInMs)}`;
    case 'upstreamStopped':
      return `upstream ${sanitize(event.proxy)} stopped: ${sanitize(event.error ?? 'closed')} (retrying cannot fix this; --keep-trying retries anyway)`;
    case 'upstreamUp':
      return `upstream ${sanitize(event.proxy)} is up: ${sanitize(event.name)} (ESPHome ${sanitize(event.esphomeVersion)})`;
    case 'upstreamResubscribeFailed':
      return `upstream ${sanitize(event.proxy)}: winning the subscription back failed (${event.code}: ${sanitize(event.error)})`;
    default:
      return undefined;
  }
}

/**
 * One line for a refused or dropped client, or for `count` of them (the latest named): its remote address is ours
 * to print; the reason's text is the server's.
 */
function noticeLine(event: ClientNotice, count: number): string {
  const times = count > 1 ? ` (${count} like it in the last second)` : '';
  if (event.type === 'clientRefused') {
    return `${sanitize(event.proxy)}: refused ${event.remote}: already ${event.limit} clients (--max-clients)${times}`;
  }
  const who = event.client === undefined ? event.remote : `client #${event.client} (${event.remote})`;
  return `${sanitize(event.proxy)}: dropped ${who}: ${event.reason}: ${sanitize(event.message)}${times}`;
}

/** The wall clock as HH:MM:SS. */
export function clock(): string {
  return new Date().toTimeString().slice(0, 8);
}
