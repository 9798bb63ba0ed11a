import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BluetoothProxy } from '../../../src/bluetooth/proxy-client.js';
import { ApiConnection } from '../../../src/connection/connection.js';
import { EspApiError } from '../../../src/errors.js';
import { encodePlaintextFrame } from '../../../src/frame/plaintext.js';
import { useClosers } from '../../helpers/closers.js';
import { startProxy } from '../../helpers/fleet.js';

const MSG_DEVICE_REQUEST = 68;
/** BluetoothDeviceRequest { address: 2^64 - 1, request_type: CONNECT_V3_WITHOUT_CACHE, has_address_type: true }. */
const CONNECT_TO_ADDRESS_2_64_MINUS_1 = Uint8Array.from([0x08, ...Array(9).fill(0xff), 0x01, 0x10, 0x05, 0x18, 0x01]);
/**
 * BluetoothDeviceRequest { address: 2^52 + 1, request_type: CONNECT_V3_WITHOUT_CACHE (tagged with wire type 4, which
 * protobuf-ts reads as the declared varint), has_address_type: true }: a GetServicesRequest cannot skip that tag.
 */
const CONNECT_TO_ADDRESS_2_52_PLUS_1 = Uint8Array.from([0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x08, 0x14, 0x05, 0x18, 0x01]);

const closers = useClosers();

describe('fixture server input', () => {
  it('api-server - a request that does not decode drops the session with a typed DECODE error', async () => {
    const errors: unknown[] = [];
    const node = await startProxy(closers, { advertise: false, onSessionError: (_session, error) => errors.push(error) });
    const socket = connect({ host: '127.0.0.1', port: node.server.address.port });
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.on('error', () => {});
    // HelloRequest whose client_info claims 100 bytes but carries 1.
    socket.write(encodePlaintextFrame(1, Uint8Array.from([0x0a, 100, 0x41])));
    await closed;
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(EspApiError);
    expect((errors[0] as EspApiError).code).toBe('ESPAPI_ERR_DECODE');
  });

  it('simulated-proxy - a request for an address beyond 48 bits does not break later sessions', async () => {
    // Found by `npm run fuzz` (server-requests): protobuf-ts decodes this address as a negative number; the simulation
    // kept a slot under it and every later slot report failed to encode, dropping each new client.
    const node = await startProxy(closers, { advertise: false });
    const port = node.server.address.port;
    const first = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: 2000 });
    await BluetoothProxy.attach(first, { timeout: 2000 });
    first.sendRaw(MSG_DEVICE_REQUEST, CONNECT_TO_ADDRESS_2_64_MINUS_1);
    await first.ping({ timeout: 2000 });
    expect(node.bluetooth.free).toBe(node.bluetooth.limit);
    await first.close();

    const second = await ApiConnection.connect({ host: '127.0.0.1', port, timeout: 2000 });
    const proxy = await BluetoothProxy.attach(second, { timeout: 2000 });
    expect((await proxy.refreshSlots({ timeout: 1000 })).free).toBe(node.bluetooth.limit);
    await second.close();
  });

  it('simulated-proxy - an address beyond 48 bits is refused however the request is encoded', async () => {
    // Found by the fuzzer's slot audit (server-requests): the address check decoded every addressed request as a
    // GetServicesRequest; this connect does not decode as one, so it passed unchecked and reserved a slot under
    // 2^52 + 1, which every DISCONNECT for that address (refused by the same check) then left held for good.
    const node = await startProxy(closers, { advertise: false });
    const api = await ApiConnection.connect({ host: '127.0.0.1', port: node.server.address.port, timeout: 2000 });
    await BluetoothProxy.attach(api, { timeout: 2000 });
    api.sendRaw(MSG_DEVICE_REQUEST, CONNECT_TO_ADDRESS_2_52_PLUS_1);
    await api.ping({ timeout: 2000 });
    expect(node.bluetooth.linkAddresses).toEqual([]);
    await api.close();
  });
});
