import { once } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type SimulatedNodeOptions, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { AuthenticationRequest, AuthenticationResponse, PingRequest } from '../../src/gen/api_pb.js';
import type { ApiServer } from '../../src/server/api-server.js';
import type { ApiServerEvent } from '../../src/server/server-events.js';
import { useClosers } from '../helpers/closers.js';
import { type RawClient, rawClient } from '../helpers/raw-client.js';
import { sleep } from '../helpers/wait.js';

const closers = useClosers();
// Registered after useClosers(), so it runs before the clean-ups (vitest runs afterEach hooks last-in, first-out).
afterEach(() => {
  vi.useRealTimers();
});

async function node(options: SimulatedNodeOptions): Promise<{ server: ApiServer; events: ApiServerEvent[] }> {
  const events: ApiServerEvent[] = [];
  const started = await startSimulatedProxy({ name: 'keepalive', advertise: false, onEvent: (event) => events.push(event), ...options });
  closers.push(() => started.server.close());
  return { server: started.server, events };
}

const client = (port: number): Promise<RawClient> => rawClient(closers, port, { login: false, subscribe: null });

describe('server/keepalive', () => {
  it('api-server - a session past Hello but not logged in is not pinged (spec §5.6); the connect deadline drops it, as the firmware', async () => {
    const { server, events } = await node({ password: 'pw', keepaliveInterval: 50, handshakeTimeout: 600 });
    const port = server.address.port;
    const loggedIn = await client(port);
    loggedIn.send(AuthenticationRequest, { password: 'pw' });
    await loggedIn.next(AuthenticationResponse);
    loggedIn.answerPings = false;
    const waiting = await client(port);
    const closed = once(waiting.socket, 'close');
    // The authenticated session is pinged after 50 ms of silence and dropped after 125 ms.
    await loggedIn.next(PingRequest, () => true, 0, 1_000);
    await closed;
    expect(waiting.all(PingRequest)).toEqual([]);
    const reasons = events.map((e) => (e.type === 'sessionDropped' ? e.reason : e.type));
    expect(reasons.sort()).toEqual(['handshakeTimeout', 'keepalive']);
    expect(events.find((e) => e.type === 'sessionDropped' && e.reason === 'handshakeTimeout')).toMatchObject({
      message: expect.stringMatching(/not authenticated within 600 ms/),
    });
  });

  it('api-server - the keep-alive measures silence on the monotonic clock: a wall-clock jump drops nobody', async () => {
    const { server, events } = await node({ keepaliveInterval: 400 });
    const quiet = await client(server.address.port);
    quiet.answerPings = false;
    // An NTP step of an hour, forwards then back: the session was silent for milliseconds, not an hour.
    vi.setSystemTime(Date.now() + 3_600_000);
    await sleep(250);
    vi.setSystemTime(Date.now() - 7_200_000);
    await sleep(250);
    vi.useRealTimers();
    expect(events).toEqual([]);
    expect(quiet.socket.destroyed).toBe(false);
  });
});
