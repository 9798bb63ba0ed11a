import { BluetoothProxyFeature } from '../../bluetooth/features.js';
import { answersEveryClient } from '../../bluetooth/firmware-release.js';
import type { BluetoothProxy, ScannerState } from '../../bluetooth/proxy-client.js';
import type { ApiConnection } from '../../connection/connection.js';
import { FeatureMissingError, TimeoutError } from '../../errors.js';
import { type Command, type CommandArgs, type CommandContext, flag, UsageError } from '../command.js';
import { EXIT } from '../output.js';
import { ADMIN_OPTIONS, adminTargets, type ConnectedProxy, consentTo, costOf, labels, onEachProxy, reportResults } from '../proxy-admin.js';
import { requireConsent } from '../real-home.js';
import { option } from '../vocabulary.js';
import { ADMIN_HELP } from './clear-cache.js';

/** `esphome-ble scanner-mode [active|passive]`: show or switch the scanner mode of proxies. */
export const scannerModeCommand: Command = {
  name: 'scanner-mode',
  summary:
    'Show or switch the scanner mode (active/passive) of one proxy or every proxy of the pool (asks first: both take the subscription)',
  usage: 'esphome-ble scanner-mode [active|passive] [--host host[:port] | --proxy host[:port]...] [--yes] [options]',
  options: {
    ...ADMIN_OPTIONS,
    subscribe: option('subscribe', {
      description: "Without a mode: take each proxy's Bluetooth subscription for a moment to read the mode (--yes too)",
      default: 'off: ask on a terminal, refuse (exit 2) without one; not needed before 2023.6',
    }),
  },
  help: [
    "Without a mode it shows each proxy's scanner state, mode and configured mode. The firmware tells the mode to",
    'its Bluetooth subscriber only (on subscribe and on every change; there is no request for it), so reading it',
    'takes the subscription for a moment: the command connects first (taking nothing), then asks on a terminal',
    "what that costs on each proxy's firmware, and without one needs --subscribe (or --yes); firmware before 2023.6",
    'serves every client and is read without asking; through a relay (it shares its subscription, taking nothing',
    'from Home Assistant) pass --subscribe. A proxy without scanner state (FEATURE_STATE_AND_MODE) is refused',
    'before anything is taken. active asks devices for scan responses',
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
    if (modeArg !== undefined && flag(args, 'subscribe')) {
      throw new UsageError('--subscribe goes with showing the mode; a switch asks with --yes');
    }
    const targets = await adminTargets(args, ctx.signal);
    const action = `switch the Bluetooth scanner to ${modeArg} (Home Assistant's scanner on these proxies changes too)`;
    const results = await onEachProxy(ctx, args, targets, {
      check: scannerStateMissing,
      consent: (proxies) => (modeArg === undefined ? consentToRead(ctx, args, proxies) : consentTo(ctx, args, action, proxies)),
      run: async (proxy, timeout) => {
        const state =
          modeArg === undefined
            ? await currentState(proxy, timeout, ctx.signal)
            : await proxy.setScannerMode(modeArg, { timeout, signal: ctx.signal });
        return `${state.state}, ${state.mode} (configured ${state.configuredMode})`;
      },
    });
    if (results === 'declined') {
      ctx.out.error(modeArg === undefined ? 'Nothing was taken.' : 'Nothing was changed.');
      return EXIT.ok;
    }
    return reportResults(ctx.out, flag(args, 'json'), { action: 'scannerMode', mode: modeArg ?? null }, results);
  },
};

/** Refuses, before anything is taken, a proxy whose firmware reports no scanner state (no FEATURE_STATE_AND_MODE). */
function scannerStateMissing(api: ApiConnection): Error | undefined {
  const flags = api.deviceInfo.bluetoothProxyFeatureFlags;
  const feature = BluetoothProxyFeature.FEATURE_STATE_AND_MODE;
  return (flags & feature) === feature ? undefined : new FeatureMissingError(api.label, 'scanner state');
}

/**
 * Reading the mode takes the subscription: asked for like a change (--subscribe or --yes, or a yes on a terminal),
 * except on firmware before 2023.6, which sends every client the Bluetooth messages and so takes nothing.
 */
async function consentToRead(ctx: CommandContext, args: CommandArgs, proxies: readonly ConnectedProxy[]): Promise<boolean> {
  const costly = proxies.filter(
    (p) => !answersEveryClient(p.holding.esphomeVersion ?? '', p.holding.apiVersion ?? { major: 1, minor: 15 }),
  );
  if (costly.length === 0) return true;
  const yes = flag(args, 'yes');
  const action = `read the scanner mode of ${labels(costly)}, which the firmware tells its Bluetooth subscriber only; ${costOf(costly)}`;
  return requireConsent(ctx, { action, flag: yes ? '--yes' : '--subscribe', given: yes || flag(args, 'subscribe') });
}

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
