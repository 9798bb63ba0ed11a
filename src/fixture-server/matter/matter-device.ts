import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MatterDeviceError } from '../../errors.js';
import type { SessionPlugin } from '../../server/api-server.js';
import { type CallOptions, withDeadline } from '../../util/abort.js';
import type { MatterProfile } from '../profile.js';
import type { SimulatedPeripheral } from '../simulated-peripheral.js';
import { matterChildEntry } from './matter-child-entry.js';
import type { FromDevice, MatterDeviceConfig, MatterDeviceEvent, ToDevice } from './matter-ipc.js';
import { assertMatterPeers, MATTER_UUIDS, matterLogLevel } from './matter-peers.js';

/** matter.js starts a device in about a second on this VM; a loaded CI host gets thirty times that. */
const START_TIMEOUT_MS = 30_000;
/** A device closes its sessions and storage quickly (and exits by itself 3 s into a stop); past this it is killed. */
const STOP_TIMEOUT_MS = 5_000;
/** ESP_GATT_CONN_TIMEOUT: what a link to a device that vanished ends with. */
const SUPERVISION_TIMEOUT_REASON = 0x08;
/** ESP_GATT_CONN_TERMINATE_PEER_USER: the device ended the link. */
const PEER_TERMINATED_REASON = 0x13;
/** Events kept for late readers (a test asserting what happened, the CLI printing it). */
const EVENT_HISTORY = 64;

/** Options of a simulated Matter device; `signal` and `timeout` bound its start (default 30 s). */
export interface MatterDeviceOptions extends CallOptions {
  /** matter.js log level in the device's process: debug, info, notice, warn, error (default), fatal; to stderr. */
  logLevel?: string;
  /** UDP port standing in for mDNS's 5353 on loopback (default 5353, where any matter.js controller looks). */
  mdnsPort?: number;
  /** UDP port of the device's operational interface (default: a free one). */
  operationalPort?: number;
}

/** What a started device reports about itself. */
export interface MatterDeviceInfo {
  readonly discriminator: number;
  readonly passcode: number;
  readonly vendorId: number;
  readonly productId: number;
  readonly manualPairingCode: string;
  readonly qrPairingCode: string;
  /** UDP port of its operational (CASE) interface on ::1 and 127.0.0.1. */
  readonly operationalPort: number;
  /** UDP port its mDNS uses on loopback. */
  readonly mdnsPort: number;
}

/**
 * A real Matter device behind a simulated peripheral: matter.js's own device side runs in a child process (its
 * BLE layer and environment are one per process), its advertisement becomes the peripheral's, C1 writes and the
 * C2 subscription go to its BTP layer, and its BTP segments come back as C2 indications. A plugin of the API
 * server, so closing the server stops the device.
 */
export class MatterDevice implements SessionPlugin {
  /** The peripheral the device drives. */
  readonly peripheral: SimulatedPeripheral;
  readonly #events: MatterDeviceEvent[] = [];
  readonly #listeners = new Set<(event: MatterDeviceEvent) => void>();
  readonly #undo: Array<() => void>;
  #info: MatterDeviceInfo | undefined;
  #child: ChildProcess | undefined;
  /** Number of the peripheral's current link (one more per connect): the device process names links by it. */
  #link = 0;
  #gone = false;
  #additionalData: Uint8Array = new Uint8Array(0);
  #closing: Promise<void> | undefined;

