import { createInterface } from 'node:readline/promises';
import { answersEveryClient, mayLoseSubscription } from '../bluetooth/firmware-release.js';
import { type CommandContext, UsageError } from './command.js';
import { type Output, paint } from './output.js';

/**
 * The real-home rule of the CLI. Proxies are shared: Home Assistant (or another client) usually holds their single
 * Bluetooth subscription and may have links open. So a command never takes what others rely on without saying so,
 * and never changes shared state unless asked for it explicitly.
 *
 * - A command that needs the subscription to work at all (scan, gatt, read, write, notify, explain) calls
 *   {@link announceSubscription} once it holds it: one stderr note naming the proxies and what that means for Home
 *   Assistant on their firmware (first wins: it cannot subscribe meanwhile; newest wins, 2026.7+: it lost the
 *   subscription, the events of its open links come to us, and when we exit the proxy has no subscriber and drops
 *   every link, Home Assistant's included). The relay says the same at its start ({@link relayNote}).
 * - A command that would take the subscription or change shared state on the side (slots --subscribe, slots --reap;
 *   pair, unpair and scanner-mode commands are meant to follow) needs its flag: `--subscribe` is the request itself,
 *   and a change goes through {@link requireConsent}, which proceeds when the command line asked (its flag, or the
 *   targets named), asks on a terminal, and otherwise fails with a usage error (exit 2) that names the flag, having
 *   changed nothing. Describe the effect in `action` in words a Home Assistant user understands.
 *
 * @module
 */

/** A proxy whose Bluetooth subscription a command holds. */
export interface SubscriptionHolding {
  /** How the proxy is named in messages (`node (host:port)`), made safe for the terminal by the caller (sanitize). */
  readonly label: string;
  /** DeviceInfo `esphome_version`: decides first wins or newest wins (unknown versions count as newest). */
  readonly esphomeVersion: string | undefined;
  readonly apiVersion?: { readonly major: number; readonly minor: number } | undefined;
}

/** How a command holds the subscriptions it announces. */
export interface HoldingOptions {
  /**
   * The command takes the subscription back, with backoff, when another client subscribes again (BluetoothProxy's
   * resubscribe, on by default for every command that needs the subscription); false for `slots --subscribe`.
   */
  readonly winsBack?: boolean | undefined;
}

/** What holding a newest-wins proxy's subscription does to Home Assistant, in one clause. */
const NEWEST_WINS_COST =
  "taken from Home Assistant: the events of its open links come to this command instead, and when the command exits the proxy has no subscriber and drops every link, Home Assistant's included; Home Assistant gets no advertisements from it until it subscribes again";

/** The proxies' labels by what holding their subscription means on their firmware. */
function byFirmware(proxies: readonly SubscriptionHolding[]): { newest: string[]; first: string[]; every: string[] } {
  const groups = { newest: [] as string[], first: [] as string[], every: [] as string[] };
  for (const p of proxies) {
    const version = p.esphomeVersion ?? '';
    if (answersEveryClient(version, p.apiVersion ?? { major: 1, minor: 15 })) groups.every.push(p.label);
    else if (mayLoseSubscription(version)) groups.newest.push(p.label);
    else groups.first.push(p.label);
  }
  return groups;
}

/**
 * What holding the subscription of `proxies` for a moment costs Home Assistant, as one clause for a consent question
 * (said before asking, so a yes knows it): `it holds the Bluetooth subscription for a moment: X (newest wins, ...)`.
 */
export function subscriptionCost(proxies: readonly SubscriptionHolding[]): string {
  const groups = byFirmware(proxies);
  const parts: string[] = [];
  if (groups.newest.length > 0) {
    parts.push(
      `${list(groups.newest)} (newest wins, 2026.7+): taken from Home Assistant, and when this command lets go the proxy drops every link, Home Assistant's included, until Home Assistant subscribes again`,
    );
  }
  if (groups.first.length > 0) parts.push(`${list(groups.first)} (first wins): refused while Home Assistant holds it, nothing is taken`);
  if (groups.every.length > 0) parts.push(`${list(groups.every)} (before 2023.6): every client is served, nothing is taken`);
  return `it holds the Bluetooth subscription for a moment: ${parts.join('; ')}`;
}

