import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { EspApiError } from '../../errors.js';
import type { SessionPlugin } from '../../server/api-server.js';
import { type CallOptions, withDeadline } from '../../util/abort.js';
import type { MatterProfile } from '../profile.js';
import type { SimulatedPeripheral } from '../simulated-peripheral.js';
import type { FromDevice, MatterDeviceConfig, MatterDeviceEvent, ToDevice } from './matter-ipc.js';
import { assertMatterPeers, MATTER_UUIDS } from './matter-peers.js';

/** matter.js starts a device in about a second on this VM; a loaded CI host gets thirty times that. */
const START_TIMEOUT_MS = 30_000;
/** A device closes its sessions and storage quickly; past this it is killed. */
const STOP_TIMEOUT_MS = 5_000;
/** ESP_GATT_CONN_TIMEOUT: what a link to a device that vanished ends with. */
const SUPERVISION_TIMEOUT_REASON = 0x08;
/** ESP_GATT_CONN_TERMINATE_PEER_USER: the device ended the link. */
const PEER_TERMINATED_REASON = 0x13;
/** Events kept for late readers (a test asserting what happened, the CLI printing it). */
const EVENT_HISTORY = 64;

/** Options of a simulated Matter device. */
export interface MatterDeviceOptions extends CallOptions {
  /** matter.js log level in the device's process (default `error`; its log goes to stderr). */
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
  readonly info: MatterDeviceInfo;
  readonly #child: ChildProcess;
  readonly #events: MatterDeviceEvent[] = [];
  readonly #listeners = new Set<(event: MatterDeviceEvent) => void>();
  readonly #undo: Array<() => void>;
  #additionalData: Uint8Array = new Uint8Array(0);
  #closing: Promise<void> | undefined;

  /** Starts the device's process and programs `peripheral`; rejects with ESPAPI_ERR_MISSING_PEER without matter.js. */
  static async start(peripheral: SimulatedPeripheral, profile: MatterProfile, options: MatterDeviceOptions = {}): Promise<MatterDevice> {
    options.signal?.throwIfAborted();
    await assertMatterPeers('a simulated Matter device (serve --profile matter)');
    const mdnsPort = options.mdnsPort ?? 5353;
    const config: MatterDeviceConfig = {
      ...profile,
      mac: peripheral.mac,
      mdnsPort,
      operationalPort: options.operationalPort ?? 0,
      logLevel: options.logLevel ?? process.env.ESPHOME_BLE_MATTER_LOG ?? 'error',
    };
    const child = fork(childEntry(), [JSON.stringify(config)], {
      serialization: 'advanced',
      // The device's log goes to our stderr: stdout belongs to the CLI's JSON lines.
      stdio: ['ignore', 2, 2, 'ipc'],
    });
    const ready = await withDeadline('Starting the simulated Matter device', options, START_TIMEOUT_MS, (signal) =>
      waitForReady(child, signal),
    ).catch(async (error: unknown) => {
      await stopChild(child);
      throw error;
    });
    return new MatterDevice(peripheral, child, { ...profile, ...ready, mdnsPort });
  }

  private constructor(peripheral: SimulatedPeripheral, child: ChildProcess, info: MatterDeviceInfo) {
    this.peripheral = peripheral;
    this.#child = child;
    this.info = info;
    // Quiet until the device itself announces: its advertisement is the one that goes on the air.
    peripheral.stopAdvertising();
    this.#undo = [
      peripheral.program(MATTER_UUIDS.c1, {
        onWrite: (data) => {
          this.#send({ type: 'write', data });
          return undefined;
        },
      }),
      peripheral.program(MATTER_UUIDS.c2, {
        onSubscribe: ({ mtu }) => this.#send({ type: 'subscribed', mtu }),
        onUnsubscribe: () => this.#send({ type: 'unsubscribed' }),
      }),
      peripheral.program(MATTER_UUIDS.c3, { onRead: () => this.#additionalData }),
      peripheral.onLink((event) =>
        this.#send(event.type === 'connected' ? { type: 'connected', mtu: event.mtu } : { type: 'disconnected', reason: event.reason }),
      ),
    ];
    child.on('message', (message: FromDevice) => this.#onMessage(message));
    child.once('exit', (code, signal) => {
      if (this.#closing !== undefined) return;
      // A device that died takes its radio with it: off the air, its link dropped (supervision timeout).
      peripheral.stopAdvertising();
      peripheral.loseLink(SUPERVISION_TIMEOUT_REASON);
      this.#emit({ type: 'exited', code, signal });
    });
  }

  /** Process id of the device's process (undefined once it is gone). */
  get pid(): number | undefined {
    return this.#child.exitCode === null && this.#child.signalCode === null ? this.#child.pid : undefined;
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

  /** Stops the device's process (idempotent). */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const undo of this.#undo) undo();
      this.#listeners.clear();
      await stopChild(this.#child);
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #emit(event: MatterDeviceEvent): void {
    this.#events.push(event);
    if (this.#events.length > EVENT_HISTORY) this.#events.shift();
    for (const listener of [...this.#listeners]) listener(event);
  }

  #send(message: ToDevice): void {
    if (this.#closing === undefined && this.#child.connected) this.#child.send(message);
  }

  #onMessage(message: FromDevice): void {
    switch (message.type) {
      case 'advertise':
        this.#additionalData = message.additionalData;
        this.peripheral.advertise([message.data]);
        return;
      case 'stopAdvertising':
        this.peripheral.stopAdvertising();
        return;
      case 'indicate':
        this.peripheral.indicate(MATTER_UUIDS.c2, message.data).then(
          () => this.#send({ type: 'confirmed', id: message.id }),
          (error: Error) => this.#send({ type: 'confirmed', id: message.id, error: error.message }),
        );
        return;
      case 'disconnect':
        this.peripheral.loseLink(PEER_TERMINATED_REASON);
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

/** The compiled child entry (tests run from src/, where only the .ts exists; the build is kept current for them). */
function childEntry(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return fileURLToPath(new URL('./matter-device-child.js', import.meta.url));
  return here.replace(/[\\/]src[\\/](fixture-server[\\/]matter[\\/])matter-device\.ts$/, '/dist/$1matter-device-child.js');
}

function waitForReady(child: ChildProcess, signal: AbortSignal): Promise<Omit<MatterDeviceInfo, keyof MatterProfile | 'mdnsPort'>> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      child.off('message', onMessage);
      child.off('exit', onExit);
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
        reject(new EspApiError('ESPAPI_ERR_MATTER_DEVICE', `The simulated Matter device failed to start: ${message.message}`));
      }
    };
    const onExit = (code: number | null, exitSignal: string | null): void => {
      cleanup();
      reject(
        new EspApiError('ESPAPI_ERR_MATTER_DEVICE', `The simulated Matter device exited while starting (${exitSignal ?? `code ${code}`})`),
      );
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Asks the device to stop, kills it when it does not, and resolves once the process is gone. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.connected) child.send({ type: 'stop' } satisfies ToDevice);
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
