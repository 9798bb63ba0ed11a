import type { ProxyDiagnostics } from '../../pool/proxy-health.js';
import { parseProxySpec } from '../../pool/proxy-pool.js';
import { compileClientPolicy, compileSlotQuotas, type RelayClientPolicy, type RelaySlotRule } from '../../relay/client-policy.js';
import { DEFAULT_RELAY_MAX_CLIENTS, RelayServer, type RelayServerOptions, type RelaySnapshot } from '../../relay/relay-server.js';
import type { RelayStatus } from '../../relay/relay-status.js';
import { type Command, type CommandArgs, type CommandContext, durationOption, flag, intOption, str, UsageError } from '../command.js';
import { cliTapFor } from '../connect-feedback.js';
import { OUTPUT_OPTIONS } from '../option-groups.js';
import { type Output, paint, table } from '../output.js';
import { relayNote } from '../real-home.js';
import { clock, relayNotices } from '../relay-notices.js';
import { checkRelayKeys, DOWNSTREAM_PSK, relayUpstreamsOf, startRelay, upstreamLabels } from '../relay-upstreams.js';
import { redactingOutput, secretOption, strings } from '../secret-options.js';
import { sanitize } from '../single-proxy.js';
import { option } from '../vocabulary.js';

/** Events come in bursts (a connect: slots, connected, slots): redraw at most this often. */
const REDRAW_COALESCE_MS = 100;
/** Refused and dropped clients shown under the live table (the latest ones). */
const NOTICES_SHOWN = 5;
/** `esphome-ble relay`: share proxies with Home Assistant and other clients until Ctrl-C. */
export const relayCommand: Command = {
  name: 'relay',
  summary: 'Share Bluetooth proxies with Home Assistant and other clients: one subscription upstream, the native API downstream',
  usage: 'esphome-ble relay --proxy host[:port]... [options]',
  options: {
    proxy: option('proxy', {
      description: 'A proxy to share (repeatable); each gets its own listener',
      default: 'required',
      multiple: true,
    }),
    psk: option('psk', {
      description: 'Upstream Noise key: one for every proxy, or one per --proxy in order; also $ESPHOME_BLE_PSK',
      default: 'plaintext',
      multiple: true,
    }),
    'psk-file': option('psk-file', { default: 'none', multiple: true }),
    password: option('password', {
      description: 'Upstream legacy API password: one for all, or one per --proxy; also $ESPHOME_BLE_PASSWORD',
      default: 'none',
      multiple: true,
    }),
    'password-file': option('password-file', { default: 'none', multiple: true }),
    listen: option('listen', {
      description: 'Where the listeners bind: port 0 gives each a free port; port P gives P, P+1, ...',
      default: '127.0.0.1:0',
    }),
    'downstream-psk': option('downstream-psk', { default: 'none: plaintext listeners (loopback only)' }),
    'downstream-psk-file': option('downstream-psk-file', { default: 'none' }),
    'allow-plaintext': option('allow-plaintext', { default: 'off' }),
    'max-clients': option('max-clients', { default: String(DEFAULT_RELAY_MAX_CLIENTS) }),
    'slots-per-client': option('slots-per-client', { default: 'all but one, at least one' }),
    'slots-for': option('slots-for', { default: 'none', multiple: true }),
    'allow-scanner-mode': option('allow-scanner-mode', { default: 'every client', multiple: true }),
    'allow-unpair': option('allow-unpair', { default: 'every client', multiple: true }),
    'allow-clear-cache': option('allow-clear-cache', { default: 'every client', multiple: true }),
    timeout: option('timeout', {
      description: 'Deadline for the first connect to every proxy; a bare number is milliseconds',
      default: 'keep trying',
    }),
    duration: option('duration', { default: 'until Ctrl-C' }),
    'keep-trying': option('keep-trying', { default: 'off: such a proxy stops the relay (exit 3 for a key)' }),
    ...OUTPUT_OPTIONS,
  },
  examples: [
    'esphome-ble relay --proxy 192.168.1.40 --psk-file kitchen.key',
    'esphome-ble relay --proxy 192.168.1.40 --proxy 192.168.1.41 --listen 0.0.0.0:16053 --downstream-psk-file relay.key',
    'esphome-ble relay --proxy 192.168.1.40 --json > relay-events.jsonl',
  ],
  help: [
    'Holds each proxy’s single Bluetooth subscription and serves the ESPHome native API on one listener per',
    'proxy, under the proxy’s own name and MAC: point Home Assistant (and any other client) at the listener',
    'instead of the proxy. Slots are shared (a connect beyond the free ones gets 0x100), GATT traffic goes only',
    'to the client that owns the link, advertisements go to every subscriber.',
    'Keys and passwords: flags are visible to other users in `ps`; prefer the files or the environment. They are',
    'never printed. The listeners themselves take no password. Without --downstream-psk the listeners are',
    'plaintext, which only loopback allows: any other --listen',
    'address is refused (exit 2) unless --allow-plaintext asks for it, since whoever reaches it drives the',
    'proxies’ Bluetooth.',
    `--max-clients N: clients per listener at once (default ${DEFAULT_RELAY_MAX_CLIENTS}, the firmware’s host default); one more takes`,
    'the place of the oldest client that has not said Hello yet (clientDropped, reason evicted), or is accepted and',
    'closed at once when every client got in, as the firmware does (a clientRefused event).',
    '--slots-per-client N: slots one client may hold on a proxy (default: all but one, at least one, so that next',
    'to a busy client Home Assistant still finds a slot; `all` turns the quota off). A client is its IP address:',
    'all its sessions, and every client on one host, share the quota; a client alone gets it too. A client at its',
    'quota is shown a full proxy and a connect gets 0x100, as when the proxy is full.',
    '--slots-for ADDR[/BITS]=N|all (repeatable): another quota for these client addresses (the first that matches).',
    '--allow-scanner-mode, --allow-unpair, --allow-clear-cache ADDR[/BITS] (repeatable or comma-separated; `none`',
    'for nobody): only these client addresses may switch the scanner mode, or unpair / clear the cache of a device',
    '(any device, also one the client is connected to: the bond and the cache are the proxy’s) — requests that',
    'change what every other client sees. Default: every client, as the firmware.',
    'Clients are told by their IP address (every client of a listener shares its key; client_info is self-declared).',
    'An upstream that fails shows at once, in the table and as a line on stderr (with its cause). One that fails for a',
    'cause retrying cannot fix (wrong key or password, another node at the address, not the ESPHome API) stops the',
    'relay with that error (exit 3 for a key or identity) unless --keep-trying keeps retrying it with backoff.',
    'On a terminal a live table shows upstream state, subscription state, the last upstream error code, clients,',
    'slots per client, ads/s and advertisements dropped for slow clients; otherwise the table is printed on every',
    'change. --json prints one JSON event per line: first',
    '{"event":"listening","proxy","host","port","name","mac","encryption"} per proxy, then',
    'upstreamConnecting/upstreamUp/upstreamDown/clientConnected/clientDisconnected/slots events, stats events',
    'every second with "diagnostics" (ProxyPool.diagnostics()\'s per-proxy record: state, slots, subscription,',
    'ads/s, lastErrors with codes),',
    'clientSlow {"client","droppedAdvertisements"} when a client reads too slowly to get every advertisement,',
    'clientRefused {"remote","limit","count"} past --max-clients, clientDropped {"client","remote","reason","message",',
    '"count"} when the relay closes a client (reason backlog: it read nothing while more than 1 MiB waited for it;',
    'keepalive: silent for 150 s; handshakeTimeout: no Hello within 60 s; protocol: a frame the firmware would',
    'refuse; evicted), the first of a kind at once and the others of the following second as one line with their',
    'count and the latest one’s fields, and',
    'upstreamSubscriptionLost/upstreamResubscribing/upstreamResubscribeFailed/upstreamResubscribed when another',
    'client takes a proxy’s subscription over (the relay ends its clients’ links and wins it back with backoff).',
    'A note on stderr at the start names the proxies and what holding them means for Home Assistant.',
  ].join('\n'),
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const { proxies } = await relayUpstreamsOf(args);
    const listen = listenOption(str(args, 'listen') ?? '127.0.0.1:0');
    const timeout = durationOption(args, 'timeout');
    const durationMs = durationOption(args, 'duration');
    const downstreamPsk = secretOption(args, DOWNSTREAM_PSK);
    const maxClients = intOption(args, 'max-clients', 1);
    const secrets = [downstreamPsk, ...proxies.flatMap((p) => [p.psk, p.password])];
    checkRelayKeys(proxies, downstreamPsk);
    const context: CommandContext = { ...ctx, out: redactingOutput(ctx.out, secrets) };
    const relay = new RelayServer({
      proxies,
      listen,
      ...(downstreamPsk === undefined ? {} : { downstreamPsk }),
      ...(flag(args, 'allow-plaintext') ? { allowPlaintext: true } : {}),
      ...(maxClients === undefined ? {} : { maxClients }),
      ...(flag(args, 'keep-trying') ? { permanentErrors: 'retry' as const } : {}),
      tapFor: cliTapFor,
      ...policyOptions(args),
    });
    // The real-home rule: say up front what holding the proxies means for Home Assistant (stderr, --json too).
    context.out.error(`${paint(context.out, 'yellow', 'note')} ${relayNote(upstreamLabels(proxies))}`);
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const timer = durationMs === undefined ? undefined : setTimeout(() => stop.abort(), durationMs);
    try {
      const watching = watch(relay, context, flag(args, 'json'), stop.signal);
      // Listeners open one by one as their proxies answer; a proxy that is down only delays its own. A permanent
      // error (wrong key, another device) or --timeout ends the run; Ctrl-C or --duration end it normally.
      const starting = startRelay(relay, { timeout });
      starting.catch(() => {});
      await Promise.race([starting, watching]);
      await watching;
      return 0;
    } finally {
      clearTimeout(timer);
      ctx.signal.removeEventListener('abort', onAbort);
      await relay.close();
    }
  },
};

