// Messages between a simulated Matter device's process and the proxy process that owns its peripheral.
// Sent with Node's `advanced` IPC serialization, so byte arrays cross as Uint8Array.

/**
 * What the device process is told about its Bluetooth link. `link` numbers the links (1 for the first connect,
 * then one more per connect), so a message about a link that has gone since cannot act on the next one.
 */
export type ToDevice =
  /** The proxy opened link `link`; `mtu` is the negotiated ATT MTU. */
  | { readonly type: 'connected'; readonly link: number; readonly mtu: number }
  /** A write on C1 (BTP from the commissioner). */
  | { readonly type: 'write'; readonly link: number; readonly data: Uint8Array }
  /** The commissioner enabled indications on C2. */
  | { readonly type: 'subscribed'; readonly link: number; readonly mtu: number }
  /** Indications on C2 were switched off while the link stays up. */
  | { readonly type: 'unsubscribed'; readonly link: number }
  /** The link went away (`reason` as the proxy reports it). */
  | { readonly type: 'disconnected'; readonly link: number; readonly reason: number }
  /** Indication `id` was confirmed (`error` when it could not be delivered). */
  | { readonly type: 'confirmed'; readonly id: number; readonly error?: string }
  /** Shut the device down and exit. */
  | { readonly type: 'stop' };

/** What the device process reports. */
export type FromDevice =
  /** Started: where its operational (UDP) side and its mDNS listen, and the codes a user would type. */
  | {
      readonly type: 'ready';
      readonly operationalPort: number;
      readonly manualPairingCode: string;
      readonly qrPairingCode: string;
    }
  /** Put these AD bytes on the air (C3 answers `additionalData`). */
  | { readonly type: 'advertise'; readonly data: Uint8Array; readonly additionalData: Uint8Array }
  /** Stop advertising (commissioned, or commissioning window closed). */
  | { readonly type: 'stopAdvertising' }
  /** Indicate `data` on C2 of link `link` and answer with `confirmed` and the same id. */
  | { readonly type: 'indicate'; readonly id: number; readonly link: number; readonly data: Uint8Array }
  /** The device ends link `link` (ignored when that link has gone already). */
  | { readonly type: 'disconnect'; readonly link: number }
  /** Something a test or operator wants to see: commissioning progress, fabrics, the light's state. */
  | { readonly type: 'event'; readonly event: MatterDeviceEvent }
  /** The device failed to start or crashed. */
  | { readonly type: 'failed'; readonly message: string };

/** Events of the simulated Matter device. */
export type MatterDeviceEvent =
  | { readonly type: 'btpSession'; readonly attMtu: number }
  /**
   * The commissioner broke BTP's rules (data before the handshake, a subscription without one, a segment BTP
   * cannot decode): the device hung up.
   */
  | { readonly type: 'btpError'; readonly message: string }
  | { readonly type: 'commissioned'; readonly fabrics: number }
  | { readonly type: 'decommissioned' }
  | { readonly type: 'onOff'; readonly on: boolean }
  /** The device's process ended without being stopped (crashed or killed): the peripheral is gone too. */
  | { readonly type: 'exited'; readonly code: number | null; readonly signal: string | null };

/** How the device process is configured (its argv[2], as JSON). */
export interface MatterDeviceConfig {
  readonly discriminator: number;
  readonly passcode: number;
  readonly vendorId: number;
  readonly productId: number;
  /** The peripheral's MAC: also the device's network "MAC", so its mDNS host name is its own. */
  readonly mac: string;
  /** UDP port matter.js uses for mDNS on loopback instead of 5353 (0: 5353). */
  readonly mdnsPort: number;
  /** UDP port of the operational interface (0: any free one). */
  readonly operationalPort: number;
  /** matter.js log level: debug, info, notice, warn, error, fatal. */
  readonly logLevel: string;
}
