import type { GattCharacteristic } from '../bluetooth/gatt.js';
import { CharacteristicNotFoundError, CommandDecodeError, CommandRefusedError, DeviceNotFoundError, EspApiError } from '../errors.js';
import type { PooledConnection } from '../pool/pooled-connection.js';
import { NOT_FOUND_WAIT_MS, type ProxyPool } from '../pool/proxy-pool.js';
import { ADVICE } from '../pool/retry-policy.js';
import { abortPromise, withDeadline } from '../util/abort.js';
import { AllowList, COMMAND_DEFAULTS, type CommandPolicyOptions, TokenBucket } from './command-policy.js';
import { decodeValue, type GattCommand, parseCommand } from './commands.js';

/** What the runner reports about each command (becomes a gateway status event). */
export type CommandEvent =
  | { type: 'command'; action: GattCommand['kind']; mac: string; success: true; proxy: string; ms: number }
  | { type: 'command'; action: GattCommand['kind'] | undefined; mac: string | undefined; success: false; code: string; ms: number };

/** How the runner answers and reports. */
export interface CommandRunnerHost {
  /** Publishes an answer on the device's BTtoMQTT topic; false when it could not go out (counted by the host). */
  answer(mac: string, payload: string): boolean;
  /** Publishes a message that names no device (a command whose address did not decode). */
  answerUnaddressed(payload: string): boolean;
  report(event: CommandEvent): void;
}

const GATT_WRITE_WITHOUT_RESPONSE = 0x04;
/** Disconnects after a command get this long; the slot comes back even if the proxy is slow to confirm. */
const DISCONNECT_TIMEOUT_MS = 5_000;

interface NotifySession {
  readonly key: string;
  readonly connection: PooledConnection;
  readonly stop: () => Promise<void>;
}

/** Carries out MQTTtoBT commands through the pool: allow lists, rate limits, a bounded queue, typed answers. */
export class CommandRunner {
  readonly allow: AllowList;
  readonly #pool: ProxyPool;
  readonly #host: CommandRunnerHost;
  readonly #bucket: TokenBucket;
  readonly #maxInFlight: number;
  readonly #maxQueued: number;
  readonly #maxNotifications: number;
  readonly #timeout: number;
  readonly #abort = new AbortController();
  readonly #running = new Set<Promise<void>>();
  readonly #queue: Array<() => void> = [];
  /** Devices with a command in flight: one at a time per device, so two commands never race for its link. */
  readonly #busy = new Map<number, Promise<void>>();
  readonly #notifying = new Map<string, NotifySession>();
  #inFlight = 0;
  /** Notification subscriptions being opened now (they count toward maxNotifications from the start). */
  #notifyStarting = 0;
  /** Commands accepted and not finished (waiting for their device, for a place, or in flight). */
  #pending = 0;
  /** Commands waiting for their device to be heard, by address; the pool listener is installed only while any wait. */
  readonly #heardWaiters = new Map<number, Set<() => void>>();
  #offHeard: (() => void) | undefined;

  constructor(pool: ProxyPool, options: CommandPolicyOptions, host: CommandRunnerHost) {
    this.#pool = pool;
    this.#host = host;
    this.allow = new AllowList(options.allowRead, options.allowWrite);
    this.#bucket = new TokenBucket(options.ratePerSecond ?? COMMAND_DEFAULTS.ratePerSecond, options.burst ?? COMMAND_DEFAULTS.burst);
    this.#maxInFlight = options.maxInFlight ?? COMMAND_DEFAULTS.maxInFlight;
    this.#maxQueued = options.maxQueued ?? COMMAND_DEFAULTS.maxQueued;
    this.#maxNotifications = options.maxNotifications ?? COMMAND_DEFAULTS.maxNotifications;
    this.#timeout = options.commandTimeout ?? COMMAND_DEFAULTS.commandTimeout;
  }

  /** Notification subscriptions open now. */
  get notifications(): number {
    return this.#notifying.size;
  }