/** `--slots-per-client`, `--slots-for` and the `--allow-*` rules as RelayServerOptions. */
function policyOptions(args: CommandArgs): Pick<RelayServerOptions, 'slotsPerClient' | 'slotsFor' | 'clientPolicy'> {
  const out: Pick<RelayServerOptions, 'slotsPerClient' | 'slotsFor' | 'clientPolicy'> = {};
  const slots = str(args, 'slots-per-client');
  if (slots !== undefined) out.slotsPerClient = slotCount('slots-per-client', slots);
  const slotsFor: RelaySlotRule[] = strings(args, 'slots-for').map((value) => {
    const at = value.lastIndexOf('=');
    if (at < 0) throw new UsageError(`--slots-for must be ADDR[/BITS]=N or ADDR[/BITS]=all; got ${JSON.stringify(value)}`);
    const clients = value
      .slice(0, at)
      .split(',')
      .map((entry) => entry.trim());
    const rule = { clients, slots: slotCount('slots-for', value.slice(at + 1)) };
    try {
      compileSlotQuotas(undefined, [rule]);
    } catch (error) {
      throw new UsageError(`--slots-for: ${(error as Error).message.replace(/^[\w[\].]+: /, '')}`);
    }
    return rule;
  });
  if (slotsFor.length > 0) out.slotsFor = slotsFor;
  const policy: RelayClientPolicy = {};
  const rules = [
    ['allow-scanner-mode', 'scannerMode'],
    ['allow-unpair', 'unpair'],
    ['allow-clear-cache', 'clearCache'],
  ] as const;
  for (const [name, key] of rules) {
    const entries = strings(args, name).flatMap((value) => value.split(',').map((entry) => entry.trim()));
    if (entries.length === 0) continue;
    if (entries.includes('none') && entries.length > 1) throw new UsageError(`--${name} none cannot be combined with addresses`);
    policy[key] = entries.includes('none') ? [] : entries;
    try {
      compileClientPolicy({ [key]: policy[key] });
    } catch (error) {
      throw new UsageError(`--${name}: ${(error as Error).message.replace(/^\w+: /, '')}`);
    }
  }
  if (Object.keys(policy).length > 0) out.clientPolicy = policy;
  return out;
}