/** The stderr note for holding the subscription of `proxies` (undefined for none). See the rule above. */
export function subscriptionNote(proxies: readonly SubscriptionHolding[], options: HoldingOptions = {}): string | undefined {
  if (proxies.length === 0) return undefined;
  const groups = byFirmware(proxies);
  const winsBack = options.winsBack ?? true;
  const parts: string[] = [];
  if (groups.newest.length > 0) {
    const back = winsBack ? ', and should it subscribe again this command takes it back (with backoff)' : '';
    parts.push(`${list(groups.newest)} (newest wins, 2026.7+: ${NEWEST_WINS_COST}${back})`);
  }
  if (groups.first.length > 0) parts.push(`${list(groups.first)} (first wins: Home Assistant cannot subscribe to them meanwhile)`);
  if (groups.every.length > 0) parts.push(`${list(groups.every)} (before 2023.6 every client is served: nothing is taken)`);
  return `this command holds the Bluetooth subscription of ${parts.join(' and ')}; \`esphome-ble relay\` shares proxies instead`;
}

/** Prints subscriptionNote() on stderr as a `note` line (nothing for no proxies). */
export function announceSubscription(out: Output, proxies: readonly SubscriptionHolding[], options: HoldingOptions = {}): void {
  const note = subscriptionNote(proxies, options);
  if (note !== undefined) out.error(`${paint(out, 'yellow', 'note')} ${note}`);
}

/**
 * The relay's note, printed at its start before any proxy has answered (so for either firmware): it holds every
 * proxy's subscription for as long as it runs, and on newest-wins firmware wins it back from Home Assistant.
 */
export function relayNote(labels: readonly string[]): string {
  return (
    `the relay holds the Bluetooth subscription of ${list(labels)} while it runs: on ESPHome 2026.7+ (newest wins) it ` +
    "takes it from Home Assistant (the events of Home Assistant's open links then come to the relay) and " +
    'takes it back, with backoff, whenever Home Assistant subscribes again; on older firmware it cannot use a proxy ' +
    "Home Assistant holds. Point Home Assistant at the relay's listeners instead of the proxies. When the relay stops, " +
    'the proxies have no subscriber and drop every link'
  );
}

/** Asks one yes/no question; resolves with the answer, or undefined when it could not ask. */
export type Prompter = (question: string, signal: AbortSignal) => Promise<string | undefined>;

/** A change to shared state that needs the user's explicit consent. */
export interface ConsentRequest {
  /** What will happen, as a sentence fragment: `release 2 connection slots (ends whatever link holds them)`. */
  readonly action: string;
  /** The flag that asks for it without a question (`--yes`). */
  readonly flag: string;
  /** Whether the command line already asked for it (the flag, or the targets named). */
  readonly given: boolean;
}

/**
 * Decides whether a change to shared state may go ahead: yes when the command line asked for it; else, on a
 * terminal, the user's answer to "<action>? [y/N]"; else a UsageError naming the flag (nothing is changed).
 * Resolves false when the user declined.
 */
export async function requireConsent(
  ctx: CommandContext,
  request: ConsentRequest,
  prompter: Prompter | undefined = terminalPrompter(),
): Promise<boolean> {
  if (request.given) {
    // The vocabulary's promise for --yes: what is done is said before it is done.
    ctx.out.error(`${paint(ctx.out, 'yellow', 'note')} ${request.flag}: ${request.action}`);
    return true;
  }
  if (prompter === undefined) {
    throw new UsageError(`Refusing to ${request.action} without a terminal to confirm it: pass ${request.flag} (nothing was changed)`);
  }
  const answer = await prompter(`${capitalize(request.action)}? [y/N] `, ctx.signal);
  ctx.signal.throwIfAborted();
  return /^\s*y(es)?\s*$/i.test(answer ?? '');
}

/** The streams a terminal prompt uses: it reads the answer from `input` and asks on `output`. */
export interface PromptStreams {
  readonly input: NodeJS.ReadableStream & { readonly isTTY?: boolean };
  readonly output: NodeJS.WritableStream & { readonly isTTY?: boolean };
}

/**
 * Asks on the process's terminal: the question on stderr, the answer from stdin. Undefined unless both are a
 * terminal — stdout may be redirected (`--json > plan.json`) and the user still be there to answer.
 */
export function terminalPrompter(streams: PromptStreams = { input: process.stdin, output: process.stderr }): Prompter | undefined {
  if (streams.input.isTTY !== true || streams.output.isTTY !== true) return undefined;
  return async (question, signal) => {
    const rl = createInterface({ input: streams.input, output: streams.output });
    try {
      return await rl.question(question, { signal });
    } catch {
      return undefined;
    } finally {
      rl.close();
    }
  };
}

function list(labels: readonly string[]): string {
  return labels.join(', ');
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
