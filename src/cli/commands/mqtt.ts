import { readFile } from 'node:fs/promises';
import { EspApiError } from '../../errors.js';
import type { BrokerOptions } from '../../mqtt/broker-connection.js';
import { AllowList, type CommandPolicyOptions } from '../../mqtt/command-policy.js';
import { type GatewayConfig, loadGatewayConfig } from '../../mqtt/gateway-config.js';
import type { AdvertisementPublishOptions, MqttGateway, MqttGatewayOptions } from '../../mqtt/mqtt-gateway.js';
import type { MqttGatewayStatus } from '../../mqtt/mqtt-status.js';
import { ProxyPool, parseProxySpec } from '../../pool/proxy-pool.js';
import { RelayServer } from '../../relay/relay-server.js';
import { assertListenerAllowed } from '../../server/listener-policy.js';
import { sleep } from '../../util/abort.js';
import { resolveSecret } from '../../util/secrets.js';
import { type Command, type CommandArgs, type CommandContext, durationOption, flag, num, str, UsageError } from '../command.js';
import { cliTapFor } from '../connect-feedback.js';
import { openReadyPool } from '../device-session.js';
import { EXIT, type Output, paint, Spinner } from '../output.js';
import { POOL_HELP, POOL_OPTIONS } from '../pool-options.js';
import { relayNote } from '../real-home.js';
import { relayNotices } from '../relay-notices.js';
import { checkRelayKeys, DOWNSTREAM_PSK, relayUpstreamsOf, startRelay, upstreamLabels } from '../relay-upstreams.js';
import { redactingOutput, secretOption } from '../secret-options.js';
import { sanitize } from '../single-proxy.js';
import { deprecatedOption, option } from '../vocabulary.js';

/** Environment variable holding the broker password (flags are visible in `ps`). */
export const MQTT_PASSWORD_ENV = 'ESPHOME_BLE_MQTT_PASSWORD';
/** EMBEDDED_BROKER_DEFAULTS' host and port, spelled here so that `--help` does not load aedes. */
const EMBEDDED_BROKER_LISTEN = '127.0.0.1:1883';

