import type { OptionDef, OptionKind } from './command.js';

/** The part of an option that is the same in every command: how it is read and what kind of value it takes. */
type Word = Pick<OptionDef, 'type' | 'short' | 'kind' | 'unit' | 'placeholder'> & {
  /** The description a command gets unless it says more precisely what the option does there. */
  readonly description: string;
  /**
   * The flag's one meaning, as words every description of it contains (any case): required of a word that some
   * command describes in its own words, so that a more precise description cannot give the flag another meaning.
   */
  readonly meaning?: readonly string[];
};

const flagWord = (description: string, extra: Partial<Word> = {}): Word => ({
  type: 'boolean',
  kind: 'flag',
  description,
  ...extra,
});
const value = (kind: OptionKind, placeholder: string, description: string, extra: Partial<Word> = {}): Word => ({
  type: 'string',
  kind,
  placeholder,
  description,
  ...extra,
});
const ms = (description: string, meaning?: readonly string[]): Word =>
  value('duration', 'duration', description, { unit: 'ms', ...(meaning === undefined ? {} : { meaning }) });
const seconds = (description: string, meaning?: readonly string[]): Word =>
  value('duration', 'duration', description, { unit: 's', ...(meaning === undefined ? {} : { meaning }) });

/**
 * THE vocabulary of the CLI: every flag name with the one kind of value it takes in every command (and, for a
 * duration, the unit of a bare number). Commands take their options from here with {@link option}, adding the
 * default and, where it helps, a more precise description; README "CLI" prints the same table.
 */
