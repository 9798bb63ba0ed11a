import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ApiConnection } from '../../src/connection/connection.js';
import { startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { RelayServer } from '../../src/relay/relay-server.js';
import type { RelayStatus } from '../../src/relay/relay-status.js';
import type { ApiServerEvent } from '../../src/server/server-events.js';
import { runCliProcess, startCliServer } from '../helpers/cli.js';
import { useClosers } from '../helpers/closers.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { openSocket, rawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

const closers = useClosers();

/** A connection that never says anything. */
const idle = (port: number): Promise<Socket> => openSocket(closers, port);

async function keyed(port: number): Promise<ApiConnection> {
  const api = await ApiConnection.connect({ host: '127.0.0.1', port, psk: TEST_PSK, timeout: 3_000 });
  closers.push(() => api.destroy());
  return api;
}

describe('server/eviction', () => {
  it('api-server - with evictUnauthenticated a keyed client gets in past idle sockets (the oldest goes); a full house of authenticated clients still refuses', async () => {
    const events: ApiServerEvent[] = [];
    const node = await startSimulatedProxy({
      name: 'evicting',
      psk: TEST_PSK,
      maxConnections: 3,
      evictUnauthenticated: true,
      onEvent: (event) => events.push(event),
    });
    closers.push(() => node.server.close());
    const port = node.server.address.port;
    const idlers = [await idle(port), await idle(port), await idle(port)];
    const oldestGone = once(idlers[0]!, 'close');
    await keyed(port);
    await oldestGone;
    expect(idlers[1]!.destroyed).toBe(false);
    expect(events).toEqual([
      expect.objectContaining({ type: 'sessionDropped', reason: 'evicted', message: expect.stringMatching(/oldest not authenticated/) }),
    ]);
    await keyed(port);
    await keyed(port);
    expect(events.filter((e) => e.type === 'sessionDropped')).toHaveLength(3);
    // Every place authenticated: nobody to evict, the newcomer is refused as by the firmware.
    const refused = await idle(port);
    await once(refused, 'close');
    expect(events.at(-1)).toMatchObject({ type: 'sessionRefused', reason: 'maxConnections', limit: 3 });
  });

  it('relay - evicts by default: idle sockets that fill a listener do not keep a client out', async () => {
    const upstream = await startSimulatedProxy({ name: 'evict-upstream', advertise: false });
    closers.push(() => upstream.server.close());
    const relay = new RelayServer({ proxies: [{ host: '127.0.0.1', port: upstream.server.address.port }], maxClients: 2 });
    const events: RelayStatus[] = [];
    const watching = (async () => {
      for await (const event of relay.status()) events.push(event);
    })();
    closers.push(() => watching);
    closers.push(() => relay.close());
    const [listening] = await relay.start({ timeout: 3_000 });
    const port = listening!.port;
    await idle(port);
    await idle(port);
    await rawClient(closers, port, { subscribe: null });
    await until(() => events.some((e) => e.type === 'clientDropped'), 'the eviction');
    // The idle socket never said Hello: it was never a numbered client.
    expect(events.find((e) => e.type === 'clientDropped')).toMatchObject({ reason: 'evicted', client: undefined });
    expect(events.some((e) => e.type === 'clientDisconnected')).toBe(false);
  });

  it('serve - --evict-unauthenticated lets a client in past an idle socket at --max-connections 1; without it the firmware refuses', async () => {
    for (const evict of [true, false]) {
      const serve = await startCliServer(['--port', '0', '--max-connections', '1', ...(evict ? ['--evict-unauthenticated'] : [])]);
      closers.push(() => serve.stop());
      const port = (serve.lines[0] as { port: number }).port;
      await idle(port);
      const info = await runCliProcess(['info', '--host', '127.0.0.1', '--port', String(port), '--timeout', '2000', '--json']);
      // Refused: the node closes the connection at once (exit 1, connection closed).
      expect(info.code).toBe(evict ? 0 : 1);
      const reason = evict ? 'evicted' : 'maxConnections';
      await until(() => serve.events.some((e) => (e as { reason?: string }).reason === reason), `a ${reason} line`);
    }
  });
});
