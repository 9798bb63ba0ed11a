import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.js';
import type { CallOptions } from '../util/abort.js';
import { resolveSecret } from '../util/secrets.js';
import type { CommandPolicyOptions } from './command-policy.js';
import type { AdvertisementPublishOptions } from './mqtt-gateway.js';

/** A gateway config file, checked: what it sets of MqttGatewayOptions (the pool comes from elsewhere). */
export interface GatewayConfig {
  name?: string;
  baseTopic?: string;
  broker?: {
    url: string;
    username?: string;
    password?: string;
    ca?: string;
    cert?: string;
    key?: string;
    rejectUnauthorized?: boolean;
  };
  advertisements?: AdvertisementPublishOptions;
  commands?: CommandPolicyOptions;
  discovery?: boolean | { prefix?: string };
  statsInterval?: number;
}

const TOP_KEYS = ['name', 'baseTopic', 'broker', 'allowRead', 'allowWrite', 'advertisements', 'commands', 'discovery', 'statsInterval'];
const BROKER_KEYS = ['url', 'username', 'password', 'passwordFile', 'passwordEnv', 'caFile', 'certFile', 'keyFile', 'rejectUnauthorized'];
const AD_KEYS = ['perDevice', 'undecoded', 'presence', 'distance', 'minRssi', 'interval', 'changesOnly', 'republishInterval', 'maxDevices'];
const COMMAND_KEYS = ['ratePerSecond', 'burst', 'maxInFlight', 'maxQueued', 'maxNotifications', 'commandTimeout'];

/** Reads a gateway config file (JSON; see README "MQTT gateway"); errors name the file and the key. */
export async function loadGatewayConfig(path: string, options: CallOptions = {}): Promise<GatewayConfig> {
  options.signal?.throwIfAborted();
  let text: string;
  try {
    text = await readFile(path, { encoding: 'utf8', ...(options.signal === undefined ? {} : { signal: options.signal }) });
  } catch (cause) {
    throw new InvalidArgumentError(`Cannot read the MQTT config ${path}: ${(cause as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new InvalidArgumentError(`The MQTT config ${path} is not JSON: ${(cause as Error).message}`);
  }
  return parseGatewayConfig(json, path);
}

/**
 * Checks a config object: `{"name","baseTopic","broker":{"url","username","passwordFile"|"passwordEnv"|"password","caFile",
 * "certFile","keyFile","rejectUnauthorized"},"allowRead":[…],"allowWrite":[…],"advertisements":{…},"commands":{…},
 * "discovery":true|{"prefix"}}`. Secrets are read here (file or environment), certificate files too.
 */
export async function parseGatewayConfig(json: unknown, source = 'MQTT config'): Promise<GatewayConfig> {
  const fail = (where: string, what: string): never => {
    throw new InvalidArgumentError(`${source}: ${where}: ${what}`);
  };
  const body = record(json, '(root)', fail);
  known(body, TOP_KEYS, '', fail);
  const config: GatewayConfig = {};
  if (body.name !== undefined) config.name = str(body.name, 'name', fail);
  if (body.baseTopic !== undefined) config.baseTopic = str(body.baseTopic, 'baseTopic', fail);
  if (body.statsInterval !== undefined) config.statsInterval = num(body.statsInterval, 'statsInterval', fail);
  if (body.broker !== undefined) {
    const b = record(body.broker, 'broker', fail);
    known(b, BROKER_KEYS, 'broker.', fail);
    const password = resolveSecret(
      {
        value: optionalStr(b.password, 'broker.password', fail),
        file: optionalStr(b.passwordFile, 'broker.passwordFile', fail),
        env: optionalStr(b.passwordEnv, 'broker.passwordEnv', fail),
      },
      `${source}: broker password`,
    );
    const pem = async (key: 'caFile' | 'certFile' | 'keyFile'): Promise<string | undefined> => {
      const path = optionalStr(b[key], `broker.${key}`, fail);
      if (path === undefined) return undefined;
      try {
        return await readFile(path, 'utf8');
      } catch (cause) {
        return fail(`broker.${key}`, `cannot read ${path} (${(cause as NodeJS.ErrnoException).code ?? 'unreadable'})`);
      }
    };
    const [ca, cert, key] = await Promise.all([pem('caFile'), pem('certFile'), pem('keyFile')]);
    const username = optionalStr(b.username, 'broker.username', fail);
    if (b.rejectUnauthorized !== undefined && typeof b.rejectUnauthorized !== 'boolean')
      fail('broker.rejectUnauthorized', 'expected true or false');
    config.broker = {
      url: str(b.url, 'broker.url', fail),
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password }),
      ...(ca === undefined ? {} : { ca }),
      ...(cert === undefined ? {} : { cert }),
      ...(key === undefined ? {} : { key }),
      ...(typeof b.rejectUnauthorized === 'boolean' ? { rejectUnauthorized: b.rejectUnauthorized } : {}),
    };
  }
  const allowRead = body.allowRead === undefined ? undefined : strings(body.allowRead, 'allowRead', fail);
  const allowWrite = body.allowWrite === undefined ? undefined : strings(body.allowWrite, 'allowWrite', fail);
  const commands: Record<string, unknown> = {};
  if (body.commands !== undefined) {
    const c = record(body.commands, 'commands', fail);
    known(c, COMMAND_KEYS, 'commands.', fail);
    for (const [k, v] of Object.entries(c)) commands[k] = num(v, `commands.${k}`, fail);
  }
  if (allowRead !== undefined) commands.allowRead = allowRead;
  if (allowWrite !== undefined) commands.allowWrite = allowWrite;
  if (Object.keys(commands).length > 0) config.commands = commands as CommandPolicyOptions;
  if (body.advertisements !== undefined) {
    const a = record(body.advertisements, 'advertisements', fail);
    known(a, AD_KEYS, 'advertisements.', fail);
    const ads: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(a)) {
      const boolKey = ['perDevice', 'undecoded', 'presence', 'distance', 'changesOnly'].includes(k);
      if (boolKey && typeof v !== 'boolean') fail(`advertisements.${k}`, 'expected true or false');
      ads[k] = boolKey ? v : num(v, `advertisements.${k}`, fail);
    }
    config.advertisements = ads as AdvertisementPublishOptions;
  }
  if (body.discovery !== undefined) {
    if (typeof body.discovery === 'boolean') config.discovery = body.discovery;
    else {
      const d = record(body.discovery, 'discovery', fail);
      known(d, ['prefix'], 'discovery.', fail);
      config.discovery = d.prefix === undefined ? {} : { prefix: str(d.prefix, 'discovery.prefix', fail) };
    }
  }
  return config;
}

type Fail = (where: string, what: string) => never;

function record(value: unknown, where: string, fail: Fail): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(where, 'expected an object');
  return value as Record<string, unknown>;
}

function known(value: Record<string, unknown>, keys: readonly string[], prefix: string, fail: Fail): void {
  for (const key of Object.keys(value)) if (!keys.includes(key)) fail(`${prefix}${key}`, `unknown key (expected ${keys.join(', ')})`);
}

function str(value: unknown, where: string, fail: Fail): string {
  if (typeof value !== 'string' || value === '') return fail(where, 'expected a non-empty string');
  return value;
}

function optionalStr(value: unknown, where: string, fail: Fail): string | undefined {
  return value === undefined ? undefined : str(value, where, fail);
}

function num(value: unknown, where: string, fail: Fail): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) return fail(where, 'expected a number');
  return value;
}

function strings(value: unknown, where: string, fail: Fail): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) return fail(where, 'expected an array of strings');
  return value as string[];
}
