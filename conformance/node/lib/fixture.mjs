// Per-test fixture: a fresh bayeuxd plus a factory of official-client instances,
// all torn down (clients disconnected first, then the server stopped) after the test.

import { startServer } from './server.mjs';
import { Browser, TestClient } from './client.mjs';

/**
 * Starts a server with `serverOptions` (flag names without dashes, merged over the
 * defaults in server.mjs) and registers its teardown on the node:test context `t`.
 */
export async function startEnv(t, serverOptions = {}) {
  const server = await startServer(serverOptions);
  const clients = [];
  const env = {
    server,
    get url() { return server.url; },
    /** A new CometD client with its own cookie jar unless `browser` is passed. */
    client(options = {}) {
      const client = new TestClient({ url: server.url, ...options });
      clients.push(client);
      return client;
    },
    /** A new cookie jar, to share between clients that must look like tabs of one browser. */
    browser(name) {
      return new Browser(name);
    },
    /**
     * Registers a client of another library (anything with `async close()`), closed with the
     * others at teardown, before the server stops.
     */
    track(client) {
      clients.push(client);
      return client;
    },
    /** Creates a client and completes its handshake and first connect. */
    async connected(options = {}) {
      const client = env.client(options);
      await client.connect();
      return client;
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
      await server.stop();
    },
    /** Server stderr, for failure messages. */
    logs() {
      return server.stderr;
    },
  };
  t.after(() => env.close());
  return env;
}
