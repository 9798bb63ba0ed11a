import { describe, expect, it } from 'vitest';
import { ReconnectingConnection, type ReconnectStatus } from '../../src/connection/reconnect.js';
import { InvalidEncryptionKeyError } from '../../src/errors.js';
import { closeAfter, useClosers } from '../helpers/closers.js';
import { OTHER_PSK, startFixture, TEST_PSK } from '../helpers/fixture.js';
import { AT_ONCE_MS, LONG_WAIT_MS } from '../helpers/wait.js';

const closers = useClosers();

const FAST = { initialDelay: 30, maxDelay: 100, expectedDisconnectDelay: 40 };

describe('reconnect', () => {
  it('reconnect - comes back after the device drops the connection', async () => {
    const server = await startFixture({ psk: TEST_PSK }, closers);
    const session = closeAfter(
      closers,
      new ReconnectingConnection({ host: '127.0.0.1', port: server.address.port, psk: TEST_PSK, backoff: FAST }).start(),
    );
    const first = await session.waitConnected({ timeout: 2000 });
    for (const s of server.sessions) s.close();
    await first.closed();
    const second = await session.waitConnected({ timeout: 2000 });
    expect(second).not.toBe(first);
    expect(second.hello.name).toBe('esphome-ble-fixture');
  });

  it('reconnect - stops for good on a wrong key instead of retrying', async () => {
    const server = await startFixture({ psk: TEST_PSK }, closers);
    const session = closeAfter(
      closers,
      new ReconnectingConnection({ host: '127.0.0.1', port: server.address.port, psk: OTHER_PSK, backoff: FAST }),
    );
    const events: ReconnectStatus['type'][] = [];
    const done = (async () => {
      for await (const status of session.status()) events.push(status.type);
    })();
    session.start();
    await expect(session.waitConnected({ timeout: 2000 })).rejects.toBeInstanceOf(InvalidEncryptionKeyError);
    await done;
    expect(events).toEqual(['connecting', 'stopped']);
    expect(session.stopped).toBe(true);
  });

  it('reconnect - close() while a connect is still in onConnect closes that session too and returns', async () => {
    const server = await startFixture({}, closers);
    let release: () => void = () => {};
    const inOnConnect = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered = false;
    const session = closeAfter(
      closers,
      new ReconnectingConnection({
        host: '127.0.0.1',
        port: server.address.port,
        backoff: FAST,
        onConnect: async () => {
          entered = true;
          await inOnConnect;
        },
      }).start(),
    );
    await expect.poll(() => entered).toBe(true);
    const closing = session.close();
    release();
    await closing;
    // The session that connected during close() was said goodbye to, not left open for a close() that never returned.
    await expect.poll(() => [...server.sessions].filter((s) => s.state !== 'closed').length).toBe(0);
    expect(session.current).toBeUndefined();
  });

  it('reconnect - retryNow skips the backoff wait', async () => {
    const server = await startFixture({}, closers);
    const port = server.address.port;
    await server.close();
    const session = closeAfter(
      closers,
      new ReconnectingConnection({ host: '127.0.0.1', port, backoff: { initialDelay: 60_000, maxDelay: 60_000 } }).start(),
    );
    const statuses = session.status();
    for await (const status of statuses) if (status.type === 'disconnected') break;
    await startFixture({ port }, closers);
    const started = performance.now();
    session.retryNow();
    await session.waitConnected({ timeout: LONG_WAIT_MS });
    // The backoff it skipped is 60 s.
    expect(performance.now() - started).toBeLessThan(AT_ONCE_MS);
  });

  it('reconnect - a device-announced disconnect waits the expected-disconnect pause', async () => {
    const server = await startFixture({}, closers);
    const session = closeAfter(
      closers,
      new ReconnectingConnection({ host: '127.0.0.1', port: server.address.port, backoff: FAST }).start(),
    );
    const connection = await session.waitConnected({ timeout: 2000 });
    const statuses = session.status();
    for (const s of server.sessions) s.disconnectFromDevice();
    await connection.closed();
    for await (const status of statuses) {
      if (status.type === 'disconnected') {
        expect(status.retryInMs).toBe(40);
        break;
      }
    }
    await session.waitConnected({ timeout: 2000 });
  });
});
