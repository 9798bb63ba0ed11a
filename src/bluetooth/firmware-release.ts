/** An ESPHome release as `[year, month]` (`2026.7.0` → `[2026, 7]`). */
export type EsphomeRelease = readonly [year: number, month: number];

/**
 * The first release whose proxies hand the single Bluetooth subscription to the newest subscriber
 * (esphome/esphome#17423). Before it the first subscriber keeps it for the life of its session.
 */
export const TAKEOVER_SINCE: EsphomeRelease = [2026, 7];

/** The release of an ESPHome version string (`DeviceInfoResponse.esphome_version`); undefined when it is not one. */
export function esphomeRelease(version: string): EsphomeRelease | undefined {
  const match = /^(\d{4})\.(\d{1,2})(?:\.|$)/.exec(version.trim());
  return match === null ? undefined : [Number(match[1]), Number(match[2])];
}

/** True when `version` names a release before `release`; false for later ones and for versions we cannot read. */
export function isReleaseBefore(version: string, release: EsphomeRelease): boolean {
  const own = esphomeRelease(version);
  if (own === undefined) return false;
  return own[0] < release[0] || (own[0] === release[0] && own[1] < release[1]);
}

/**
 * Whether firmware of `version` may give our subscription to another client while our session stays up.
 * Versions we cannot read count as newer: then silence is still watched, and the proxy's data undoes a false alarm.
 */
export function mayLoseSubscription(version: string): boolean {
  return !isReleaseBefore(version, TAKEOVER_SINCE);
}

/**
 * The first release with a single Bluetooth subscriber (esphome#4924): before it every Bluetooth answer went to every
 * API client, and advertisements to every client that subscribed.
 */
export const SINGLE_SUBSCRIBER_SINCE: EsphomeRelease = [2023, 6];

/**
 * Whether a proxy sends its Bluetooth answers to every client (firmware before 2023.6) rather than to one subscriber.
 * Decided by the ESPHome version, or by the API minor (1.9 came with the single subscriber) when the version is unreadable.
 */
export function answersEveryClient(version: string, apiVersion: { major: number; minor: number }): boolean {
  if (esphomeRelease(version) !== undefined) return isReleaseBefore(version, SINGLE_SUBSCRIBER_SINCE);
  return apiVersion.major === 1 && apiVersion.minor < 9;
}