/** `esphome-ble mqtt`: the proxy fleet on an MQTT broker until Ctrl-C. */
export const mqttCommand: Command = {
  name: 'mqtt',
  summary: 'Put the proxy fleet on an MQTT broker (OpenMQTTGateway/Theengs topics), with GATT over MQTT',
  usage: 'esphome-ble mqtt [--proxy host[:port]...] [--broker mqtt://host:port] [--allow-read MAC|*]... [options]',
  options: {
    ...POOL_OPTIONS,
    timeout: option('timeout', {
      description: 'Deadline of the start: the broker, the relay (--relay) or the proxies of the pool; bare: ms',
      default: '10s (the pool: 5s)',
    }),
    broker: option('broker', { default: 'none: the embedded broker' }),
    'broker-listen': option('broker-listen', { default: EMBEDDED_BROKER_LISTEN }),
    'broker-username': option('broker-username', { default: 'none' }),
    'broker-password': option('broker-password', { default: 'none' }),
    'broker-password-file': option('broker-password-file', { default: 'none' }),
    'broker-ca': option('broker-ca', { default: "the system's CAs" }),
    'broker-cert': option('broker-cert', { default: 'none' }),
    'broker-key': option('broker-key', { default: 'none' }),
    'broker-insecure': option('broker-insecure', { default: 'off' }),
    'broker-allow-anonymous': option('broker-allow-anonymous', { default: 'off' }),
    name: option('name', {
      description: 'Gateway name it calls itself: the second topic level (one per gateway on a broker)',
      default: 'esphome-ble',
    }),
    'base-topic': option('base-topic', { default: 'home' }),
    'allow-read': option('allow-read', { default: 'none: commands off', multiple: true }),
    'allow-write': option('allow-write', { default: 'none', multiple: true }),
    'command-rate': option('command-rate', { default: '2 (burst 10)' }),
    'publish-interval': option('publish-interval', { default: 'every report' }),
    'changes-only': option('changes-only', { default: 'off' }),
    presence: option('presence', { default: 'off' }),
    undecoded: option('undecoded', { default: 'off' }),
    'min-rssi': option('min-rssi', { default: '-100' }),
    discovery: option('discovery', { default: 'off' }),
    'discovery-prefix': option('discovery-prefix', { default: 'homeassistant' }),
    'mqtt-config': option('mqtt-config', { default: 'none' }),
    relay: option('relay', { default: 'off' }),
    'relay-listen': option('relay-listen', { default: '127.0.0.1:0' }),
    'downstream-psk': option('downstream-psk', { default: 'none: plaintext listeners (loopback only)' }),
    'downstream-psk-file': option('downstream-psk-file', { default: 'none' }),
    'allow-plaintext': option('allow-plaintext', { description: '--relay: plaintext relay listeners beyond loopback', default: 'off' }),
    'proxy-password': option('proxy-password', {
      description: "--relay: the proxies' legacy API password, one for all or one per --proxy; also $ESPHOME_BLE_PASSWORD",
      default: 'none',
      multiple: true,
    }),
    'proxy-password-file': option('proxy-password-file', { default: 'none', multiple: true }),
    'keep-trying': option('keep-trying', {
      description: '--relay: keep retrying a proxy that refused the key or is another node (else it stops the run)',
      default: 'off',
    }),
    duration: option('duration', { default: 'until Ctrl-C' }),
    username: deprecatedOption('broker-username', { type: 'string', kind: 'text', meaning: 'the MQTT user name' }),
    password: deprecatedOption('broker-password', { type: 'string', kind: 'secret', meaning: '--password is the API password elsewhere' }),
    'password-file': deprecatedOption('broker-password-file', { type: 'string', kind: 'file', meaning: 'the MQTT password file' }),
    ca: deprecatedOption('broker-ca', { type: 'string', kind: 'file', meaning: 'the broker CA file' }),
    cert: deprecatedOption('broker-cert', { type: 'string', kind: 'file', meaning: 'the client certificate file' }),
    key: deprecatedOption('broker-key', { type: 'string', kind: 'file', meaning: '--key read as a Noise key' }),
    insecure: deprecatedOption('broker-insecure', { type: 'boolean', kind: 'flag', meaning: 'skips the certificate check' }),
    interval: deprecatedOption('publish-interval', {
      type: 'string',
      kind: 'duration',
      unit: 'ms',
      meaning: 'a bare number was milliseconds',
    }),
  },
  examples: [
    'esphome-ble mqtt --proxy 192.168.1.40 --allow-read "*"',
    'esphome-ble mqtt --broker mqtts://broker.lan:8883 --broker-username gw --broker-password-file mqtt.pass --presence',
    'esphome-ble mqtt --proxy 192.168.1.40 --relay --publish-interval 5s --changes-only',
  ],
  help: [
    'Publishes every advertisement the proxies hear on home/<name>/BTtoMQTT/<MAC> in OpenMQTTGateway’s JSON',
    '(id, mac_type, name, manufacturerdata, rssi, txpower, distance, servicedata, servicedatauuid) plus "proxy";',
    'home/<name>/LWT is online/offline (retained, the last will); home/<name>/proxies/<proxy>/online|slots|',
    'subscription|stats are retained. GATT commands in OpenMQTTGateway’s shape on home/<name>/commands/MQTTtoBT',
    '({"ble_read_address","ble_read_service","ble_read_char","value_type"} / ble_write_… with "ble_write_value";',
    '{"ble_notify_address",…} subscribes, "ble_notify":false stops) are answered on home/<name>/BTtoMQTT/<MAC>.',
    'Commands are OFF unless allowed: --allow-read MAC (or * for every device) and --allow-write MAC, repeatable;',
    '--command-rate N commands/s over the gateway (default 2, burst 10).',
    'Broker: without --broker an embedded broker listens on --broker-listen; beyond loopback it needs',
    `--broker-username and a password (--broker-password-file, $${MQTT_PASSWORD_ENV} or --broker-password, visible`,
    'in ps), or --broker-allow-anonymous. TLS: --broker mqtts://… with --broker-ca/--broker-cert/--broker-key.',
    '--name GW (default esphome-ble) and --base-topic (default home) set the topics; give each gateway on one',
    'broker its own --name. --publish-interval 5s: at most one message per device and proxy per interval;',
    '--changes-only: only when the advertised data changed (again after 120 s); --presence: also',
    'home/presence/<proxy> for Home Assistant’s MQTT room presence; --undecoded: also home/<name>/BTtoMQTT/undecoded',
    'for Theengs Gateway to decode; --min-rssi -90 leaves out reports at -90 dBm or weaker (90 means the same, as',
    'OpenMQTTGateway’s minrssi). --discovery publishes Home Assistant MQTT discovery for each proxy (online, free',
    'slots, ads/s) under --discovery-prefix (default homeassistant).',
    '--mqtt-config FILE: the same as JSON (README "MQTT gateway"); flags win, allow lists add up.',
    '--relay: hold the proxies in an in-process relay (--relay-listen 127.0.0.1:0, --downstream-psk) so Home',
    'Assistant shares them, and run the gateway on the relay’s sessions (no second subscription). The relay takes',
    'what `relay` takes: --proxy and/or --config (its keys, passwords and routes), --psk/--psk-file one for all or one',
    'per --proxy, --proxy-password/--proxy-password-file ($ESPHOME_BLE_PASSWORD; --password is the broker’s),',
    '--downstream-psk(-file), --allow-plaintext, --keep-trying; its upstream failures and refused or dropped clients',
    'show on stderr at once (--json: as events too). Without --relay the gateway holds the proxies’ subscriptions',
    'itself (a note on stderr says what that costs Home Assistant); no proxy usable exits as its causes say (3 key, 4',
    'timeout).',
    '--duration 30s stops after that long (default: until Ctrl-C). --json prints one JSON event per line.',
    POOL_HELP,
  ].join('\n'),
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args.positionals[0])}`);
    const durationMs = durationOption(args, 'duration');
    const configPath = str(args, 'mqtt-config');
    const file = configPath === undefined ? {} : await loadGatewayConfig(configPath);
    const options = await gatewayOptionsOf(args, file);
    const { pool, close: closePool } = await poolOf(args, ctx);
    let gateway: MqttGateway;
    try {
      // Loaded here: MQTT.js and aedes cost every other command ~250 ms of start-up otherwise.
      const { MqttGateway } = await import('../../mqtt/mqtt-gateway.js');
      gateway = new MqttGateway({ pool, ...options });
    } catch (error) {
      await closePool();
      throw error;
    }
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const events = watch(gateway, ctx.out, flag(args, 'json'), stop.signal);
      await startGateway(gateway, ctx.signal, durationOption(args, 'timeout') ?? 10_000);
      announce(ctx.out, gateway, flag(args, 'json'), options);
      if (durationMs !== undefined) await sleep(durationMs, stop.signal).catch(() => {});
      else await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
      stop.abort();
      await events;
      return EXIT.ok;
    } catch (error) {
      if (ctx.signal.aborted) {
        ctx.out.error('interrupted');
        return EXIT.interrupted;
      }
      throw error;
    } finally {
      stop.abort();
      ctx.signal.removeEventListener('abort', onAbort);
      await gateway.close();
      await closePool();
    }
  },
};

/**
 * gateway.start() where a start that failed because its deadline passed is a timeout (exit 4) with what the broker
 * said last, as everywhere else: the gateway reports it as a broker error (ESPAPI_ERR_MQTT) naming that cause.
 */
async function startGateway(gateway: MqttGateway, signal: AbortSignal, timeout: number): Promise<void> {
  const started = performance.now();
  try {
    await gateway.start({ signal, timeout });
  } catch (error) {
    const late = performance.now() - started >= timeout;
    if (!late || !(error instanceof EspApiError) || error.code !== 'ESPAPI_ERR_MQTT') throw error;
    throw new EspApiError('ESPAPI_ERR_TIMEOUT', error.message, { cause: error });
  }
}

/** The gateway's options from flags over the config file. */
async function gatewayOptionsOf(args: CommandArgs, file: GatewayConfig): Promise<Omit<MqttGatewayOptions, 'pool'>> {
  const username = str(args, 'broker-username');
  if (str(args, 'broker-password') !== undefined && str(args, 'broker-password-file') !== undefined) {
    throw new UsageError('give --broker-password or --broker-password-file, not both');
  }
  const password = resolveSecret(
    { value: str(args, 'broker-password'), file: str(args, 'broker-password-file'), env: MQTT_PASSWORD_ENV },
    'the MQTT password (--broker-password, --broker-password-file or $ESPHOME_BLE_MQTT_PASSWORD)',
  );
  const url = str(args, 'broker');
  let broker: BrokerOptions | undefined;
  if (url !== undefined) {
    const pem = async (name: string): Promise<string | undefined> => {
      const path = str(args, name);
      if (path === undefined) return undefined;
      try {
        return await readFile(path, 'utf8');
      } catch (cause) {
        throw new UsageError(`Cannot read --${name} ${path}: ${(cause as NodeJS.ErrnoException).code ?? 'unreadable'}`);
      }
    };
    const [ca, cert, key] = await Promise.all([pem('broker-ca'), pem('broker-cert'), pem('broker-key')]);
    broker = {
      url,
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password }),
      ...(ca === undefined ? {} : { ca }),
      ...(cert === undefined ? {} : { cert }),
      ...(key === undefined ? {} : { key }),
      ...(flag(args, 'broker-insecure') ? { rejectUnauthorized: false } : {}),
    };
  } else if (file.broker !== undefined) {
    broker = { ...file.broker, ...(username === undefined ? {} : { username }), ...(password === undefined ? {} : { password }) };
  }
  const listen = str(args, 'broker-listen');
  const embedded = broker === undefined ? listenOf(listen ?? EMBEDDED_BROKER_LISTEN) : undefined;
  // The one listener rule, checked before any proxy is waited for: the command line must change (exit 2).
  if (embedded !== undefined) {
    assertListenerAllowed({
      host: embedded.host,
      authenticated: username !== undefined && password !== undefined,
      allowUnauthenticated: flag(args, 'broker-allow-anonymous'),
      what: 'MQTT broker',
      optIn: '--broker-allow-anonymous',
    });
  }
  if (broker !== undefined && listen !== undefined)
    throw new UsageError('--broker-listen is for the embedded broker; it cannot go with --broker');
  const commands: CommandPolicyOptions = {
    ...file.commands,
    allowRead: [...(file.commands?.allowRead ?? []), ...strings(args, 'allow-read')],
    allowWrite: [...(file.commands?.allowWrite ?? []), ...strings(args, 'allow-write')],
  };
  // Checked before anything opens: a bad allow list is a usage error, not a half-started gateway.
  new AllowList(commands.allowRead, commands.allowWrite);
  const rate = num(args, 'command-rate');
  if (rate !== undefined) {
    if (!(rate > 0)) throw new UsageError('--command-rate must be a positive number of commands per second');
    commands.ratePerSecond = rate;
  }
  const advertisements: AdvertisementPublishOptions = { ...file.advertisements };
  const interval = durationOption(args, 'publish-interval');
  if (interval !== undefined) advertisements.interval = interval;
  if (flag(args, 'changes-only')) advertisements.changesOnly = true;
  if (flag(args, 'presence')) advertisements.presence = true;
  if (flag(args, 'undecoded')) advertisements.undecoded = true;
  const minRssi = num(args, 'min-rssi');
  // By magnitude, as OpenMQTTGateway's minrssi: 90 and -90 both mean "weaker than -90 dBm is left out".
  if (minRssi !== undefined) advertisements.minRssi = -Math.abs(minRssi);
  const prefix = str(args, 'discovery-prefix');
  const discovery = flag(args, 'discovery') || prefix !== undefined ? (prefix === undefined ? true : { prefix }) : file.discovery;
  const name = str(args, 'name') ?? file.name;
  const baseTopic = str(args, 'base-topic') ?? file.baseTopic;
  return {
    ...(name === undefined ? {} : { name }),
    ...(baseTopic === undefined ? {} : { baseTopic }),
    ...(broker === undefined ? {} : { broker }),
    ...(embedded === undefined
      ? {}
      : {
          embeddedBroker: {
            ...embedded,
            ...(username === undefined ? {} : { username }),
            ...(password === undefined ? {} : { password }),
            ...(flag(args, 'broker-allow-anonymous') ? { allowAnonymous: true } : {}),
          },
        }),
    advertisements,
    commands,
    ...(discovery === undefined ? {} : { discovery }),
    ...(file.statsInterval === undefined ? {} : { statsInterval: file.statsInterval }),
  };
}

/**
 * A pool from the command line, waited for as every pool command does (no proxy usable → the exit its causes give:
 * 3 for a refused key, 4 when all timed out), or (--relay) a relay holding the proxies with a pool on its upstream
 * sessions: the relay command's upstreams (--proxy/--config, keys, passwords), listener rule and notices.
 */
async function poolOf(args: CommandArgs, ctx: CommandContext): Promise<{ pool: ProxyPool; close: () => Promise<void> }> {
  if (!flag(args, 'relay')) {
    for (const name of RELAY_ONLY) if (args.values[name] !== undefined) throw new UsageError(`--${name} goes with --relay`);
    const cli = await openReadyPool(args, ctx, new Spinner(ctx.out), { clientInfo: 'esphome-ble mqtt' });
    return { pool: cli.pool, close: () => cli.close() };
  }
  const json = flag(args, 'json');
  const { proxies, routes } = await relayUpstreamsOf(args, 'proxy-password');
  const downstreamPsk = secretOption(args, DOWNSTREAM_PSK);
  const out = redactingOutput(ctx.out, [downstreamPsk, ...proxies.flatMap((p) => [p.psk, p.password])]);
  checkRelayKeys(proxies, downstreamPsk);
  const relay = new RelayServer({
    proxies,
    tapFor: cliTapFor,
    listen: listenOf(str(args, 'relay-listen') ?? '127.0.0.1:0'),
    ...(downstreamPsk === undefined ? {} : { downstreamPsk }),
    ...(flag(args, 'allow-plaintext') ? { allowPlaintext: true } : {}),
    ...(flag(args, 'keep-trying') ? { permanentErrors: 'retry' as const } : {}),
  });
  // The real-home rule: the relay holds each proxy's subscription and Home Assistant must move to its listeners.
  out.error(`${paint(out, 'yellow', 'note')} ${relayNote(upstreamLabels(proxies))}`);
  const watching = new AbortController();
  const notices = relayNotices(out, { json, show: (line) => out.error(line), jsonUpstream: true });
  const events = (async () => {
    for await (const event of relay.status({ signal: watching.signal })) notices.push(event);
  })().finally(() => notices.flush());
  const stopRelay = async (): Promise<void> => {
    watching.abort();
    await events.catch(() => {});
    await relay.close();
  };
  try {
    const listening = await startRelay(relay, { signal: ctx.signal, timeout: durationOption(args, 'timeout') ?? 10_000 });
    for (const l of listening) {
      if (!json) out.line(`relaying ${sanitize(l.name)} on ${l.host}:${l.port}`);
      else out.json({ event: 'relayListening', proxy: l.proxy, name: l.name, host: l.host, port: l.port });
    }
  } catch (error) {
    await stopRelay();
    throw error;
  }
  const pool = new ProxyPool([], { clientInfo: 'esphome-ble mqtt', ...(routes === undefined ? {} : { routes }) });
  for (const proxy of relay.proxies) pool.addSession(proxy);
  return {
    pool,
    async close() {
      await pool.close();
      await stopRelay();
    },
  };
}

/** Options that only mean something with --relay (an error without it, rather than silently ignored). */
const RELAY_ONLY = [
  'relay-listen',
  'downstream-psk',
  'downstream-psk-file',
  'allow-plaintext',
  'proxy-password',
  'proxy-password-file',
  'keep-trying',
] as const;

function announce(out: Output, gateway: MqttGateway, json: boolean, options: Omit<MqttGatewayOptions, 'pool'>): void {
  const t = gateway.topics;
  const allowed = options.commands?.allowRead?.length || options.commands?.allowWrite?.length;
  // What the broker granted, not what was asked: an ACL may refuse the command topics.
  const commands = gateway.commandTopics;
  if (json) {
    out.json({
      event: 'started',
      gateway: gateway.name,
      broker: gateway.brokerUrl,
      embedded: gateway.embeddedBroker !== undefined,
      topics: {
        advertisements: `${t.bt}/<MAC>`,
        commands: commands.includes(t.commands) ? t.commands : null,
        commandTopics: commands,
        lwt: t.lwt,
        proxies: `${t.proxies}/<proxy>/#`,
      },
      minRssi: gateway.minRssi,
    });
    return;
  }
  out.line(`mqtt gateway ${sanitize(gateway.name)} on ${gateway.brokerUrl}${gateway.embeddedBroker ? ' (embedded broker)' : ''}`);
  out.line(`  advertisements  ${t.bt}/<MAC>`);
  out.line(`  availability    ${t.lwt} (retained)`);
  out.line(`  proxies         ${t.proxies}/<proxy>/online|slots|subscription|stats (retained)`);
  out.line(
    `  commands        ${commands.length > 0 ? commands.join(', ') : allowed ? 'none: the broker refused the command topics' : 'off (--allow-read / --allow-write)'}`,
  );
}

