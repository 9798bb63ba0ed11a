import { formatDuration } from '../util/duration.js';

/**
 * Who holds a proxy's single Bluetooth subscription, as far as a client can tell: this process (our session
 * receives what only the subscriber receives), another client, nobody as far as can be seen, every client
 * (firmware before 2023.6 has no single subscriber), none to hold (the node is not a Bluetooth proxy), or unknown
 * (offline, or nothing to read).
 */
export type SubscriptionHolder = 'thisProcess' | 'otherClient' | 'nobodySeen' | 'everyClient' | 'notAProxy' | 'unknown';

/** The holder with how sure the judgement is and what it rests on. */
export interface SubscriberVerdict {
  readonly holder: SubscriptionHolder;
  /** True when the evidence decides it (see `evidence`); false for a best guess. */
  readonly sure: boolean;
  /** What the judgement rests on, in one sentence. */
  readonly evidence: string;
}

/**
 * How long a slot must stay allocated before it speaks for a subscriber: a proxy without one disconnects every link
 * it holds (its loop checks every ~100 ms) and frees the slot after the close event; ten times that check leaves
 * room for a slow controller and for our polls' round trips. Likely, not sure: see SURE_HOLD_MS.
 */
export const HOLD_EVIDENCE_MS = 1_000;

/**
 * How long a slot must stay allocated before it proves a subscriber. A link whose peer stopped answering closes
 * only when its supervision timeout runs out, so it can outlive its subscriber (a Home Assistant restart) by that
 * long; the Bluetooth Core spec caps the supervision timeout at 32 s (spec §6.13: 100 ms … 32 s), and the firmware's
 * 100 ms check and our polls' round trips come on top.
 */
export const SURE_HOLD_MS = 33_000;

/** What a client knows about a proxy when it judges who holds the subscription. */
export interface VerdictInput {
  readonly online: boolean;
  /** Firmware before 2023.6: every client gets the Bluetooth answers, nobody holds anything. */
  readonly answersEveryClient: boolean;
  /** Our own subscription when we asked for one (the inspection's subscribing mode), else undefined. */
  readonly own:
    | { readonly state: 'subscribed' | 'lost' | 'unsubscribed'; readonly confirmed: boolean; readonly lostBy?: string | undefined }
    | undefined;
  /** Our session received something only the subscriber receives (advertisements, scanner state, link events). */
  readonly subscriberTraffic: boolean;
  /** The node is a Bluetooth proxy at all (feature flags not 0). */
  readonly isProxy: boolean;
  /** The proxy answers the slot query (it has a connection half). */
  readonly readsSlots: boolean;
  /** Whether a slot report arrived at all. */
  readonly reported: boolean;
  /** The slot of another client held longest, with how long we have seen it held without a break. */
  readonly longestHeld: { readonly mac: string; readonly heldMs: number } | undefined;
}

/**
 * Judges who holds the subscription from what the proxy sends a client that does not subscribe. The firmware
 * (2023.6 on) sends advertisements, scanner state, link events and slot pushes to its subscriber only and
 * answers the slot query to anyone; without a subscriber it drops every link. So a slot held over
 * HOLD_EVIDENCE_MS speaks for a subscriber, over SURE_HOLD_MS proves one, and if that is not us it is another
 * client; no held slot proves nothing (an idle Home Assistant holds the subscription without links).
 */
export function judgeSubscriber(input: VerdictInput): SubscriberVerdict {
  if (!input.online) return { holder: 'unknown', sure: false, evidence: 'not connected' };
  if (!input.isProxy) {
    return {
      holder: 'notAProxy',
      sure: true,
      evidence: 'not a Bluetooth proxy (its feature flags are 0): it has no Bluetooth subscription',
    };
  }
  if (input.answersEveryClient) {
    return {
      holder: 'everyClient',
      sure: true,
      evidence: 'firmware before 2023.6 sends its Bluetooth answers to every client: there is no single subscriber to take',
    };
  }
  const own = input.own;
  if (own?.state === 'subscribed') {
    return {
      holder: 'thisProcess',
      sure: own.confirmed,
      evidence: own.confirmed
        ? 'our subscribe was confirmed (scanner state, probe or advertisements reach us)'
        : 'we subscribed, but nothing only the subscriber receives has come yet (this firmware sends no scanner state, and the probe is not used): if another client holds the subscription on first-wins firmware, ours was ignored',
    };
  }
  if (own?.state === 'lost') {
    const bySilence = own.lostBy === 'silence';
    return {
      holder: 'otherClient',
      sure: !bySilence,
      evidence:
        own.lostBy === 'subscribe'
          ? 'our subscribe was ignored: the first subscriber keeps the proxy on this firmware'
          : bySilence
            ? 'the subscriber-only data stopped reaching us (newest-wins firmware): taken over, or a quiet radio'
            : 'the subscriber probe is no longer answered to us: another client took the subscription over',
    };
  }
  if (input.subscriberTraffic) {
    return { holder: 'thisProcess', sure: true, evidence: 'this session receives what the proxy sends its subscriber only' };
  }
  const held = input.longestHeld;
  if (held !== undefined && held.heldMs >= SURE_HOLD_MS) {
    return {
      holder: 'otherClient',
      sure: true,
      evidence: `${held.mac} has held a slot for ${formatDuration(held.heldMs)}, longer than any supervision timeout (32 s): without a subscriber the firmware would have dropped it`,
    };
  }
  if (held !== undefined && held.heldMs >= HOLD_EVIDENCE_MS) {
    return {
      holder: 'otherClient',
      sure: false,
      evidence: `${held.mac} has held a slot for ${formatDuration(held.heldMs)}: without a subscriber the firmware drops every link within ~100 ms, unless the peer stopped answering — such a link can outlive its subscriber (a Home Assistant restart) by its supervision timeout, up to 32 s`,
    };
  }
  if (!input.readsSlots) {
    return {
      holder: 'unknown',
      sure: false,
      evidence: 'advertisement-only proxy: it answers no slot query, and a client that does not subscribe receives nothing from it',
    };
  }
  if (!input.reported) return { holder: 'unknown', sure: false, evidence: 'no slot report yet' };
  if (held !== undefined) {
    return {
      holder: 'unknown',
      sure: false,
      evidence: `${held.mac} holds a slot, seen for ${formatDuration(held.heldMs)}: not long enough to tell (${formatDuration(HOLD_EVIDENCE_MS)})`,
    };
  }
  return {
    holder: 'nobodySeen',
    sure: false,
    evidence: 'no slot is held, which proves nothing: a subscriber without links (an idle Home Assistant) looks the same',
  };
}
