import { ApiServer, type ApiServerOptions } from '../../src/server/api-server.js';
import type { Closers } from './closers.js';

/** A key every test may use; base64 of 32 bytes 0x00..0x1f (spec Appendix A). */
export const TEST_PSK = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
/** A different valid key, for wrong-key tests. */
export const OTHER_PSK = 'MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=';

/** Starts a fixture server on 127.0.0.1:0; closed after the test when `closers` is given, else by `await using` or close(). */
export async function startFixture(options: ApiServerOptions = {}, closers?: Closers): Promise<ApiServer> {
  const server = new ApiServer({ host: '127.0.0.1', port: 0, ...options });
  closers?.push(() => server.close());
  await server.listen();
  return server;
}
