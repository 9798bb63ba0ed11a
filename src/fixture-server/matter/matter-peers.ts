import { EspApiError } from '../../errors.js';

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

/** Packages a simulated Matter device needs (optional peers of esphome-ble). */
export const MATTER_DEVICE_PACKAGES = ['@matter/main', '@matter/nodejs'] as const;

/** Throws ESPAPI_ERR_MISSING_PEER naming the packages to install when matter.js cannot be loaded. */
export async function assertMatterPeers(what: string, packages: readonly string[] = MATTER_DEVICE_PACKAGES): Promise<void> {
  const missing: string[] = [];
  for (const name of packages) {
    try {
      import.meta.resolve(name);
    } catch {
      missing.push(name);
    }
  }
  if (missing.length === 0) return;
  const install = packages.map((name) => `${name}@${MATTER_JS_VERSION}`).join(' ');
  throw new EspApiError(
    'ESPAPI_ERR_MISSING_PEER',
    `${what} needs matter.js, an optional peer dependency of esphome-ble (missing: ${missing.join(', ')}): npm install ${install}`,
  );
}