export const VOCABULARY = {
  // Where the proxies are.
  host: value('host', 'host[:port]', 'The one proxy to talk to (IPv6 as [addr]:port); without it the command uses the pool', {
    short: 'H',
    meaning: ['proxy'],
  }),
  port: value('port', 'port', 'API port of --host (may also be given as --host host:port)', { short: 'p', meaning: ['port'] }),
  proxy: value('proxy', 'host[:port]', 'A proxy of the pool (repeatable)', { meaning: ['proxy'] }),
  config: value('file', 'file', 'Pool config JSON: {"proxies":[…],"keys":{…},"routes":{…}} (README "CLI")'),
  'mdns-interface': value('ip', 'ip', 'Pin the mDNS socket to this interface address (127.0.0.1 in tests)'),
  'mdns-port': value('port', 'port', 'UDP port of the mDNS socket (a private one in tests)', { meaning: ['mDNS'] }),
  // Keys and passwords (never printed).
  psk: value('secret', 'base64', 'Noise key (the device YAML `api: encryption: key:`); also $ESPHOME_BLE_PSK', { meaning: ['Noise key'] }),
  'psk-file': value('file', 'file', 'Read --psk from this file (a flag is visible in `ps`; a file is not)'),
  password: value('secret', 'text', 'Legacy API password (firmware before 2026.1); also $ESPHOME_BLE_PASSWORD', {
    meaning: ['legacy API password'],
  }),
  'password-file': value('file', 'file', 'Read --password from this file'),
  'proxy-password': value(
    'secret',
    'text',
    "The proxies' legacy API password where --password means another one; also $ESPHOME_BLE_PASSWORD",
    { meaning: ['legacy API password'] },
  ),
  'proxy-password-file': value('file', 'file', 'Read --proxy-password from this file'),
  'downstream-psk': value('secret', 'base64', "The relay's own Noise key for its clients; also $ESPHOME_BLE_DOWNSTREAM_PSK"),
  'downstream-psk-file': value('file', 'file', 'Read --downstream-psk from this file'),
  // Time.
  timeout: ms('Deadline; a bare number is milliseconds', ['deadline']),
  'connect-timeout': ms('Deadline of each connect; a bare number is milliseconds', ['deadline', 'connect']),
  duration: seconds('Stop after this long; a bare number is seconds', ['stop']),
  interval: seconds('Time between two polls; a bare number is seconds', ['between two polls']),
  'listen-for': ms('Listen this long first (for advertisements, or mDNS answers); a bare number is milliseconds', ['listen']),
  'publish-interval': ms('At most one message per device and proxy per interval; a bare number is milliseconds'),
  // Output.
  json: flagWord('Machine-readable output: JSON (its shape is in the notes below)', { meaning: ['JSON'] }),
  verbose: flagWord('Trace every API message on stderr: name, id, size, fields (keys and passwords never shown)', { short: 'v' }),
  // Devices.
  'address-type': value('choice', 'public|random|rpa-public|rpa-random|0..3', 'Address type of the device'),
  attempts: value('integer', 'n', 'Connect attempts, across proxies'),
  count: value('integer', 'n', 'Stop after this many', { meaning: ['stop after'] }),
  mac: value('mac', 'MAC', 'Only this device (repeatable)'),
  name: value('text', 'text', 'The name this program calls itself by (a simulated node, a gateway)', { meaning: ['calls itself'] }),
  'name-contains': value('text', 'text', 'Only devices whose advertised name contains this text (any case)'),
  service: value('uuid', 'uuid', 'Only devices advertising this service UUID (repeatable)'),
  'min-rssi': value('rssi', 'dBm', 'Leave out reports at this strength or weaker (-90 and 90 both mean -90 dBm)'),
  'no-response': flagWord('Write without response (ATT Write Command)'),
  // Changes and consent.
  yes: flagWord('Go ahead without asking (a `note` on stderr says what is done first)', { meaning: ['without asking'] }),
  'dry-run': flagWord('Only say what would be done', { meaning: ['only'] }),
  subscribe: flagWord("Take each proxy's Bluetooth subscription for the run (see the notes: it costs Home Assistant)", {
    meaning: ['Bluetooth subscription'],
  }),
  'keep-trying': flagWord('Keep retrying a proxy that failed for a reason retrying cannot fix (wrong key, another node)', {
    meaning: ['keep retrying'],
  }),
  // Listeners.
  listen: value('listen', 'host:port', 'Where to listen (port 0: a free one)', { meaning: ['listen'] }),
  'allow-plaintext': flagWord('Allow a listener without a key beyond loopback (whoever reaches it drives the proxies)', {
    meaning: ['beyond loopback'],
  }),
  // Everything else is one command's own; still one kind per name.
  watch: flagWord('Keep watching until Ctrl-C or --duration'),
  reap: flagWord('Release orphaned slots (see the notes)'),
  follow: flagWord('Keep listening until Ctrl-C or --duration: a live table on a terminal, JSON lines otherwise'),
  prefer: value('proxy-ref', 'P', 'Pin the device to this proxy (repeatable, in order)'),
  require: value('proxy-ref', 'P', 'Only these proxies (repeatable)'),
  exclude: value('proxy-ref', 'P', 'Never these proxies (repeatable)'),
  via: value('proxy-ref', 'P', 'The proxy to do it on (repeatable)'),
  'no-connect': flagWord('Only browse mDNS; do not connect'),
  'max-clients': value('integer', 'n', 'Clients per listener at once'),
  'max-connections': value('integer', 'n', 'API sessions at once'),
  'evict-unauthenticated': flagWord("A newcomer to a full listener takes the oldest unauthenticated session's place"),
  'slots-per-client': value('text', 'n|all', 'Slots one client may hold on a proxy'),
  'slots-for': value('clients', 'ADDR[/BITS]=n|all', 'Another quota for these client addresses (repeatable)'),
  'allow-scanner-mode': value('clients', 'ADDR[/BITS]|none', 'Only these clients may switch the scanner mode (repeatable)'),
  'allow-unpair': value('clients', 'ADDR[/BITS]|none', 'Only these clients may unpair a device (repeatable)'),
  'allow-clear-cache': value('clients', 'ADDR[/BITS]|none', "Only these clients may clear a device's GATT cache (repeatable)"),
  profile: value('text', 'name|file', 'Device profile: default, kitchen, living-room, garage, or a JSON file', { meaning: ['profile'] }),
  slots: value('integer', 'n', 'Connection slots of the simulated proxy'),
  'slots-busy': value('integer', 'n', 'Slots held by phantom links of another client'),
  fleet: value('integer', 'n', 'Number of simulated proxies'),
  replay: value('file', 'file', 'Play a recorded transcript back instead of simulating'),
  'rssi-offset': value('number', 'dB', 'Added to every simulated RSSI'),
  firmware: value('choice', 'generation', 'Firmware generation to play', { meaning: ['firmware generation'] }),
  subscription: value('choice', 'first-wins|newest-wins', 'Who keeps the Bluetooth subscription when a second client subscribes'),
  board: value('choice', 'board', 'Hardware to play', { meaning: ['hardware'] }),
  'matter-mdns-port': value('port', 'port', "--profile matter: UDP port of the Matter device's mDNS on 127.0.0.1"),
  'matter-log': value('choice', 'level', '--profile matter: matter.js log level (on stderr)', { meaning: ['log level'] }),
  'matter-start-timeout': seconds("--profile matter: deadline of the Matter device's start; a bare number is seconds"),
  out: value('file', 'file', 'Where the transcript goes', { short: 'o' }),
  description: value('text', 'text', "The transcript header's description"),
  pings: flagWord('Keep keep-alive pings in the recording'),
  broker: value('url', 'mqtt://host:port', 'An external MQTT broker (mqtts:// for TLS)'),
  'broker-listen': value('listen', 'host:port', 'Where the embedded broker listens'),
  'broker-username': value('text', 'user', 'MQTT user name'),
  'broker-password': value('secret', 'text', 'MQTT password; also $ESPHOME_BLE_MQTT_PASSWORD'),
  'broker-password-file': value('file', 'file', 'Read --broker-password from this file'),
  'broker-ca': value('file', 'file', 'CA certificate (PEM) of the broker'),
  'broker-cert': value('file', 'file', 'Client certificate (PEM)'),
  'broker-key': value('file', 'file', 'Client certificate key (PEM)'),
  'broker-insecure': flagWord("Do not check the broker's certificate"),
  'broker-allow-anonymous': flagWord('Let the embedded broker beyond loopback accept clients without a password'),
  'base-topic': value('text', 'topic', 'First topic level'),
  'allow-read': value('mac', 'MAC|*', 'Devices MQTT commands may read (repeatable; * for every device)'),
  'allow-write': value('mac', 'MAC', 'Devices MQTT commands may write (repeatable)'),
  'command-rate': value('number', 'n', 'MQTT commands per second over the gateway'),
  'changes-only': flagWord('Publish an advertisement only when its data changed (again after 120 s)'),
  presence: flagWord("Also publish home/presence/<proxy> for Home Assistant's MQTT room presence"),
  undecoded: flagWord('Also publish on <base>/<name>/BTtoMQTT/undecoded for Theengs Gateway'),
  discovery: flagWord('Publish Home Assistant MQTT discovery for each proxy'),
  'discovery-prefix': value('text', 'topic', 'Home Assistant discovery prefix'),
  'mqtt-config': value('file', 'file', 'Gateway config JSON (README "MQTT gateway"); flags win'),
  relay: flagWord('Hold the proxies in an in-process relay so Home Assistant shares them'),
  'relay-listen': value('listen', 'host:port', "Where the in-process relay's listeners bind"),
} as const satisfies Record<string, Word>;

