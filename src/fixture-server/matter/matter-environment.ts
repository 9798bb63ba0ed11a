import { MatterEnvironmentError } from '../../errors.js';
import type { LoopbackNetwork, LoopbackNetworkOptions } from './loopback-network.js';
import { matterLogLevel } from './matter-peers.js';

/** How prepareMatterEnvironment() sets up matter.js in this process. */
export interface MatterEnvironmentOptions extends LoopbackNetworkOptions {
  /** matter.js log level (debug, info, notice, warn, error, fatal); default `error`. */
  logLevel?: string;
}

/** matter.js's process-wide switches (`@matter/nodejs/config`), as this project needs them. */
const CONFIG = {
  trapProcessSignals: false,
  trapUnhandledErrors: false,
  setProcessExitCodeOnError: false,
  loadProcessArgv: false,
  loadProcessEnv: false,
  loadConfigFile: false,
  initializeStorage: false,
  installNetwork: false,
} as const;

/**
 * Sets matter.js up for a process that must stay on loopback and leave the host alone, before anything loads
 * `@matter/main`: no signal handlers, exit codes, argv/env/config-file variables or files on disk (storage lives
 * in memory), the network is a LoopbackNetwork and mDNS is pinned to it (`mdns.networkInterface = lo`). Call it
 * first and load matter.js with `await import()` afterwards (a static import would run matter.js's environment
 * set-up before this). Returns the network; calling it again with the same `mdnsPort` and `mac` returns the same
 * one (and applies `logLevel`). Throws MatterEnvironmentError when matter.js was set up before it (its switches
 * can no longer change: signal handlers, files on disk) or when it already runs with another mdnsPort or mac,
 * and InvalidArgumentError for an unknown log level.
 */
export async function prepareMatterEnvironment(options: MatterEnvironmentOptions = {}): Promise<LoopbackNetwork> {
  const logLevel = matterLogLevel(options.logLevel ?? 'error', 'logLevel');
  const { config } = await import('@matter/nodejs/config');
  const switches = config as unknown as Record<keyof typeof CONFIG, boolean>;
  try {
    Object.assign(switches, CONFIG);
  } catch {
    // matter.js initialised already: fine only when it was with these switches (an earlier call of ours).
    const differ = Object.entries(CONFIG).filter(([name, value]) => switches[name as keyof typeof CONFIG] !== value);
    if (differ.length > 0) {
      throw new MatterEnvironmentError(
        `matter.js was loaded before prepareMatterEnvironment() and keeps ${differ.map(([name]) => `${name} = true`).join(', ')}: ` +
          'call prepareMatterEnvironment() before anything imports @matter/*, and load matter.js with await import() after it',
      );
    }
  }
  const matter = await import('@matter/main');
  const { LoopbackNetwork, LOOPBACK_INTERFACE } = await import('./loopback-network.js');
  matter.Logger.level = logLevel;
  const env = matter.Environment.default;
  const wanted = new LoopbackNetwork(options);
  if (env.has(matter.Network)) {
    const current = env.get(matter.Network) as Partial<LoopbackNetwork>;
    if (current.mdnsPort === wanted.mdnsPort && current.mac === wanted.mac) return current as LoopbackNetwork;
    throw new MatterEnvironmentError(
      current.mdnsPort === undefined
        ? 'matter.js already runs on another network in this process: call prepareMatterEnvironment() before it starts'
        : `matter.js in this process is already on loopback with mdnsPort ${current.mdnsPort} and mac ${current.mac}; ` +
            'its mDNS cannot move: prepare it once per process',
    );
  }
  env.set(matter.Network, wanted);
  env.vars.set('mdns.networkInterface', LOOPBACK_INTERFACE);
  env.get(matter.StorageService).factory = () => new matter.StorageBackendMemory();
  return wanted;
}
