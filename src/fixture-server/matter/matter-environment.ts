import type { LoopbackNetwork, LoopbackNetworkOptions } from './loopback-network.js';

/** How prepareMatterEnvironment() sets up matter.js in this process. */
export interface MatterEnvironmentOptions extends LoopbackNetworkOptions {
  /** matter.js log level (debug, info, notice, warn, error, fatal); default `error`. */
  logLevel?: string;
}

/**
 * Sets matter.js up for a process that must stay on loopback and leave the host alone, before anything loads
 * `@matter/main`: no signal handlers, exit codes, argv/env/config-file variables or files on disk (storage lives
 * in memory), the network is a LoopbackNetwork and mDNS is pinned to it (`mdns.networkInterface = lo`). Call it
 * first and load matter.js with `await import()` afterwards (a static import would run matter.js's environment
 * set-up before this). Returns the network.
 */
export async function prepareMatterEnvironment(options: MatterEnvironmentOptions = {}): Promise<LoopbackNetwork> {
  const { config } = await import('@matter/nodejs/config');
  try {
    config.trapProcessSignals = false;
    config.trapUnhandledErrors = false;
    config.setProcessExitCodeOnError = false;
    config.loadProcessArgv = false;
    config.loadProcessEnv = false;
    config.loadConfigFile = false;
    config.initializeStorage = false;
    config.installNetwork = false;
  } catch {
    // matter.js was loaded before this ran: its environment exists already and keeps those defaults
  }
  const matter = await import('@matter/main');
  const { LoopbackNetwork, LOOPBACK_INTERFACE } = await import('./loopback-network.js');
  matter.Logger.level = options.logLevel ?? 'error';
  const env = matter.Environment.default;
  const network = new LoopbackNetwork(options);
  env.set(matter.Network, network);
  env.vars.set('mdns.networkInterface', LOOPBACK_INTERFACE);
  env.get(matter.StorageService).factory = () => new matter.StorageBackendMemory();
  return network;
}