  /**
   * Handles one payload from the command topic (`config`: OpenMQTTGateway's settings topic, where its documentation
   * sends GATT commands too); never throws, answers every outcome.
   */
  handle(payload: Uint8Array, topic: 'commands' | 'config' = 'commands'): void {
    const started = performance.now();
    let command: GattCommand;
    try {
      command = parseCommand(payload);
    } catch (error) {
      const mac = error instanceof CommandDecodeError ? error.mac : undefined;
      const settings =
        topic === 'config' && mac === undefined
          ? new CommandDecodeError(
              `OpenMQTTGateway settings on .../commands/MQTTtoBT/config are not taken: set them as esphome-ble mqtt options (${(error as Error).message})`,
            )
          : error;
      this.#fail(undefined, mac, settings, started);
      return;
    }
    if (this.#abort.signal.aborted) {
      this.#fail(command, command.mac, new CommandRefusedError('The gateway is closing', 'closing'), started);
      return;
    }
    const allowed = command.kind === 'write' ? this.allow.canWrite(command.address) : this.allow.canRead(command.address);
    if (!allowed) {
      const what = command.kind === 'write' ? '--allow-write' : '--allow-read';
      this.#fail(
        command,
        command.mac,
        new CommandRefusedError(`${command.kind} of ${command.mac} is not allowed (${what} ${command.mac})`, 'notAllowed'),
        started,
      );
      return;
    }
    if (command.kind === 'notify' && command.stop) {
      this.#track(this.#stopNotify(command, started));
      return;
    }
    if (!this.#bucket.take()) {
      this.#fail(command, command.mac, new CommandRefusedError('Too many commands: over the gateway rate limit', 'rateLimited'), started);
      return;
    }
    if (this.#pending >= this.#maxInFlight + this.#maxQueued) {
      this.#fail(command, command.mac, new CommandRefusedError('Too many commands waiting', 'busy'), started);
      return;
    }
    this.#pending++;
    this.#track(this.#run(command, started).finally(() => this.#pending--));
  }

  /** Refuses new commands, aborts those in flight, ends notification subscriptions and waits for all of it (until `signal`). */
  async close(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.#abort.abort(new CommandRefusedError('The gateway is closing', 'closing'));
    for (const wake of this.#queue.splice(0)) {
      this.#inFlight++;
      wake();
    }
    const ended = (async () => {
      await Promise.allSettled([...this.#notifying.values()].map((s) => this.#endNotify(s, undefined)));
      while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    })();
    if (options.signal === undefined) return ended;
    // Past the caller's deadline the commands finish on their own (each is aborted, its link bounded by 5 s).
    const { promise, cleanup } = abortPromise(options.signal);
    await Promise.race([ended, promise])
      .catch(() => {})
      .finally(cleanup);
  }

  #track(work: Promise<void>): void {
    const tracked = work.catch(() => {}).finally(() => this.#running.delete(tracked));
    this.#running.add(tracked);
  }

  async #run(command: GattCommand, started: number): Promise<void> {
    // One command per device at a time: wait for the one before (it ends, however it ends, within its deadline)
    // before taking a place among those in flight, so commands queued for one slow device hold one place, not all.
    const previous = this.#busy.get(command.address);
    let release: () => void = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const chained = (previous ?? Promise.resolve()).then(() => mine);
    this.#busy.set(command.address, chained);
    let placed = false;
    try {
      // A device no proxy hears is not worth a place: the pool would wait for it on each of its attempts (8 s in
      // all) and commands for made-up addresses would hold every place while real ones wait. At start-up the
      // advertisements trickle in, so it gets the pool's own grace first, holding nothing.
      if (!(await this.#waitHeard(command.address))) {
        throw new DeviceNotFoundError(`${command.mac} is not heard by any proxy`, { attempts: 0, advice: ADVICE.notFound, timeline: [] });
      }
      await previous;
      await this.#turn();
      placed = true;
      this.#abort.signal.throwIfAborted();
      const proxy = await withDeadline(
        `${command.kind} of ${command.mac} over MQTT`,
        { signal: this.#abort.signal },
        this.#timeout,
        (signal) => (command.kind === 'notify' ? this.#startNotify(command, signal) : this.#readOrWrite(command, signal)),
      );
      this.#host.report({ type: 'command', action: command.kind, mac: command.mac, success: true, proxy, ms: ms(started) });
    } catch (error) {
      this.#fail(command, command.mac, error, started);
    } finally {
      if (placed) this.#leave();
      release();
      if (this.#busy.get(command.address) === chained) this.#busy.delete(command.address);
    }
  }

  /** Whether the device is heard now or within NOT_FOUND_WAIT_MS (one pool listener serves every command waiting). */
  async #waitHeard(address: number): Promise<boolean> {
    if (this.#heard(address)) return true;
    const signal = this.#abort.signal;
    if (signal.aborted) return false;
    await new Promise<void>((resolve) => {
      let waiters = this.#heardWaiters.get(address);
      if (waiters === undefined) {
        waiters = new Set();
        this.#heardWaiters.set(address, waiters);
      }
      const set = waiters;
      const wake = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', wake);
        set.delete(wake);
        if (set.size === 0) this.#heardWaiters.delete(address);
        if (this.#heardWaiters.size === 0) {
          this.#offHeard?.();
          this.#offHeard = undefined;
        }
        resolve();
      };
      const timer = setTimeout(wake, NOT_FOUND_WAIT_MS);
      signal.addEventListener('abort', wake, { once: true });
      set.add(wake);
      this.#offHeard ??= this.#pool.onAdvertisement((ad) => {
        const woken = this.#heardWaiters.get(ad.address);
        if (woken !== undefined) for (const w of [...woken]) w();
      });
    });
    return !signal.aborted && this.#heard(address);
  }

  /** Some proxy heard the device recently, or we hold a link to it (a connected device stops advertising). */
  #heard(address: number): boolean {
    if ([...this.#notifying.values()].some((s) => s.connection.address === address && s.connection.isConnected)) return true;
    return this.#pool.explain(address).length > 0;
  }

  /** Waits for a free place among the commands in flight. */
  async #turn(): Promise<void> {
    if (this.#inFlight < this.#maxInFlight) {
      this.#inFlight++;
      return;
    }
    // #leave() hands its place over: nothing can slip in between.
    await new Promise<void>((resolve) => this.#queue.push(resolve));
  }

  /** Gives the place to the longest waiting command, or frees it. */
  #leave(): void {
    const next = this.#queue.shift();
    if (next !== undefined) next();
    else this.#inFlight--;
  }

  async #readOrWrite(command: Extract<GattCommand, { kind: 'read' | 'write' }>, signal: AbortSignal): Promise<string> {
    // A device we hold a notification link to is used through that link: a second connect would drop it.
    const session = [...this.#notifying.values()].find((s) => s.connection.address === command.address && s.connection.isConnected);
    const connection = session?.connection ?? (await this.#connect(command, signal));
    try {
      const characteristic = findCharacteristic(connection, command);
      if (command.kind === 'read') {
        const data = await connection.read(characteristic.handle, { signal });
        this.#answer(command, { read: decodeValue(data, command.valueType), success: true, proxy: connection.proxy });
      } else {
        // As OpenMQTTGateway: without a response when the characteristic supports that, else with one.
        const withResponse = (characteristic.properties & GATT_WRITE_WITHOUT_RESPONSE) === 0;
        await connection.write(characteristic.handle, command.value, { signal, withResponse });
        this.#answer(command, { write: command.valueText, success: true, proxy: connection.proxy });
      }
      return connection.proxy;
    } finally {
      if (session === undefined) await connection.disconnect({ timeout: DISCONNECT_TIMEOUT_MS }).catch(() => {});
    }
  }

  async #startNotify(command: Extract<GattCommand, { kind: 'notify' }>, signal: AbortSignal): Promise<string> {
    const key = `${command.address}/${command.serviceUuid}/${command.characteristicUuid}`;
    const existing = this.#notifying.get(key);
    if (existing?.connection.isConnected) {
      this.#answer(command, { subscribed: true, success: true, proxy: existing.connection.proxy });
      return existing.connection.proxy;
    }
    // Counted before the connect: requests for other devices run at the same time and would all pass the check.
    if (this.#notifying.size + this.#notifyStarting >= this.#maxNotifications) {
      throw new CommandRefusedError(`Already ${this.#maxNotifications} notification subscriptions (the limit); stop one first`, 'busy');
    }
    this.#notifyStarting++;
    try {
      return await this.#openNotify(command, key, signal);
    } finally {
      this.#notifyStarting--;
    }
  }

  async #openNotify(command: Extract<GattCommand, { kind: 'notify' }>, key: string, signal: AbortSignal): Promise<string> {
    const shared = [...this.#notifying.values()].find((s) => s.connection.address === command.address && s.connection.isConnected);
    const connection = shared?.connection ?? (await this.#connect(command, signal));
    try {
      const characteristic = findCharacteristic(connection, command);
      const unsubscribe = await connection.startNotify(
        characteristic.handle,
        (data) => {
          this.#host.answer(command.mac, answerJson(command, { notify: decodeValue(data, command.valueType), proxy: connection.proxy }));
        },
        { signal },
      );
      const session: NotifySession = { key, connection, stop: unsubscribe };
      this.#notifying.set(key, session);
      void connection.closed().then((info) => {
        if (this.#notifying.get(key) !== session) return;
        this.#notifying.delete(key);
        if (info.requested) return;
        this.#answer(command, {
          subscribed: false,
          success: false,
          error: 'ESPAPI_ERR_BLE_DISCONNECTED',
          message: `${command.mac} dropped the link: ${info.reasonName}`,
        });
      });
      this.#answer(command, { subscribed: true, success: true, proxy: connection.proxy });
      return connection.proxy;
    } catch (error) {
      if (shared === undefined) await connection.disconnect({ timeout: DISCONNECT_TIMEOUT_MS }).catch(() => {});
      throw error;
    }
  }

  async #stopNotify(command: Extract<GattCommand, { kind: 'notify' }>, started: number): Promise<void> {
    const key = `${command.address}/${command.serviceUuid}/${command.characteristicUuid}`;
    const session = this.#notifying.get(key);
    if (session !== undefined) await this.#endNotify(session, command);
    else this.#answer(command, { subscribed: false, success: true });
    this.#host.report({
      type: 'command',
      action: 'notify',
      mac: command.mac,
      success: true,
      proxy: session?.connection.proxy ?? '',
      ms: ms(started),
    });
  }

  async #endNotify(session: NotifySession, command: GattCommand | undefined): Promise<void> {
    this.#notifying.delete(session.key);
    await session.stop().catch(() => {});
    const stillUsed = [...this.#notifying.values()].some((s) => s.connection === session.connection);
    if (!stillUsed) await session.connection.disconnect({ timeout: DISCONNECT_TIMEOUT_MS }).catch(() => {});
    if (command !== undefined) this.#answer(command, { subscribed: false, success: true, proxy: session.connection.proxy });
  }

  #connect(command: GattCommand, signal: AbortSignal): Promise<PooledConnection> {
    return this.#pool.establishConnection(command.address, {
      signal,
      ...(command.attempts === undefined ? {} : { maxAttempts: command.attempts }),
    });
  }

  #answer(command: GattCommand, fields: Record<string, unknown>): void {
    this.#host.answer(command.mac, answerJson(command, fields));
  }

  #fail(command: GattCommand | undefined, mac: string | undefined, error: unknown, started: number): void {
    const code = error instanceof EspApiError ? error.code : 'ESPAPI_ERR_CONNECT_FAILED';
    const message = error instanceof Error ? error.message : String(error);
    const fields: Record<string, unknown> = {
      ...(command?.kind === 'write' ? { write: command.valueText } : {}),
      ...(command?.kind === 'notify' ? { subscribed: false } : {}),
      success: false,
      error: code,
      message,
    };
    if (command !== undefined) this.#answer(command, fields);
    else if (mac !== undefined) this.#host.answer(mac, JSON.stringify({ id: mac, ...fields }));
    else this.#host.answerUnaddressed(JSON.stringify(fields));
    this.#host.report({ type: 'command', action: command?.kind, mac, success: false, code, ms: ms(started) });
  }
}

/** OpenMQTTGateway's answer: `id`, `service`, `characteristic`, then the outcome. */
function answerJson(command: GattCommand, fields: Record<string, unknown>): string {
  return JSON.stringify({ id: command.mac, service: command.service, characteristic: command.characteristic, ...fields });
}

/** The characteristic in the named service (a UUID may appear in several services). */
function findCharacteristic(connection: PooledConnection, command: GattCommand): GattCharacteristic {
  const service = connection.services.service(command.serviceUuid);
  const characteristic = service?.characteristics.find((c) => c.uuid === command.characteristicUuid);
  if (characteristic === undefined) {
    throw new CharacteristicNotFoundError(command.mac, `${command.characteristic} in service ${command.service}`);
  }
  return characteristic;
}

function ms(started: number): number {
  return Math.round(performance.now() - started);
}
