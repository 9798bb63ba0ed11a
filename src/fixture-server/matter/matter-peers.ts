import { createRequire } from 'node:module';
import { EspApiError, InvalidArgumentError } from '../../errors.js';

/** The matter.js version this project is tested with: @matter/nodejs-ble is published up to it and pins the rest to it. */
export const MATTER_JS_VERSION = '0.15.6';

/** UUIDs of the Matter BLE service and its characteristics (Core spec 4.17.3.2). */
export const MATTER_UUIDS = {
  service: 'fff6',
  /** Commissioner → device writes (BTP). */
  c1: '18ee2ef5-263d-4559-959f-4f9c429f9d11',
  /** Device → commissioner indications (BTP). */
  c2: '18ee2ef5-263d-4559-959f-4f9c429f9d12',
  /** Additional commissioning data (read). */
  c3: '64630238-8772-45f2-b87d-748a83218f04',
} as const;

/** matter.js's log levels, quietest last. */
export const MATTER_LOG_LEVELS = ['debug', 'info', 'notice', 'warn', 'error', 'fatal'] as const;

/** `value` as a matter.js log level (any case); InvalidArgumentError naming `label` otherwise. */
export function matterLogLevel(value: string, label: string): (typeof MATTER_LOG_LEVELS)[number] {
  const level = MATTER_LOG_LEVELS.find((name) => name === value.toLowerCase());
  if (level === undefined) {
    throw new InvalidArgumentError(`${label} must be one of ${MATTER_LOG_LEVELS.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return level;
}

/** Packages a simulated Matter device needs (optional peers of esphome-ble). */
export const MATTER_DEVICE_PACKAGES = ['@matter/main', '@matter/nodejs'] as const;

/** Throws ESPAPI_ERR_MISSING_PEER naming the packages to install when matter.js cannot be loaded. */
export async function assertMatterPeers(what: string, packages: readonly string[] = MATTER_DEVICE_PACKAGES): Promise<void> {
  // createRequire rather than import.meta.resolve, which Node 20 before 20.6 only has behind a flag.
  const require = createRequire(import.meta.url);
  const missing: string[] = [];
  for (const name of packages) {
    try {
      require.resolve(name);
    } catch (error) {
      // An ESM-only package has no `require` export, yet it is installed.
      if ((error as NodeJS.ErrnoException).code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') missing.push(name);
    }
  }
  if (missing.length === 0) return;
  const install = packages.map((name) => `${name}@${MATTER_JS_VERSION}`).join(' ');
  throw new EspApiError(
    'ESPAPI_ERR_MISSING_PEER',
    `${what} needs matter.js, an optional peer dependency of esphome-ble (missing: ${missing.join(', ')}): npm install ${install}`,
  );
}