  /**
   * Starts the device's process and programs `peripheral`. Rejects with ESPAPI_ERR_MISSING_PEER without matter.js,
   * InvalidArgumentError for an unknown log level or a peripheral that already has a device behind it, and
   * MatterDeviceError when the process fails to start; honours `signal` and `timeout` (default 30 s). A failed or
   * aborted start leaves no process behind.
   */
  static async start(peripheral: SimulatedPeripheral, profile: MatterProfile, options: MatterDeviceOptions = {}): Promise<MatterDevice> {
    options.signal?.throwIfAborted();
    const env = process.env.ESPHOME_BLE_MATTER_LOG;
    const logLevel =
      options.logLevel !== undefined
        ? matterLogLevel(options.logLevel, 'logLevel')
        : matterLogLevel(env ?? 'error', 'ESPHOME_BLE_MATTER_LOG');
    await assertMatterPeers('a simulated Matter device (serve --profile matter)');
    const entry = matterChildEntry(fileURLToPath(import.meta.url));
    const mdnsPort = options.mdnsPort ?? 5353;
    const config: MatterDeviceConfig = {
      ...profile,
      mac: peripheral.mac,
      mdnsPort,
      operationalPort: options.operationalPort ?? 0,
      logLevel,
    };
    // The peripheral is programmed before any process exists: one that already has a device fails here.
    const device = new MatterDevice(peripheral);
    try {
      const ready = await device.#run(entry, config, options);
      device.#info = { ...profile, ...ready, mdnsPort };
      return device;
    } catch (error) {
      await device.close();
      throw error;
    }
  }