/** A flag name of the vocabulary. */
export type WordName = keyof typeof VOCABULARY;

/** What a command says about one of its options: its default, and a more precise description where it helps. */
export interface OptionUse {
  readonly default: string;
  readonly description?: string;
  readonly multiple?: boolean;
  /** The values of a `choice` option. */
  readonly choices?: readonly string[];
}

/** One option of a command, from the vocabulary. */
export function option(name: WordName, use: OptionUse): OptionDef {
  const { meaning: _meaning, ...word }: Word = VOCABULARY[name];
  return {
    ...word,
    description: use.description ?? word.description,
    default: use.default,
    ...(use.multiple ? { multiple: true } : {}),
    ...(use.choices === undefined ? {} : { choices: use.choices }),
  };
}

/**
 * An old spelling kept for one release: parsed like `like`'s word but as `kind`/`unit` say (its old meaning), its
 * value goes to option `use`, and the CLI warns on stderr.
 */
export function deprecatedOption(
  use: WordName,
  old: Pick<OptionDef, 'kind' | 'unit' | 'multiple' | 'type'> & { readonly meaning: string },
): OptionDef {
  return {
    type: old.type,
    kind: old.kind,
    ...(old.unit === undefined ? {} : { unit: old.unit }),
    ...(old.multiple ? { multiple: true } : {}),
    ...placeholderOf(use),
    description: `Deprecated: use --${use} (${old.meaning})`,
    default: `as --${use}`,
    deprecated: { use },
  };
}

function placeholderOf(name: WordName): { placeholder?: string } {
  const word: Word = VOCABULARY[name];
  return word.placeholder === undefined ? {} : { placeholder: word.placeholder };
}
