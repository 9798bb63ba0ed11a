import { type ApiConnection, DEFAULT_API_PORT, type MessageTap, type SendGuard } from './connection.js';
import { type BackoffOptions, ReconnectingConnection, type ReconnectOptions } from './reconnect.js';

/** How to reach one proxy: address, credentials, and the node name it must report (also its id when given). */
export interface ProxyConfig {
  host: string;
  port?: number;
  /** Base64 Noise key. */
  psk?: string;
  password?: string;
  /** Expected node name (also the pool's id for the proxy when given). */
  name?: string;
}

/** What a pool member and a relay upstream set on their reconnecting session beside the proxy's config. */
export interface ProxySessionOptions {
  clientInfo: string;
  backoff?: BackoffOptions | undefined;
  connectTimeout?: number | undefined;
  keepaliveInterval?: number | undefined;
  /** What a permanent failure does (ReconnectOptions.permanentErrors). */
  permanentErrors?: 'stop' | 'retry' | undefined;
  /** The owner's own tap, kept beside every tap `tapFor` makes (the relay counts the pool's connects with it). */
  tap?: MessageTap | undefined;
  /** A fresh tap per session (recordings, a protocol trace). */
  tapFor?: ReconnectOptions['tapFor'] | undefined;
  sendGuard?: SendGuard | undefined;
  onConnect: (api: ApiConnection) => void | Promise<void>;
}

/** The id a proxy goes by: its expected node name, else `host:port`. */
export function proxyId(config: ProxyConfig): string {
  return config.name ?? `${config.host}:${config.port ?? DEFAULT_API_PORT}`;
}

/**
 * The reconnecting session to one proxy, built the same way for a pool's member and a relay's upstream: the
 * config's address and credentials, its name as the expected node name, and the owner's tuning. Not started.
 */
export function proxySession(config: ProxyConfig, options: ProxySessionOptions): ReconnectingConnection {
  const { tap, tapFor } = options;
  return new ReconnectingConnection({
    host: config.host,
    port: config.port,
    psk: config.psk,
    password: config.password,
    expectedName: config.name,
    clientInfo: options.clientInfo,
    ...(options.keepaliveInterval === undefined ? {} : { keepaliveInterval: options.keepaliveInterval }),
    ...(options.backoff ? { backoff: options.backoff } : {}),
    ...(options.permanentErrors ? { permanentErrors: options.permanentErrors } : {}),
    ...(options.connectTimeout ? { connectTimeout: options.connectTimeout } : {}),
    ...(tap === undefined ? {} : { tap }),
    // A session's tap is `tapFor`'s when it makes one (ReconnectingConnection): the owner's own rides along with it.
    ...(tapFor === undefined ? {} : { tapFor: (target) => joinTaps(tap, tapFor(target)) }),
    ...(options.sendGuard === undefined ? {} : { sendGuard: options.sendGuard }),
    onConnect: options.onConnect,
  });
}

function joinTaps(own: MessageTap | undefined, extra: MessageTap | undefined): MessageTap | undefined {
  if (own === undefined || extra === undefined) return extra ?? own;
  return (direction, id, payload) => {
    own(direction, id, payload);
    extra(direction, id, payload);
  };
}