  private constructor(peripheral: SimulatedPeripheral) {
    this.peripheral = peripheral;
    this.#undo = [
      peripheral.program(MATTER_UUIDS.c1, {
        onWrite: (data) => {
          this.#send({ type: 'write', link: this.#link, data });
          return undefined;
        },
      }),
    ];
    try {
      this.#undo.push(
        peripheral.program(MATTER_UUIDS.c2, {
          onSubscribe: ({ mtu }) => this.#send({ type: 'subscribed', link: this.#link, mtu }),
          // A link that went away unsubscribes too; 'disconnected' follows and says it all.
          onUnsubscribe: () => {
            if (peripheral.state === 'connected') this.#send({ type: 'unsubscribed', link: this.#link });
          },
        }),
        peripheral.program(MATTER_UUIDS.c3, { onRead: () => this.#additionalData }),
        peripheral.onLink((event) => {
          if (event.type === 'connected') this.#send({ type: 'connected', link: ++this.#link, mtu: event.mtu });
          else this.#send({ type: 'disconnected', link: this.#link, reason: event.reason });
        }),
      );
    } catch (error) {
      for (const undo of this.#undo) undo();
      throw error;
    }
    // Quiet until the device itself announces: its advertisement is the one that goes on the air.
    peripheral.stopAdvertising();
  }

  /** The device's codes and ports. */
  get info(): MatterDeviceInfo {
    if (this.#info === undefined) throw new MatterDeviceError('The simulated Matter device has not started');
    return this.#info;
  }

  /** Process id of the device's process (undefined once it is gone). */
  get pid(): number | undefined {
    const child = this.#child;
    return child !== undefined && !this.#gone && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  /** Events so far (BTP sessions, commissioning, the light switching), oldest first; the last 64 are kept. */
  get events(): readonly MatterDeviceEvent[] {
    return this.#events;
  }

  /** Listens for device events; returns the unsubscribe function. */
  onEvent(listener: (event: MatterDeviceEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops the device's process (idempotent); the peripheral goes off the air and loses its link, as the device did. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const undo of this.#undo) undo();
      this.#listeners.clear();
      this.peripheral.stopAdvertising();
      this.peripheral.loseLink(SUPERVISION_TIMEOUT_REASON);
      if (this.#child !== undefined) await stopChild(this.#child);
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Forks the device's process and waits for its `ready`. */
  async #run(entry: string, config: MatterDeviceConfig, options: CallOptions): Promise<ReadyInfo> {
    const child = fork(entry, [JSON.stringify(config)], {
      serialization: 'advanced',
      // The device's log goes to our stderr: stdout belongs to the CLI's JSON lines.
      stdio: ['ignore', 2, 2, 'ipc'],
    });
    this.#child = child;
    // Listeners first: what the device sends while it starts (its advertisement) is not lost.
    child.on('message', (message: FromDevice) => this.#onMessage(message));
    child.once('exit', (code, signal) => this.#onGone(code, signal));
    // A process that could not be spawned, or whose channel broke, is as gone as one that exited.
    child.on('error', () => this.#onGone(child.exitCode, child.signalCode));
    return withDeadline('Starting the simulated Matter device', options, START_TIMEOUT_MS, (signal) => waitForReady(child, signal));
  }

  #onGone(code: number | null, signal: string | null): void {
    if (this.#gone) return;
    this.#gone = true;
    if (this.#closing !== undefined || this.#info === undefined) return;
    // A device that died takes its radio with it: off the air, its link dropped (supervision timeout).
    this.peripheral.stopAdvertising();
    this.peripheral.loseLink(SUPERVISION_TIMEOUT_REASON);
    this.#emit({ type: 'exited', code, signal });
  }

  #emit(event: MatterDeviceEvent): void {
    this.#events.push(event);
    if (this.#events.length > EVENT_HISTORY) this.#events.shift();
    for (const listener of [...this.#listeners]) listener(event);
  }

  #send(message: ToDevice): void {
    const child = this.#child;
    if (this.#closing !== undefined || this.#gone || child?.connected !== true) return;
    // With a callback, a send that races the device's death fails here instead of as an 'error' event; the
    // exit that follows reports it.
    child.send(message, undefined, {}, () => undefined);
  }

  #onMessage(message: FromDevice): void {
    if (this.#closing !== undefined) return;
    switch (message.type) {
      case 'advertise':
        this.#additionalData = message.additionalData;
        this.peripheral.advertise([message.data]);
        return;
      case 'stopAdvertising':
        this.peripheral.stopAdvertising();
        return;
      case 'indicate':
        if (message.link !== this.#link || this.peripheral.state !== 'connected') {
          this.#send({ type: 'confirmed', id: message.id, error: 'The Bluetooth link went away' });
          return;
        }
        this.peripheral.indicate(MATTER_UUIDS.c2, message.data).then(
          () => this.#send({ type: 'confirmed', id: message.id }),
          (error: Error) => this.#send({ type: 'confirmed', id: message.id, error: error.message }),
        );
        return;
      case 'disconnect':
        // Only the link the device meant: the one it saw may have gone and the next one come up meanwhile.
        if (message.link === this.#link) this.peripheral.loseLink(PEER_TERMINATED_REASON);
        return;
      case 'event':
        this.#emit(message.event);
        return;
      case 'ready':
      case 'failed':
        return;
    }
  }
}

type ReadyInfo = Pick<MatterDeviceInfo, 'manualPairingCode' | 'qrPairingCode' | 'operationalPort'>;

function waitForReady(child: ChildProcess, signal: AbortSignal): Promise<ReadyInfo> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      child.off('message', onMessage);
      child.off('exit', onExit);
      child.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onMessage = (message: FromDevice): void => {
      if (message.type === 'ready') {
        cleanup();
        resolve({
          manualPairingCode: message.manualPairingCode,
          qrPairingCode: message.qrPairingCode,
          operationalPort: message.operationalPort,
        });
      } else if (message.type === 'failed') {
        cleanup();
        reject(new MatterDeviceError(`The simulated Matter device failed to start: ${message.message}`));
      }
    };
    const onExit = (code: number | null, exitSignal: string | null): void => {
      cleanup();
      reject(new MatterDeviceError(`The simulated Matter device exited while starting (${exitSignal ?? `code ${code}`})`));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(new MatterDeviceError(`The simulated Matter device's process failed: ${error.message}`, { cause: error }));
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.once('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Asks the device to stop, kills it when it does not, and resolves once the process is gone. */
async function stopChild(child: ChildProcess): Promise<void> {
  // Never spawned (its 'error' said why), or gone already.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Without its channel (or when the stop cannot be sent) the device cannot be asked: SIGTERM ends it (matter.js
  // traps no signals there).
  const terminate = (): void => void child.kill('SIGTERM');
  if (child.connected) child.send({ type: 'stop' } satisfies ToDevice, undefined, {}, (error) => error && terminate());
  else terminate();
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
