// Shared pieces of the hostile run.
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** Imports a module of the build under test (`npm run build` first). */
export const loadDist = (file) => import(pathToFileURL(resolve(ROOT, 'dist', file)).href);
/** The key of the Noise targets (spec Appendix A's). */
export const PSK = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
/** The default profile's demo peripheral: connectable, its status characteristic reads 'ready'. */
export const DEMO = { address: 0xc0ffee000001, addressType: 1, statusHandle: 12 };
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const MiB = 1024 * 1024;
export const KiB = 1024;

/** Formats bytes as MB with one decimal (signed when asked). */
export function mb(bytes, signed = false) {
  const value = (bytes / 1e6).toFixed(1);
  return signed && bytes >= 0 ? `+${value}` : value;
}

/** Formats bytes as whole KiB. */
export function kib(bytes) {
  return String(Math.round(bytes / 1024));
}
