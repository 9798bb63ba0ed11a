import type { Command } from '../command.js';
import { ADMIN_OPTIONS, runDeviceChange } from '../proxy-admin.js';
import { ADMIN_HELP } from './clear-cache.js';

/** `esphome-ble unpair <MAC>`: delete the bond of a device on one proxy (--host) or on every proxy of the pool. */
export const unpairCommand: Command = {
  name: 'unpair',
  summary: "Remove a device's bond from one proxy or from every proxy of the pool (asks first: Home Assistant may rely on it)",
  usage: 'esphome-ble unpair <MAC> [--host host[:port] | --proxy host[:port]...] [--yes] [options]',
  options: ADMIN_OPTIONS,
  help: [
    "Deletes the bond (the keys of an earlier pairing) in the proxy's controller; works without a link. A device",
    'that needs its bond (a lock, some sensors) then has to pair again, for Home Assistant too: the command says',
    'so and asks on a terminal, and without one needs --yes (exit 2, nothing changed).',
    '--json: {"action":"unpair","mac","proxies":[{"proxy","name","ok","detail"|null,"error":{"code","message"}|null}]}.',
    ADMIN_HELP,
  ].join('\n'),
  examples: [
    'esphome-ble unpair A4:C1:38:00:00:01 --host 192.168.1.40',
    'esphome-ble unpair A4:C1:38:00:00:01 --proxy 192.168.1.40 --yes --json',
  ],
  run: (args, ctx) =>
    runDeviceChange(args, ctx, {
      name: 'unpair',
      action: (mac) => `remove the bond of ${mac} (a device that relies on it, for Home Assistant too, has to pair again)`,
      run: async (proxy, address, options) => {
        await proxy.unpair(address, options);
        return 'bond removed';
      },
    }),
};
