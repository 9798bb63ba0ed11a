import { BluetoothProxyFeature } from '../../bluetooth/features.js';
import type { BluetoothProxy, ScannerState } from '../../bluetooth/proxy-client.js';
import { TimeoutError } from '../../errors.js';
import { type Command, flag, UsageError } from '../command.js';
import { EXIT } from '../output.js';
import { ADMIN_OPTIONS, adminTargets, consentTo, onEachProxy, reportResults } from '../proxy-admin.js';
import { ADMIN_HELP } from './clear-cache.js';

/** `esphome-ble scanner-mode [active|passive]`: show or switch the scanner mode of proxies. */
export const scannerModeCommand: Command = {
  name: 'scanner-mode',
  summary: 'Show or switch the scanner mode (active/passive) of one proxy or every proxy of the pool (switching asks first)',
  usage: 'esphome-ble scanner-mode [active|passive] [--host host[:port] | --proxy host[:port]...] [--yes] [options]',
  options: ADMIN_OPTIONS,
  help: [
    "Without a mode it shows each proxy's scanner state, mode and configured mode (it still holds the subscription",
    'for a moment: the firmware tells the mode to its subscriber only). active asks devices for scan responses',
    '(names, more service data) at the cost of their airtime and battery; passive only listens. The switch is',
    "the proxy's, so Home Assistant's scanner changes with it until the proxy restarts (it then uses its YAML",
    'mode): the command says so and asks on a terminal, and without one needs --yes.',
    '--json: {"action":"scannerMode","mode"|null,"proxies":[{"proxy","name","ok","detail":"running, active (configured',
    'passive)"|null,"error"|null}]}.',
    ADMIN_HELP,
  ].join('\n'),
  examples: [
    'esphome-ble scanner-mode --host 192.168.1.40',
    'esphome-ble scanner-mode passive --proxy 192.168.1.40 --proxy 192.168.1.41 --yes',
  ],
  async run(args, ctx) {
    const [modeArg, extra] = args.positionals;
    if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`);
    if (modeArg !== undefined && modeArg !== 'active' && modeArg !== 'passive') {
      throw new UsageError(`the mode must be active or passive, got ${JSON.stringify(modeArg)}`);
    }
    const targets = await adminTargets(args, ctx.signal);
    if (modeArg !== undefined) {
      const action = `switch the Bluetooth scanner to ${modeArg} (Home Assistant's scanner on these proxies changes too)`;
      if (!(await consentTo(ctx, args, action, targets))) {
        ctx.out.error('Nothing was changed.');
        return EXIT.ok;
      }
    }
    const results = await onEachProxy(ctx, args, targets, async (proxy, timeout) => {
      const state =
        modeArg === undefined
          ? await currentState(proxy, timeout, ctx.signal)
          : await proxy.setScannerMode(modeArg, { timeout, signal: ctx.signal });
      return `${state.state}, ${state.mode} (configured ${state.configuredMode})`;
    });
    return reportResults(ctx.out, flag(args, 'json'), { action: 'scannerMode', mode: modeArg ?? null }, results);
  },
};

/** The scanner state the proxy sends its subscriber on subscribe (waits briefly when it has not arrived yet). */
async function currentState(proxy: BluetoothProxy, timeout: number, signal: AbortSignal): Promise<ScannerState> {
  proxy.requireFeature(BluetoothProxyFeature.FEATURE_STATE_AND_MODE, 'scanner state');
  const known = proxy.scannerState;
  if (known !== undefined) return known;
  return new Promise((resolve, reject) => {
    const finish = (): void => {
      clearTimeout(timer);
      off();
      signal.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      finish();
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      finish();
      reject(new TimeoutError(`Waiting for the scanner state of ${proxy.label}`, timeout));
    }, timeout);
    const off = proxy.onScannerState((state) => {
      finish();
      resolve(state);
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
