import { BluetoothProxyFeature as F } from '../bluetooth/features.js';

/**
 * Hardware the simulated proxy can stand for. What a board can do is a property of the board, not of the
 * firmware version: since 2026.8 the firmware compiles the connection half of the proxy only for boards
 * with connection slots (`USE_BLUETOOTH_PROXY_CONNECTIONS`), and an RP2040/RP2350 proxy has one slot.
 */
export type ProxyBoard = 'esp32' | 'esp32-adv-only' | 'bk72xx' | 'rp2040' | 'rp2350';

/** Every board, the default first. */
export const PROXY_BOARDS: readonly ProxyBoard[] = ['esp32', 'esp32-adv-only', 'bk72xx', 'rp2040', 'rp2350'];

/** What one board looks like to an API client. */
export interface BoardProfile {
  /** DeviceInfo `manufacturer`. */
  readonly manufacturer: string;
  /** DeviceInfo `model` and the mDNS `board` TXT value. */
  readonly model: string;
  /** The mDNS `platform` TXT value. */
  readonly platform: string;
  /** Feature bits this board can have; the firmware generation's bits are masked with it. */
  readonly featureMask: number;
  /** Connection slots (undefined: the firmware default of 3); 0 = none compiled. */
  readonly slots: number | undefined;
  /**
   * Whether the connection half of the proxy exists. Without it the firmware has no handler for connect, GATT,
   * connection-parameter or slot requests (ids 68, 70, 73, 75–78, 80, 145): they go unanswered (spec §5.9).
   */
  readonly connections: boolean;
}

/** Feature bits of a proxy that only forwards advertisements. */
const ADVERTISEMENTS = F.PASSIVE_SCAN | F.RAW_ADVERTISEMENTS;

/**
 * The boards. Feature bits as the firmware derives them (`get_feature_flags`): an ESP32 without slots keeps scanner
 * state and mode (0x61); a LibreTiny hub announces mode switching only where its hub can switch, which we play as
 * not (0x21: no scanner state either); the RP2040's BTstack backend pairs but has no service cache to clear (0xef).
 */
const BOARDS: Readonly<Record<ProxyBoard, BoardProfile>> = {
  esp32: { manufacturer: 'Espressif', model: 'esp32dev', platform: 'ESP32', featureMask: 0xff, slots: undefined, connections: true },
  'esp32-adv-only': {
    manufacturer: 'Espressif',
    model: 'esp32dev',
    platform: 'ESP32',
    featureMask: ADVERTISEMENTS | F.FEATURE_STATE_AND_MODE,
    slots: 0,
    connections: false,
  },
  bk72xx: {
    manufacturer: 'Beken',
    model: 'generic-bk7231n-qfn32-tuya',
    platform: 'BK7231N',
    featureMask: ADVERTISEMENTS,
    slots: 0,
    connections: false,
  },
  rp2040: {
    manufacturer: 'Raspberry Pi',
    model: 'rpipicow',
    platform: 'RP2040',
    featureMask: 0xff & ~F.CACHE_CLEARING,
    slots: 1,
    connections: true,
  },
  rp2350: {
    manufacturer: 'Raspberry Pi',
    model: 'rpipico2w',
    platform: 'RP2040',
    featureMask: 0xff & ~F.CACHE_CLEARING,
    slots: 1,
    connections: true,
  },
};

/** The profile of `board`; throws RangeError for unknown names (the CLI validates first). */
export function boardProfile(board: ProxyBoard): BoardProfile {
  const profile = BOARDS[board];
  if (profile === undefined) throw new RangeError(`Unknown board ${JSON.stringify(board)}`);
  return profile;
}

/** True when `name` is one of PROXY_BOARDS. */
export function isProxyBoard(name: string): name is ProxyBoard {
  return (PROXY_BOARDS as readonly string[]).includes(name);
}