/** Prints gateway events until `stop`. */
async function watch(gateway: MqttGateway, out: Output, json: boolean, stop: AbortSignal): Promise<void> {
  for await (const event of gateway.status({ signal: stop })) {
    if (json) {
      const { type, ...rest } = event;
      out.json({ event: type, ...rest });
    } else {
      const line = eventLine(event, gateway.name);
      if (line !== undefined) out.line(line);
    }
  }
}

function eventLine(event: MqttGatewayStatus, gatewayName: string): string | undefined {
  switch (event.type) {
    case 'brokerConnected':
      return `broker connected: ${event.url}`;
    case 'brokerDisconnected':
      return `broker lost (${event.code ?? 'closed'}${event.message ? `: ${sanitize(event.message)}` : ''}); retrying in ${event.retryInMs} ms`;
    case 'command':
      return event.success
        ? `${event.action} ${event.mac} via ${event.proxy}: ok (${event.ms} ms)`
        : `${event.action ?? 'command'} ${event.mac ?? '(no device)'}: ${event.code} (${event.ms} ms)`;
    case 'nameClash':
      return `error: another gateway named ${sanitize(gatewayName)} is on this broker (host ${sanitize(event.other.host)}, pid ${event.other.pid}, since ${event.other.since}); ${event.commands === 'yielded' ? 'it is newer and carries out the commands: this one no longer does' : 'this one is newer and carries out the commands'}. Give each gateway its own --name`;
    case 'subscribeRefused':
      return `error: the broker refused ${event.topics.map(sanitize).join(', ')} (${sanitize(event.message)}); commands sent there are not carried out`;
    case 'retainedCommandDropped':
      return `ignored a retained command on ${sanitize(event.topic)} (commands are never replayed; clear it with mosquitto_pub -r -n -t ${sanitize(event.topic)})`;
    case 'stats': {
      const s = event.stats;
      return `stats: ${s.advertisementsPublished} ads published, ${s.advertisementsFiltered} filtered, ${s.droppedBrokerAway + s.droppedSlowBroker} dropped; ${s.commandsSucceeded} commands ok, ${s.commandsFailed} failed`;
    }
    default:
      return undefined;
  }
}

function listenOf(text: string): { host: string; port: number } {
  const { host, port } = parseProxySpec(text);
  if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new UsageError(`expected host:port (port 0 for a free one), got ${JSON.stringify(text)}`);
  }
  return { host: host || '127.0.0.1', port };
}

function strings(args: CommandArgs, name: string): string[] {
  const value = args.values[name];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return typeof value === 'string' ? [value] : [];
}
