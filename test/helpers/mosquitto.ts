import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, chmodSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { CI_REQUIRED } from './ci-required.js';

/** Where the mosquitto binary is (Debian puts it in /usr/sbin, often not on a user's PATH), or undefined. */
export const MOSQUITTO = findMosquitto();

/** True when CI says every test must run: then a missing tool fails the tests instead of skipping them. */
export const MOSQUITTO_REQUIRED = CI_REQUIRED;

/** Whether a suite that needs these programs runs, and what its name says when it does not. */
export interface ToolRequirement {
  /** True only on a developer machine that lacks one of them (under CI the suite runs, and fails). */
  readonly skip: boolean;
  /** ` (skipped: … not installed …)` to append to the suite's name, or ''. */
  readonly label: string;
}

/** Every program a suite runs, checked up front: Mosquitto's broker and clients, mosquitto_passwd, openssl. */
export function requireTools(names: readonly string[], required = MOSQUITTO_REQUIRED): ToolRequirement {
  const missing = names.filter((name) => {
    try {
      findTool(name);
      return false;
    } catch {
      return true;
    }
  });
  const skip = missing.length > 0 && !required;
  return {
    skip,
    label: skip ? ` (skipped: ${missing.join(', ')} not installed: apt-get install mosquitto mosquitto-clients openssl)` : '',
  };
}

/** The Mosquitto broker alone (suites that also run its clients or openssl use requireTools). */
const BROKER = requireTools(['mosquitto']);

/** Skip Mosquitto tests (with this reason in their name) only on a developer machine without it. */
export const SKIP_MOSQUITTO = BROKER.skip;

/** The reason printed in the name of a skipped suite. */
export const MOSQUITTO_SKIP_REASON = 'skipped: mosquitto is not installed (apt-get install mosquitto mosquitto-clients)';

/** Options of a test broker. */
export interface MosquittoOptions {
  /** Fixed port (a restart reuses it); default a free one. */
  port?: number;
  /** `user:password` lines for a password file (plain text; hashed with mosquitto_passwd -U). */
  users?: Record<string, string>;
  /** PEM files for a TLS listener. */
  tls?: { ca: string; cert: string; key: string; requireCertificate?: boolean };
}

/** A mosquitto process on 127.0.0.1 that the test owns. */
export class Mosquitto {
  readonly port: number;
  readonly #dir: string;
  readonly #config: string;
  #child: ChildProcess | undefined;

  private constructor(port: number, dir: string, config: string) {
    this.port = port;
    this.#dir = dir;
    this.#config = config;
  }

  /** Starts mosquitto with a temporary config and resolves once it accepts connections. */
  static async start(options: MosquittoOptions = {}): Promise<Mosquitto> {
    if (MOSQUITTO === undefined) {
      throw new Error(
        `mosquitto is required here (CI=${process.env.CI}) but is not installed: apt-get install mosquitto mosquitto-clients`,
      );
    }
    const port = options.port ?? (await freePort());
    const dir = mkdtempSync(join(tmpdir(), 'esphome-ble-mosquitto-'));
    // Started as root, mosquitto drops to its own user before reading the password file and certificates.
    chmodSync(dir, 0o755);
    const lines = [`listener ${port} 127.0.0.1`, 'persistence false', 'log_dest none'];
    if (options.users !== undefined) {
      const file = join(dir, 'passwords');
      writeFileSync(
        file,
        Object.entries(options.users)
          .map(([u, p]) => `${u}:${p}`)
          .join('\n') + '\n',
        { mode: 0o600 },
      );
      await run(findTool('mosquitto_passwd'), ['-U', file]);
      chmodSync(file, 0o644);
      lines.push('allow_anonymous false', `password_file ${file}`);
    } else {
      lines.push('allow_anonymous true');
    }
    if (options.tls !== undefined) {
      lines.push(`cafile ${options.tls.ca}`, `certfile ${options.tls.cert}`, `keyfile ${options.tls.key}`);
      if (options.tls.requireCertificate) lines.push('require_certificate true', 'use_identity_as_username true');
    }
    const config = join(dir, 'mosquitto.conf');
    writeFileSync(config, `${lines.join('\n')}\n`);
    const broker = new Mosquitto(port, dir, config);
    await broker.restart();
    return broker;
  }

  /** `mqtt://127.0.0.1:<port>`. */
  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Starts the process again (after stop()/kill()) on the same port. */
  async restart(): Promise<void> {
    const child = spawn(MOSQUITTO!, ['-c', this.#config], { stdio: 'ignore' });
    this.#child = child;
    const deadline = Date.now() + 5_000;
    while (!(await accepts(this.port))) {
      if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode} (config ${this.#config})`);
      if (Date.now() > deadline) throw new Error('mosquitto did not start listening within 5 s');
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** Stops the process (SIGTERM) and waits for it. */
  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }

  /** Stops it and removes its files. */
  async close(): Promise<void> {
    await this.stop();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function findMosquitto(): string | undefined {
  try {
    return findTool('mosquitto');
  } catch {
    return undefined;
  }
}

/** Path of a Mosquitto tool (`mosquitto_sub`, `mosquitto_pub`, `mosquitto_passwd`); throws when absent. */
export function findTool(name: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/bin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  throw new Error(`${name} not found`);
}

/** Runs a tool to completion; rejects on a non-zero exit. */
export async function run(tool: string, args: string[]): Promise<void> {
  const child = spawn(tool, args, { stdio: 'ignore' });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`${tool} ${args.join(' ')} exited with ${code}`);
}

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
