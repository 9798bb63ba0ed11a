import { ApiServer, type ApiServerOptions } from '../../src/server/api-server.js';

/** A key every test may use; base64 of 32 bytes 0x00..0x1f (spec Appendix A). */
export const TEST_PSK = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
/** A different valid key, for wrong-key tests. */
export const OTHER_PSK = 'MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=';

/** Starts a fixture server on 127.0.0.1:0; dispose it with `await using` or close(). */
export async function startFixture(options: ApiServerOptions = {}): Promise<ApiServer> {
  const server = new ApiServer({ host: '127.0.0.1', port: 0, ...options });
  await server.listen();
  return server;
}