/** A quota flag's value: a whole number of slots ≥ 1, or `all` (no quota). */
function slotCount(name: string, text: string): number {
  const value = text.trim() === 'all' ? Number.POSITIVE_INFINITY : Number(text);
  if (!(value === Number.POSITIVE_INFINITY || (Number.isInteger(value) && value >= 1))) {
    throw new UsageError(`--${name} must be a whole number of slots, at least 1, or all; got ${JSON.stringify(text)}`);
  }
  return value;
}

function listenOption(text: string): { host: string; port: number } {
  const { host, port } = parseProxySpec(text);
  if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--listen must be host:port (port 0 for free ports), got ${JSON.stringify(text)}`);
  }
  return { host: host || '127.0.0.1', port };
}

/** Prints events (JSON) or the table until `stop` fires. */
async function watch(relay: RelayServer, ctx: CommandContext, json: boolean, stop: AbortSignal): Promise<void> {
  const { out } = ctx;
  let redraw: NodeJS.Timeout | undefined;
  let listening = false;
  const notices: string[] = [];
  // Upstream failures are news the moment they happen: on stderr (under the table on a terminal), in every mode.
  const relayNotice = relayNotices(out, {
    json,
    show: (line) => {
      // On a terminal the table redraw would wipe a printed line: the latest notices stay under the table.
      if (json || !out.isTty) out.error(line);
      else if (notices.push(line) > NOTICES_SHOWN) notices.shift();
    },
  });
  const draw = (): void => {
    redraw = undefined;
    if (out.isTty) out.line(`\u001b[2J\u001b[H${paint(out, 'bold', `esphome-ble relay — ${clock()} (Ctrl-C stops)`)}`);
    else out.line(`--- ${new Date().toISOString()}`);
    out.line(relayTable(out, relay.snapshot()));
    if (out.isTty && notices.length > 0) out.line(['', ...notices].join('\n'));
  };
  // On a terminal the table shows from the start: a proxy that does not answer is a row saying so, not a blank screen.
  if (out.isTty && !json) draw();
  try {
    for await (const event of relay.status({ signal: stop })) {
      relayNotice.push(event);
      if (json) {
        if (event.type === 'clientRefused' || event.type === 'clientDropped') continue;
        const { type, ...rest } = event;
        out.json({ event: type, ...rest });
        continue;
      }
      if (event.type === 'listening') {
        listening = true;
        if (!out.isTty) out.line(listeningLine(event));
      }
      // Off a terminal the per-second stats would flood the output: print on changes only, once listening.
      if (!out.isTty && (!listening || event.type === 'stats')) continue;
      redraw ??= setTimeout(draw, REDRAW_COALESCE_MS);
    }
  } finally {
    clearTimeout(redraw);
    relayNotice.flush();
  }
}

function listeningLine(event: Extract<RelayStatus, { type: 'listening' }>): string {
  return `relaying ${sanitize(event.proxy)} as ${sanitize(event.name)} (${event.mac}) on ${event.host}:${event.port} (${event.encryption})`;
}

/** The live table: one row per proxy, then one per downstream client. */
export function relayTable(out: Output, snapshot: RelaySnapshot): string {
  const proxyRows = snapshot.proxies.map((p) => [
    sanitize(p.upstream.name ?? p.id),
    `${p.upstream.host}:${p.upstream.port}`,
    stateCell(out, p.upstream.state, p.upstream.lastError),
    subscriptionCell(out, p.upstream.diagnostics.subscription.state),
    p.listen ? `${p.listen.host}:${p.listen.port} (${p.listen.encryption})` : '-',
    `${p.slots.free}/${p.slots.limit}`,
    String(p.clients.length),
    String(p.adsPerSecond),
    p.upstream.diagnostics.lastErrors.at(-1)?.code ?? '-',
  ]);
  const clientRows = snapshot.proxies.flatMap((p) =>
    p.clients.map((c) => [
      sanitize(p.upstream.name ?? p.id),
      `#${c.id}`,
      c.remote,
      sanitize(c.clientInfo || '-'),
      c.subscribed ? (c.legacyAdvertisements ? 'yes (legacy)' : 'yes') : 'no',
      c.slots.length === 0 ? '-' : c.slots.join(', '),
      c.droppedAdvertisements === 0 ? '0' : paint(out, 'yellow', String(c.droppedAdvertisements)),
    ]),
  );
  const local = snapshot.proxies.filter((p) => p.slots.local.length > 0).map((p) => `${p.id}: ${p.slots.local.join(', ')}`);
  return [
    table(['proxy', 'upstream', 'state', 'subscription', 'listening', 'free/limit', 'clients', 'ads/s', 'last error'], proxyRows),
    '',
    clientRows.length === 0
      ? paint(out, 'dim', 'no downstream clients')
      : table(['proxy', 'client', 'from', 'client info', 'subscribed', 'slots', 'ads dropped'], clientRows),
    ...(local.length > 0 ? ['', `in-process links: ${local.join('; ')}`] : []),
  ].join('\n');
}

function stateCell(out: Output, state: string, error: string | undefined): string {
  if (state === 'connected') return paint(out, 'green', state);
  return paint(out, state === 'stopped' ? 'red' : 'yellow', error ? `${state}: ${sanitize(error)}` : state);
}

function subscriptionCell(out: Output, state: ProxyDiagnostics['subscription']['state']): string {
  if (state === 'subscribed') return paint(out, 'green', state);
  return paint(out, state === 'none' ? 'dim' : 'red', state);
}
