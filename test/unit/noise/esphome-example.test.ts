import { describe, expect, it } from 'vitest';
import {
  encodeHandshakeBody,
  encodeNoiseFrame,
  encodeServerHello,
  NoiseFrameDecoder,
  NoiseTransportCodec,
  parseHandshakeBody,
  parseServerHello,
} from '../../../src/frame/noise-frame.js';
import { CipherState } from '../../../src/noise/cipher-state.js';
import { esphomePrologue, NoiseHandshake } from '../../../src/noise/handshake.js';
import { parsePsk } from '../../../src/noise/psk.js';

// Every value below is copied from protocol.md Appendix A.
const A = {
  pskBase64: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
  prologue: '4e6f697365415049496e69740000',
  clientEphemeral: '11'.repeat(32),
  clientEphemeralPublic: '7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13',
  deviceEphemeral: '22'.repeat(32),
  deviceEphemeralPublic: '0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20',
  clientOpening:
    '010000' + '010031' + '00' + '7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13' + 'd1bc1a38b6793685dc7e2ffdf8ea0933',
  serverHello: '010014' + '01' + '70726f787900' + '61346366313261623334636400',
  message2: '010031' + '00' + '0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20' + '7336b95933b321b1ae86673f689f5c9f',
  handshakeHash: '9fbfe40f5a75a9ec6e8f7e6982afebb114835c543b8729c12c266990978dc80e',
  k1: 'db72db7b88aa6a8223bac741154c7881c10c92ab4a4b7a9c36d0f107e18695a4',
  k2: '3963f3cddd9ae1ba54b5617120c40b1292120b671eb5ccbd9ce7b550122eec41',
  helloPayload: '0a0373646b1001180f',
  helloFrame: '01001d' + '082c88dd4754c63b53879b9d4fa34cbbaf1d548ba0b7f50a567f43e70e',
  pingFrame: '010014' + '431e3a2be0271e101ee745e7fe892b0d3c3923a5',
  pingResponseFrame: '010014' + 'd9423bf48bdea62bb10bbd87a7fb5ecc26721050',
};

const hex = (value: string): Uint8Array => Uint8Array.from(Buffer.from(value, 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const concat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts));

function collectBodies(bytes: Uint8Array): Uint8Array[] {
  const bodies: Uint8Array[] = [];
  new NoiseFrameDecoder((body) => bodies.push(body.slice())).push(bytes);
  return bodies;
}

describe.each(['node', 'noble'] as const)('esphome example (%s AEAD)', (aead) => {
  it('handshake - reproduces every byte of protocol.md Appendix A', () => {
    const psk = parsePsk(A.pskBase64);
    expect(toHex(psk)).toBe(Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, '0')).join(''));
    expect(toHex(esphomePrologue())).toBe(A.prologue);

    // Client: empty client hello + message 1, in one write.
    const client = new NoiseHandshake({
      role: 'initiator',
      prologue: esphomePrologue(),
      psk,
      ephemeralPrivateKey: hex(A.clientEphemeral),
      aead,
    });
    const message1 = client.writeMessage();
    expect(toHex(message1.subarray(0, 32))).toBe(A.clientEphemeralPublic);
    const opening = concat(encodeNoiseFrame(new Uint8Array(0)), encodeNoiseFrame(encodeHandshakeBody(message1)));
    expect(opening.length).toBe(55);
    expect(toHex(opening)).toBe(A.clientOpening);

    // Device: decode the opening, fold the client hello body into its prologue, answer.
    const [helloBody, body1] = collectBodies(opening);
    expect(helloBody!.length).toBe(0);
    const device = new NoiseHandshake({
      role: 'responder',
      prologue: esphomePrologue(helloBody!),
      psk,
      ephemeralPrivateKey: hex(A.deviceEphemeral),
      aead,
    });
    const parsed1 = parseHandshakeBody(body1!);
    if (!parsed1.ok) throw new Error('expected a handshake message');
    expect(device.readMessage(parsed1.message).length).toBe(0);
    const serverHello = encodeNoiseFrame(encodeServerHello({ name: 'proxy', mac: 'a4cf12ab34cd' }));
    expect(toHex(serverHello)).toBe(A.serverHello);
    const message2 = device.writeMessage();
    expect(toHex(message2.subarray(0, 32))).toBe(A.deviceEphemeralPublic);
    const message2Frame = encodeNoiseFrame(encodeHandshakeBody(message2));
    expect(toHex(message2Frame)).toBe(A.message2);

    // Client: server hello and message 2 arrive together.
    const [helloReply, body2] = collectBodies(concat(serverHello, message2Frame));
    expect(parseServerHello(helloReply!)).toEqual({ protocol: 1, name: 'proxy', mac: 'a4cf12ab34cd' });
    const parsed2 = parseHandshakeBody(body2!);
    if (!parsed2.ok) throw new Error('expected a handshake message');
    expect(client.readMessage(parsed2.message).length).toBe(0);

    expect(client.isComplete).toBe(true);
    expect(device.isComplete).toBe(true);
    expect(toHex(client.handshakeHash())).toBe(A.handshakeHash);
    expect(toHex(device.handshakeHash())).toBe(A.handshakeHash);

    // Data phase, both directions.
    const clientCiphers = client.split();
    const deviceCiphers = device.split();
    const clientCodec = new NoiseTransportCodec(clientCiphers.send, clientCiphers.receive);
    const deviceCodec = new NoiseTransportCodec(deviceCiphers.send, deviceCiphers.receive);
    const hello = clientCodec.encodeMessage(1, hex(A.helloPayload));
    expect(toHex(hello)).toBe(A.helloFrame);
    const ping = clientCodec.encodeMessage(7, new Uint8Array(0));
    expect(toHex(ping)).toBe(A.pingFrame);
    const pong = deviceCodec.encodeMessage(8, new Uint8Array(0));
    expect(toHex(pong)).toBe(A.pingResponseFrame);

    const atDevice: [number, string][] = [];
    for (const body of collectBodies(concat(hello, ping)))
      deviceCodec.decodeBody(body, (type, payload) => atDevice.push([type, toHex(payload)]));
    expect(atDevice).toEqual([
      [1, A.helloPayload],
      [7, ''],
    ]);
    const atClient: [number, string][] = [];
    for (const body of collectBodies(pong)) clientCodec.decodeBody(body, (type, payload) => atClient.push([type, toHex(payload)]));
    expect(atClient).toEqual([[8, '']]);
    expect(clientCiphers.send.nonce).toBe(2);
    expect(clientCiphers.receive.nonce).toBe(1);
  });

  it('handshake - split keys are k1 (client to device) and k2 (device to client)', () => {
    // Same frames from ciphers built straight from the published keys prove the split matches them.
    const k1 = new NoiseTransportCodec(new CipherState(hex(A.k1), { aead }), new CipherState(hex(A.k2), { aead }));
    expect(toHex(k1.encodeMessage(1, hex(A.helloPayload)))).toBe(A.helloFrame);
    expect(toHex(k1.encodeMessage(7, new Uint8Array(0)))).toBe(A.pingFrame);
    const k2 = new NoiseTransportCodec(new CipherState(hex(A.k2), { aead }), new CipherState(hex(A.k1), { aead }));
    expect(toHex(k2.encodeMessage(8, new Uint8Array(0)))).toBe(A.pingResponseFrame);
  });
});
