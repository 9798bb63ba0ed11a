import type { Command } from '../command.js';
import { ADMIN_OPTIONS, runDeviceChange } from '../proxy-admin.js';

/** Notes shared by the commands that change something on proxies. */
export const ADMIN_HELP = [
  "The proxy answers these requests only to its Bluetooth subscriber (spec §6.3), so the command holds each proxy's",
  'subscription while it runs: it connects first (taking nothing), then asks, and the question (or, without a',
  "terminal, the refusal) says what holding the subscription costs Home Assistant on each proxy's firmware; with",
  '--yes a note on stderr says what is done before it is done. Through a relay (--host of a relay listener) it',
  "shares the relay's subscription instead, and the relay's --allow-* rules decide. One row per proxy; exit 0",
  'when every proxy did it, 1 otherwise, 3 when every proxy refused the key; a declined question exits 0 having',
  'changed nothing. With neither --host nor --proxy the proxies mDNS finds are used.',
].join('\n');

/** `esphome-ble clear-cache <MAC>`: clear the proxy's stored GATT services of a device. */
export const clearCacheCommand: Command = {
  name: 'clear-cache',
  summary: "Clear a device's GATT services cached on one proxy or on every proxy of the pool (asks first)",
  usage: 'esphome-ble clear-cache <MAC> [--host host[:port] | --proxy host[:port]...] [--yes] [options]',
  options: ADMIN_OPTIONS,
  help: [
    "Clears the proxy's own cache of the device's services (CLEAR_CACHE), e.g. after the device's firmware changed",
    'its GATT table. Every client of the proxy, Home Assistant included, then has the services discovered again on',
    'its next connect: the command says so and asks on a terminal, and without one needs --yes.',
    '--json: {"action":"clearCache","mac","proxies":[{"proxy","name","ok","detail"|null,"error"|null}]}.',
    ADMIN_HELP,
  ].join('\n'),
  examples: ['esphome-ble clear-cache C0:FF:EE:00:00:01 --host 192.168.1.40 --yes'],
  run: (args, ctx) =>
    runDeviceChange(args, ctx, {
      name: 'clearCache',
      action: (mac) => `clear the cached GATT services of ${mac} (every client's next connect discovers them again)`,
      run: async (proxy, address, options) => {
        await proxy.clearCache(address, options);
        return 'cache cleared';
      },
    }),
};
