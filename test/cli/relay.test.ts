import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatMac, parseMac } from '../../src/bluetooth/address.js';
import { BluetoothProxy } from '../../src/bluetooth/proxy-client.js';
import { relayTable } from '../../src/cli/commands/relay.js';
import type { Output } from '../../src/cli/output.js';
import { ApiConnection } from '../../src/connection/connection.js';
import {
  BluetoothConnectionsFreeResponse,
  BluetoothDeviceConnectionResponse,
  BluetoothDeviceRequest,
  BluetoothDeviceRequestType,
  BluetoothLERawAdvertisementsResponse,
  BluetoothScannerSetModeRequest,
  BluetoothScannerStateResponse,
} from '../../src/gen/api_pb.js';
import { CLI, type CliServer, cliEnv, runCliProcess, startCliServer } from '../helpers/cli.js';
import { OTHER_PSK, TEST_PSK } from '../helpers/fixture.js';
import { RawClient } from '../helpers/raw-client.js';
import { HOME_ASSISTANT } from '../helpers/relay.js';

const DEMO = 0xc0ffee000001;

let plain: CliServer;
let vault: CliServer;

const portOf = (server: CliServer): number => (server.lines[0] as { port: number }).port;

beforeAll(async () => {
  [plain, vault] = await Promise.all([
    startCliServer(['--port', '0', '--name', 'cli-relay-up']),
    startCliServer(['--port', '0', '--name', 'cli-relay-vault', '--psk', TEST_PSK]),
  ]);
});

afterAll(async () => {
  await Promise.all([plain?.stop(), vault?.stop()]);
});

/** `esphome-ble relay ...` with its JSON event lines as they come. */
function startRelay(args: string[]): {
  child: ChildProcess;
  events: Array<Record<string, unknown>>;
  next: (type: string, match?: (e: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>;
  /** SIGTERM (Ctrl-C's way out); resolves with the exit code. */
  stop: () => Promise<number | null>;
} {
  const child = spawn(process.execPath, [CLI, 'relay', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv() });
  const events: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    events.push(JSON.parse(line) as Record<string, unknown>);
    for (const wake of [...waiters]) wake();
  });
  const next = (type: string, match: (e: Record<string, unknown>) => boolean = () => true): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const find = (): boolean => {
        const hit = events.find((e) => e.event === type && match(e));
        if (hit === undefined) return false;
        clearTimeout(timer);
        waiters.delete(wake);
        resolve(hit);
        return true;
      };
      const wake = (): void => {
        find();
      };
      const timer = setTimeout(() => {
        waiters.delete(wake);
        reject(new Error(`no ${type} event; got ${JSON.stringify(events)}`));
      }, 5000);
      if (!find()) waiters.add(wake);
    });
  const stop = async (): Promise<number | null> => {
    const closed = once(child, 'close');
    child.kill('SIGTERM');
    const [code] = (await closed) as [number | null];
    return code;
  };
  return { child, events, next, stop };
}

