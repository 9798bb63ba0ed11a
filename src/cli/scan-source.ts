import type { Advertisement } from '../bluetooth/advertisement.js';
import { ConnectionClosedError } from '../errors.js';
import type { ProxyPool } from '../pool/proxy-pool.js';
import type { CommandArgs, CommandContext } from './command.js';
import { notOnlineText, openReadyPool, proxyLabels, proxyShortNames, usesPool } from './device-session.js';
import { Spinner } from './output.js';
import { runWithProxy, sanitize } from './single-proxy.js';

/** Where `scan` hears advertisements: one proxy (--host) or every proxy of the pool. */
export interface AdvertisementSource {
  /** Reports as they come; `proxy` is the pool id (undefined with --host). Returns an unsubscribe function. */
  onAdvertisement(listener: (ad: Advertisement, proxy: string | undefined) => void): () => void;
  /** `kitchen (127.0.0.1:6053)` or `3 proxies`. */
  readonly label: string;
  /** Short names of the pool's proxies by id (empty with --host). */
  names(): ReadonlyMap<string, string>;
  /** Rejects when the one proxy's session ends (never for the pool, whose proxies reconnect on their own). */
  readonly lost: Promise<Error>;
  /** For the status line: proxies asked, those online now, and why each other one is not. */
  tally(): { asked: number; used: number; failed: string[] };
  readonly pool: ProxyPool | undefined;
}

/** Opens the source of the command line, runs `fn` with it, and always closes it. */
export async function withAdvertisementSource(
  args: CommandArgs,
  ctx: CommandContext,
  fn: (source: AdvertisementSource) => Promise<number>,
): Promise<number> {
  if (!usesPool(args)) {
    return runWithProxy(args, ctx, ({ api, proxy }) =>
      fn({
        onAdvertisement: (listener) => proxy.onAdvertisement((ad) => listener(ad, undefined)),
        label: sanitize(proxy.label),
        names: () => new Map(),
        lost: api.closed().then((error) => error ?? new ConnectionClosedError(`API session to ${api.label} closed during the scan`)),
        tally: () => ({ asked: 1, used: 1, failed: [] }),
        pool: undefined,
      }),
    );
  }
  const spinner = new Spinner(ctx.out);
  const cli = await openReadyPool(args, ctx, spinner);
  const { pool } = cli;
  // Proxies that were online at any time during the run served it, at least in part.
  const served = new Set(
    pool
      .proxies()
      .filter((p) => p.online)
      .map((p) => p.id),
  );
  const off = pool.onAdvertisement((_ad, proxy) => served.add(proxy));
  try {
    const count = pool.proxies().length;
    return await fn({
      onAdvertisement: (listener) => pool.onAdvertisement((ad, proxy) => listener(ad, proxy)),
      label: `${count} prox${count === 1 ? 'y' : 'ies'}`,
      names: () => proxyShortNames(pool),
      lost: new Promise<Error>(() => {}),
      tally: () => {
        const proxies = pool.proxies();
        const labels = proxyLabels(pool);
        const failed = proxies
          .filter((p) => !p.online)
          .map((p) => `${sanitize(labels.get(p.id) ?? p.id)} ${notOnlineText(p)}${served.has(p.id) ? ' (it served part of the run)' : ''}`);
        return { asked: proxies.length, used: proxies.length - failed.length, failed };
      },
      pool,
    });
  } finally {
    off();
    spinner.stop();
    await cli.close();
  }
}
