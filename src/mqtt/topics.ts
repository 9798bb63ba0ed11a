import { InvalidArgumentError } from '../errors.js';

/**
 * The topic layout of one gateway, OpenMQTTGateway's: `<base>/<gateway>/BTtoMQTT/<MAC without colons>` per
 * device, `<base>/<gateway>/commands/MQTTtoBT` for commands, `<base>/<gateway>/LWT` for availability.
 */
export interface GatewayTopics {
  /** `<base>/<gateway>`. */
  readonly root: string;
  /** `<root>/BTtoMQTT`: per-device advertisements and command results below it. */
  readonly bt: string;
  /** `<root>/BTtoMQTT/undecoded`: every advertisement, for an external decoder (Theengs Gateway listens to `home/+/BTtoMQTT/undecoded`). */
  readonly undecoded: string;
  /** `<root>/commands/MQTTtoBT`: GATT read/write/notify requests. */
  readonly commands: string;
  /** `<root>/commands/MQTTtoBT/config`: where OpenMQTTGateway's documentation sends them too (its settings topic). */
  readonly commandsConfig: string;
  /** `<root>/instance`: each run announces itself here, so two gateways with one name find each other. */
  readonly instance: string;
  /** `<root>/LWT`: `online` / `offline`, retained, the broker's last will. */
  readonly lwt: string;
  /** `<root>/proxies`: one retained subtree per proxy. */
  readonly proxies: string;
  /** `<base>/presence`: Home Assistant's MQTT room presence reads `<base>/presence/<room>`; the room is the proxy. */
  readonly presence: string;
  /** `<root>/BTtoMQTT/<MAC without colons>`. */
  device(mac: string): string;
  /** `<root>/proxies/<proxy>/<leaf>`. */
  proxy(id: string, leaf: 'online' | 'slots' | 'subscription' | 'stats'): string;
  /** `<base>/presence/<proxy>`. */
  room(proxy: string): string;
}

/** Characters MQTT gives a meaning in topics (wildcards, separator) or forbids (NUL): not allowed in a name level. */
const SPECIAL = ['+', '#', '/', String.fromCharCode(0)];

function hasSpecial(text: string, allowSlash = false): boolean {
  return SPECIAL.some((c) => (allowSlash && c === '/' ? false : text.includes(c)));
}

/** Checks one topic level we build from a name (gateway, proxy); throws InvalidArgumentError naming `what`. */
export function assertTopicLevel(level: string, what: string): void {
  if (level === '' || hasSpecial(level) || Buffer.byteLength(level) > 128) {
    throw new InvalidArgumentError(
      `${what} ${JSON.stringify(level)} cannot be an MQTT topic level (no '/', '+', '#', empty or over 128 bytes)`,
    );
  }
}

/** A proxy id made safe as a topic level: MQTT's special characters become `_`. */
export function topicLevelOf(id: string): string {
  let safe = id;
  for (const c of SPECIAL) safe = safe.split(c).join('_');
  safe = safe.slice(0, 128);
  return safe === '' ? '_' : safe;
}

/** Builds the topics of gateway `name` under `base` (default `home`, as OpenMQTTGateway and Theengs Gateway). */
export function gatewayTopics(base: string, name: string): GatewayTopics {
  assertTopicLevel(name, 'Gateway name');
  const prefix = base.replace(/\/+$/, '');
  if (prefix !== '' && (hasSpecial(prefix, true) || prefix.split('/').some((l) => l === ''))) {
    throw new InvalidArgumentError(`Base topic ${JSON.stringify(base)} must be topic levels without wildcards (e.g. "home")`);
  }
  const root = prefix === '' ? name : `${prefix}/${name}`;
  const bt = `${root}/BTtoMQTT`;
  const presence = prefix === '' ? 'presence' : `${prefix}/presence`;
  return {
    root,
    bt,
    undecoded: `${bt}/undecoded`,
    commands: `${root}/commands/MQTTtoBT`,
    commandsConfig: `${root}/commands/MQTTtoBT/config`,
    instance: `${root}/instance`,
    lwt: `${root}/LWT`,
    proxies: `${root}/proxies`,
    presence,
    device: (mac) => `${bt}/${mac.replace(/:/g, '')}`,
    proxy: (id, leaf) => `${root}/proxies/${topicLevelOf(id)}/${leaf}`,
    room: (proxy) => `${presence}/${topicLevelOf(proxy)}`,
  };
}
