import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { type SimulatedNodeOptions, startSimulatedProxy } from '../../src/fixture-server/fleet.js';
import { encodePlaintextFrame } from '../../src/frame/plaintext.js';
import { HelloRequest } from '../../src/gen/api_pb.js';
import { type ApiServer, type ApiSession, CLOSE_GRACE_MS } from '../../src/server/api-server.js';
import type { ApiServerEvent } from '../../src/server/server-events.js';
import { useClosers } from '../helpers/closers.js';
import { TEST_PSK } from '../helpers/fixture.js';
import { until } from '../helpers/wait.js';

const closers = useClosers();

const HELLO = encodePlaintextFrame(
  1,
  HelloRequest.toBinary(HelloRequest.create({ clientInfo: 'closing', apiVersionMajor: 1, apiVersionMinor: 15 })),
);
const EMPTY = new Uint8Array(0);

async function node(options: SimulatedNodeOptions): Promise<{ server: ApiServer; events: ApiServerEvent[]; sessions: ApiSession[] }> {
  const events: ApiServerEvent[] = [];
  const started = await startSimulatedProxy({ name: 'closing', advertise: false, onEvent: (event) => events.push(event), ...options });
  closers.push(() => started.server.close());
  const sessions: ApiSession[] = [];
  started.server.onSession((session) => sessions.push(session));
  return { server: started.server, events, sessions };
}

/** A socket that never reads and never closes on its own (destroyed after the test). */
async function deafSocket(port: number): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  socket.pause();
  closers.push(() => {
    socket.destroy();
  });
  await once(socket, 'connect');
  return socket;
}

describe('server/close', () => {
  it('api-server - sockets refused in the Noise handshake are released although the peer never reads nor closes', async () => {
    const { server, events, sessions } = await node({ psk: TEST_PSK, maxConnections: 50 });
    const port = server.address.port;
    const peers = await Promise.all(Array.from({ length: 30 }, () => deafSocket(port)));
    for (const peer of peers) peer.write(Uint8Array.of(1, 0xff, 0xff));
    await until(() => events.length === 30, 'every refusal');
    // The refusal went out (the kernel took it: 'finish'), then the socket was closed: nothing stays half-closed.
    await until(() => server.connections === 0, 'every server-side socket to close', 3_000);
    expect(sessions).toHaveLength(30);
    for (const session of sessions) expect(session.socket.destroyed).toBe(true);
    for (const event of events) expect(event).toMatchObject({ type: 'sessionDropped', reason: 'protocol' });
    // A peer that does read gets the firmware's reason before the FIN.
    const reader = netConnect({ host: '127.0.0.1', port });
    closers.push(() => {
      reader.destroy();
    });
    const received: Buffer[] = [];
    reader.on('data', (chunk: Buffer) => received.push(chunk));
    reader.write(Uint8Array.of(1, 0xff, 0xff));
    await once(reader, 'end');
    expect(Buffer.concat(received).toString('latin1')).toContain('Bad handshake packet len');
  });

  it('api-server - a fatal close whose bytes cannot leave keeps counting toward the cap, then is destroyed after the grace time', async () => {
    const big = 128 * 1024 * 1024;
    const { server, events, sessions } = await node({
      maxConnections: 1,
      // Nothing but the fault closes the session here: its queue may grow far past what loopback buffers take.
      backlog: { dropAt: big, resumeAt: big, pauseAt: big, closeAt: big },
      faults: { dropOnReceive: { type: 9 } },
    });
    const port = server.address.port;
    const deaf = await deafSocket(port);
    deaf.write(HELLO);
    await until(() => sessions[0]?.helloDone === true, 'Hello');
    const session = sessions[0]!;
    // 48 MiB the peer never reads: far more than the kernel takes on loopback (about 10 MB), so the stream never 'finish'es.
    session.writeRaw(new Uint8Array(48 * 1024 * 1024));
    deaf.write(encodePlaintextFrame(9, EMPTY));
    await until(() => session.isClosed, 'the fatal close');
    const closedAt = performance.now();
    expect(server.sessions.size).toBe(0);
    expect(server.connections).toBe(1);
    expect(session.socket.destroyed).toBe(false);
    // While its last bytes may still leave, the place is taken: a newcomer is refused, as at the cap.
    const newcomer = netConnect({ host: '127.0.0.1', port });
    newcomer.on('error', () => {});
    closers.push(() => {
      newcomer.destroy();
    });
    await once(newcomer, 'close');
    expect(events).toContainEqual(expect.objectContaining({ type: 'sessionRefused', limit: 1 }));
    await until(() => server.connections === 0, 'the grace time to end', CLOSE_GRACE_MS + 2_000);
    expect(performance.now() - closedAt).toBeGreaterThanOrEqual(CLOSE_GRACE_MS - 50);
    expect(session.socket.destroyed).toBe(true);
    const next = await deafSocket(port);
    next.write(HELLO);
    await until(() => sessions[1]?.helloDone === true, 'the next client to get in');
  });

  it('api-server - frames that came after the one that closed a session are not handled, and a session reports one drop', async () => {
    // DisconnectResponse closes the session: the 100 requests behind it in the same read are nobody's.
    const plain = await node({});
    const port = plain.server.address.port;
    const socket = await deafSocket(port);
    const frames = [HELLO, encodePlaintextFrame(6, EMPTY), ...Array.from({ length: 100 }, () => encodePlaintextFrame(11, EMPTY))];
    socket.write(Buffer.concat(frames));
    await until(() => plain.sessions[0]?.isClosed === true, 'the close');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(plain.sessions[0]!.messagesReceived).toBe(2);
    expect(plain.events).toEqual([]);
    // With a password, a request before authentication is a violation: reported once, the 99 behind it not seen.
    const guarded = await node({ password: 'pw' });
    const intercepted: number[] = [];
    guarded.server.plugins.push({ intercept: (_session, type) => intercepted.push(type) > 0 && false });
    const second = await deafSocket(guarded.server.address.port);
    second.write(Buffer.concat([HELLO, ...Array.from({ length: 100 }, () => encodePlaintextFrame(11, EMPTY))]));
    await until(() => guarded.sessions[0]?.isClosed === true, 'the violation');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(guarded.events).toHaveLength(1);
    expect(guarded.events[0]).toMatchObject({ type: 'sessionDropped', reason: 'protocol', message: 'message 11 before authentication' });
    expect(intercepted).toEqual([1, 11]);
  });
});