describe('cli relay', () => {
  it('cli relay - --json prints listening, client, slot and stats events; SIGTERM exits 0', async () => {
    const relay = startRelay(['--proxy', `127.0.0.1:${portOf(plain)}`, '--listen', '127.0.0.1:0']);
    try {
      const listening = await relay.next('listening');
      expect(listening).toMatchObject({ event: 'listening', host: '127.0.0.1', name: 'cli-relay-up', encryption: 'plaintext' });
      const api = await ApiConnection.connect({ host: '127.0.0.1', port: listening.port as number, clientInfo: 'cli-test', timeout: 3000 });
      try {
        expect(api.deviceInfo.name).toBe('cli-relay-up');
        const proxy = await BluetoothProxy.attach(api, { timeout: 3000 });
        expect(await relay.next('clientConnected')).toMatchObject({ client: 1, clientInfo: 'cli-test' });
        const link = await proxy.connect(DEMO, { addressType: 1, timeout: 3000 });
        expect(await relay.next('slots', (e) => Object.keys(e.holders as object).length > 0)).toMatchObject({
          holders: { 'C0:FF:EE:00:00:01': 'client 1' },
        });
        await link.disconnect({ timeout: 3000 });
        await relay.next('stats', (e) => (e.advertisements as number) > 0);
      } finally {
        await api.close();
      }
      expect(await relay.next('clientDisconnected')).toMatchObject({ client: 1, releasedSlots: [] });
    } finally {
      expect(await relay.stop()).toBe(0);
    }
  });

  it('cli relay - two downstream clients (our ApiConnection and a raw-frame client) on one relay in front of `esphome-ble serve`: both hear every advertiser, slots are shared', async () => {
    const serve = await startCliServer(['--port', '0', '--name', 'cli-relay-proof', '--profile', 'living-room', '--slots', '2']);
    const relay = startRelay(['--proxy', `127.0.0.1:${portOf(serve)}`]);
    const sockets: RawClient[] = [];
    let api: ApiConnection | undefined;
    try {
      const devices = (serve.lines[0] as { devices: Array<{ mac: string; addressType: number; connectable: boolean }> }).devices;
      const [first, second] = devices.filter((d) => d.connectable);
      const port = (await relay.next('listening')).port as number;
      api = await ApiConnection.connect({ host: '127.0.0.1', port, clientInfo: 'cli-proof-ours', timeout: 3000 });
      const proxy = await BluetoothProxy.attach(api, { timeout: 3000 });
      const ourHeard = new Set<string>();
      proxy.onAdvertisement((ad) => ourHeard.add(ad.mac));
      // Another host than our client's (127.0.0.1): the relay's quota is per client address.
      const raw = await RawClient.connect(port, { localAddress: HOME_ASSISTANT, track: (client) => sockets.push(client) });
      const rawHeard = (): Set<string> =>
        new Set(raw.all(BluetoothLERawAdvertisementsResponse).flatMap((m) => m.advertisements.map((a) => formatMac(a.address))));
      // Both hear every advertiser of the proxy, each through its own session on the one subscription.
      const every = devices.map((d) => d.mac).sort();
      // The slowest advertiser of the profile sends every 2 s: allow several of its intervals on a loaded machine.
      await expect.poll(() => [...ourHeard].sort(), { timeout: 8000 }).toEqual(every);
      await expect.poll(() => [...rawHeard()].sort(), { timeout: 8000 }).toEqual(every);

      // Slots shared: each takes one of the two and sees only its own, as allocated and in the limit.
      const ours = await proxy.connect(parseMac(first!.mac), { addressType: first!.addressType, timeout: 3000 });
      await raw.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1);
      const mark = raw.received.length;
      raw.send(BluetoothDeviceRequest, {
        address: parseMac(second!.mac),
        requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
        hasAddressType: true,
        addressType: second!.addressType,
      });
      await raw.next(BluetoothDeviceConnectionResponse, (m) => m.address === parseMac(second!.mac) && m.connected, mark, 3000);
      await expect.poll(() => proxy.slots, { timeout: 3000 }).toEqual({ free: 0, limit: 1, allocated: [parseMac(first!.mac)] });
      // Full: a third connect gets the out-of-slots answer at once.
      const third = await proxy.connect(parseMac(devices.find((d) => !d.connectable)!.mac), { timeout: 3000 }).catch((e: unknown) => e);
      expect(third).toMatchObject({ reason: 0x100, failureClass: 'outOfSlots' });
      // The relay's own account: who holds what.
      expect(await relay.next('slots', (e) => Object.keys(e.holders as object).length === 2)).toMatchObject({
        free: 0,
        holders: { [first!.mac]: 'client 1', [second!.mac]: 'client 2' },
      });
      // Released: our link's slot is free again (the default quota, all but one of the two, keeps the raw client
      // at its one), and the raw client's release frees its own.
      await ours.disconnect({ timeout: 3000 });
      await expect.poll(() => proxy.slots, { timeout: 3000 }).toEqual({ free: 1, limit: 1, allocated: [] });
      const released = raw.received.length;
      raw.send(BluetoothDeviceRequest, { address: parseMac(second!.mac), requestType: BluetoothDeviceRequestType.DISCONNECT });
      await raw.next(BluetoothConnectionsFreeResponse, (m) => m.free === 1 && m.allocated.length === 0, released, 3000);
      expect(await relay.next('slots', (e) => e.free === 2)).toMatchObject({ free: 2, holders: {} });
    } finally {
      for (const socket of sockets) socket.close();
      await api?.close();
      await relay.stop();
      await serve.stop();
    }
  });

  it('cli relay - a Noise upstream with its key, a Noise listener with the relay key; --duration ends the run', async () => {
    const relay = startRelay([
      '--proxy',
      `127.0.0.1:${portOf(vault)}`,
      '--psk',
      TEST_PSK,
      '--downstream-psk',
      OTHER_PSK,
      '--duration',
      '1.5',
    ]);
    const listening = await relay.next('listening');
    expect(listening).toMatchObject({ name: 'cli-relay-vault', encryption: 'noise' });
    const api = await ApiConnection.connect({
      host: '127.0.0.1',
      port: listening.port as number,
      psk: OTHER_PSK,
      expectedName: 'cli-relay-vault',
      timeout: 3000,
    });
    await api.close();
    const [code] = (await once(relay.child, 'close')) as [number | null];
    expect(code).toBe(0);
  });

  it('cli relay - --password logs in to a password-protected proxy (before 2026.1); a wrong one exits 3 with its code', async () => {
    const locked = await startCliServer(['--port', '0', '--name', 'cli-relay-locked', '--password', 'hunter2', '--firmware', '2024.10']);
    try {
      const relay = startRelay(['--proxy', `127.0.0.1:${portOf(locked)}`, '--password', 'hunter2']);
      try {
        expect(await relay.next('listening')).toMatchObject({ name: 'cli-relay-locked' });
        expect(await relay.next('upstreamUp')).toMatchObject({ esphomeVersion: '2024.10.3' });
      } finally {
        await relay.stop();
      }
      const wrong = await runCliProcess(['relay', '--proxy', `127.0.0.1:${portOf(locked)}`, '--password', 'nope', '--json']);
      expect(wrong.code).toBe(3);
      expect(wrong.stdout).toContain('"code":"ESPAPI_ERR_INVALID_PASSWORD"');
      const count = await runCliProcess([
        'relay',
        '--proxy',
        '127.0.0.1:1',
        '--proxy',
        '127.0.0.1:2',
        '--password',
        'a',
        '--password',
        'b',
        '--password',
        'c',
      ]);
      expect(count.code).toBe(2);
      expect(count.stderr).toContain('--password');
    } finally {
      await locked.stop();
    }
  });

  it('cli relay - --slots-per-client, --slots-for and --allow-scanner-mode none: a second link and a mode change are refused as the firmware would', async () => {
    const relay = startRelay([
      '--proxy',
      `127.0.0.1:${portOf(plain)}`,
      '--slots-per-client',
      '1',
      '--slots-for',
      `${HOME_ASSISTANT}=all`,
      '--allow-scanner-mode',
      'none',
    ]);
    const sockets: RawClient[] = [];
    try {
      const listening = await relay.next('listening');
      const raw = await RawClient.connect(listening.port as number, { track: (c) => sockets.push(c) });
      // One slot of the three for this client: the report says so, and adds up.
      expect(raw.all(BluetoothConnectionsFreeResponse).at(-1)).toEqual(BluetoothConnectionsFreeResponse.create({ free: 1, limit: 1 }));
      const state = await raw.next(BluetoothScannerStateResponse);
      const mark = raw.received.length;
      raw.send(BluetoothScannerSetModeRequest, { mode: state.mode === 1 ? 0 : 1 });
      expect(await raw.next(BluetoothScannerStateResponse, () => true, mark)).toEqual(state);
      raw.send(BluetoothDeviceRequest, {
        address: DEMO,
        requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
        hasAddressType: true,
        addressType: 1,
      });
      await raw.next(BluetoothDeviceConnectionResponse, (m) => m.address === DEMO && m.connected, mark, 3000);
      const other = 0xc0ffee0000ff;
      raw.send(BluetoothDeviceRequest, {
        address: other,
        requestType: BluetoothDeviceRequestType.CONNECT_V3_WITHOUT_CACHE,
        hasAddressType: true,
      });
      expect(await raw.next(BluetoothDeviceConnectionResponse, (m) => m.address === other, mark)).toMatchObject({
        connected: false,
        error: 0x100,
      });
      // Home Assistant's address has no quota: it is shown both slots left.
      const ha = await RawClient.connect(listening.port as number, { localAddress: HOME_ASSISTANT, track: (c) => sockets.push(c) });
      expect(ha.all(BluetoothConnectionsFreeResponse).at(-1)).toEqual(BluetoothConnectionsFreeResponse.create({ free: 2, limit: 2 }));
    } finally {
      for (const socket of sockets) socket.close();
      await relay.stop();
    }
  });

  it('cli relay - bad --slots-per-client and --allow-* values exit 2 naming the flag', async () => {
    for (const [flagName, value] of [
      ['--slots-per-client', '0'],
      ['--slots-per-client', 'two'],
      ['--slots-for', '127.0.0.2'],
      ['--slots-for', 'kitchen.local=1'],
      ['--slots-for', '127.0.0.2=0'],
      ['--allow-unpair', 'kitchen.local'],
      ['--allow-clear-cache', '10.0.0.0/40'],
      ['--allow-scanner-mode', 'none,127.0.0.1'],
    ] as const) {
      const result = await runCliProcess(['relay', '--proxy', '127.0.0.1:1', flagName, value]);
      expect(result.code, `${flagName} ${value}`).toBe(2);
      expect(result.stderr).toContain(flagName);
    }
  });

  it('cli relay - a proxy that is down delays only its own listener; --timeout on the first connects exits 4', async () => {
    const result = await runCliProcess([
      'relay',
      '--proxy',
      `127.0.0.1:${portOf(plain)}`,
      '--proxy',
      '127.0.0.1:1',
      '--json',
      '--duration',
      // Past the first stats event (one a second).
      '1.6',
    ]);
    expect(result.code, result.stderr).toBe(0);
    // The real-home note, at the start and on stderr (stdout stays JSON lines): it names every proxy.
    expect(result.stderr).toMatch(
      new RegExp(
        `^note the relay holds the Bluetooth subscription of 127\\.0\\.0\\.1:${portOf(plain)}, 127\\.0\\.0\\.1:1 while it runs: on ESPHome 2026\\.7\\+ \\(newest wins\\) it takes it from Home Assistant`,
        'm',
      ),
    );
    expect(result.stderr).toContain('takes it back, with backoff, whenever Home Assistant subscribes again');
    const events = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(events.filter((e) => e.event === 'listening').map((e) => e.name)).toEqual(['cli-relay-up']);
    expect(events.some((e) => e.event === 'upstreamDown' && e.proxy === '127.0.0.1:1')).toBe(true);
    // Every stats event carries the pool's per-proxy record: the live upstream subscribed, the dead one offline with its codes.
    const last = (proxy: string): Record<string, unknown> =>
      events.filter((e) => e.event === 'stats' && e.proxy === proxy).at(-1)?.diagnostics as Record<string, unknown>;
    expect(last(`127.0.0.1:${portOf(plain)}`)).toMatchObject({
      state: 'online',
      subscription: { state: 'subscribed' },
      slots: { free: 3, limit: 3, leases: 0, owned: [] },
      apiVersion: '1.15',
      lastErrors: [],
    });
    expect(last('127.0.0.1:1')).toMatchObject({ state: 'offline', subscription: { state: 'none' } });
    expect(last('127.0.0.1:1').slots).toBeUndefined(); // no slot report yet
    expect((last('127.0.0.1:1').lastErrors as Array<{ code: string }>)[0]).toMatchObject({ code: 'ESPAPI_ERR_CONNECT' });
    const timedOut = await runCliProcess(['relay', '--proxy', '127.0.0.1:1', '--timeout', '300', '--json']);
    expect(timedOut.code).toBe(4);
    expect(timedOut.stdout).toContain('"code":"ESPAPI_ERR_TIMEOUT"');
  });

  it('cli relay - usage errors exit 2, a wrong upstream key exits 3 with its code', async () => {
    const none = await runCliProcess(['relay']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--proxy');
    const keys = await runCliProcess([
      'relay',
      '--proxy',
      '127.0.0.1:1',
      '--proxy',
      '127.0.0.1:2',
      '--psk',
      TEST_PSK,
      '--psk',
      TEST_PSK,
      '--psk',
      TEST_PSK,
    ]);
    expect(keys.code).toBe(2);
    const listen = await runCliProcess(['relay', '--proxy', '127.0.0.1:1', '--listen', 'nowhere']);
    expect(listen.code).toBe(2);
    const wrong = await runCliProcess(['relay', '--proxy', `127.0.0.1:${portOf(vault)}`, '--psk', OTHER_PSK, '--json']);
    expect(wrong.code).toBe(3);
    expect(wrong.stdout).toContain('"code":"ESPAPI_ERR_INVALID_KEY"');
  });

  it('cli relay - without --json, the listening line and the table of upstream, listener, slots and clients', async () => {
    const result = await runCliProcess(['relay', '--proxy', `127.0.0.1:${portOf(plain)}`, '--duration', '0.8']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/relaying 127\.0\.0\.1:\d+ as cli-relay-up \([0-9A-F:]{17}\) on 127\.0\.0\.1:\d+ \(plaintext\)/);
    expect(result.stdout).toMatch(/proxy\s+upstream\s+state\s+subscription\s+listening\s+free\/limit\s+clients\s+ads\/s\s+last error/);
    expect(result.stdout).toMatch(
      /cli-relay-up\s+127\.0\.0\.1:\d+\s+connected\s+subscribed\s+127\.0\.0\.1:\d+ \(plaintext\)\s+3\/3\s+0\s+\d+\s+-/,
    );
    expect(result.stdout).toContain('no downstream clients');
  });

  it('cli relay - the table lists each client with the slots it holds, and the in-process links', () => {
    const out: Output = { isTty: false, line: () => {}, error: () => {}, json: () => {} };
    const text = relayTable(out, {
      proxies: [
        {
          id: '10.0.0.5:6053',
          upstream: {
            host: '10.0.0.5',
            port: 6053,
            state: 'disconnected',
            name: 'kitchen',
            esphomeVersion: '2026.8.0',
            encrypted: true,
            lastError: 'refused',
            diagnostics: {
              id: '10.0.0.5:6053',
              host: '10.0.0.5',
              port: 6053,
              name: undefined,
              esphomeVersion: undefined,
              apiVersion: undefined,
              state: 'offline',
              since: 0,
              features: [],
              advertisementOnly: false,
              slots: undefined,
              subscription: { state: 'none', since: 0, confirmed: false },
              adsPerSecond: 0,
              devicesHeard: undefined,
              lastErrors: [
                { code: 'ESPAPI_ERR_TIMEOUT', message: 'timed out', at: 0 },
                { code: 'ESPAPI_ERR_CONNECT', message: 'refused', at: 1 },
              ],
            },
          },
          listen: { host: '0.0.0.0', port: 6053, encryption: 'noise' },
          slots: { free: 0, limit: 3, local: ['C0:FF:EE:00:00:03'] },
          clients: [
            {
              id: 1,
              remote: '10.0.0.2:50000',
              clientInfo: 'Home Assistant 2026.11',
              apiVersion: '1.14',
              subscribed: true,
              legacyAdvertisements: false,
              droppedAdvertisements: 0,
              slots: ['C0:FF:EE:00:00:01', 'C0:FF:EE:00:00:02'],
            },
            {
              id: 2,
              remote: '127.0.0.1:50001',
              clientInfo: 'old\u0007tool',
              apiVersion: '0.0',
              subscribed: true,
              legacyAdvertisements: true,
              droppedAdvertisements: 1234,
              slots: [],
            },
          ],
          advertisements: 1234,
          adsPerSecond: 42,
        },
      ],
    });
    expect(text).toMatch(
      /kitchen\s+10\.0\.0\.5:6053\s+disconnected: refused\s+none\s+0\.0\.0\.0:6053 \(noise\)\s+0\/3\s+2\s+42\s+ESPAPI_ERR_CONNECT/,
    );
    expect(text).toMatch(/kitchen\s+#1\s+10\.0\.0\.2:50000\s+Home Assistant 2026\.11\s+yes\s+C0:FF:EE:00:00:01, C0:FF:EE:00:00:02/);
    expect(text).toMatch(/#2\s+127\.0\.0\.1:50001\s+old\uFFFDtool\s+yes \(legacy\)\s+-\s+1234/);
    expect(text).toMatch(/client info\s+subscribed\s+slots\s+ads dropped/);
    expect(text).toContain('in-process links: 10.0.0.5:6053: C0:FF:EE:00:00:03');
  });

  it('cli relay - the help names every option', async () => {
    const help = await runCliProcess(['relay', '--help']);
    expect(help.code).toBe(0);
    for (const option of ['--proxy', '--psk', '--password', '--listen', '--downstream-psk', '--json'])
      expect(help.stdout).toContain(option);
    const top = await runCliProcess(['--help']);
    expect(top.stdout).toMatch(/relay\s+Share Bluetooth proxies/);
  });
});
