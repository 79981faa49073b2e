// Starts bayeuxd for the browser suite: the Node suite's process harness
// (../../node/lib/server.mjs: spawn, wait for the listening line, SIGINT on stop)
// plus --static-dir pointing at this folder, so that the test page
// (/www/index.html) and the cometd ES modules (/node_modules/cometd/*.js) are
// served by bayeuxd itself, same-origin with the Bayeux endpoint.

import { fileURLToPath } from 'node:url';
import { statSync } from 'node:fs';
import { startServer as startBayeuxd, serverBinary } from '../../node/lib/server.mjs';

/** Absolute path of conformance/browser (no trailing slash). */
export const BROWSER_ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/+$/, '');

/** Server options of the browser suite (milliseconds); tests override per scenario group. */
export const BROWSER_DEFAULTS = Object.freeze({
  timeout: 3000,
  'max-interval': 5000,
  'multi-session-interval': 500,
  'static-dir': BROWSER_ROOT,
});

/** Starts a fresh bayeuxd with the browser defaults merged with `options`. */
export async function startServer(options = {}) {
  return startBayeuxd({ ...BROWSER_DEFAULTS, ...options });
}

/** Identity of the binary under test (path, size, mtime), for the test log. */
export function binaryIdentity() {
  const bin = serverBinary();
  try {
    const st = statSync(bin);
    return `${bin} (${st.size} bytes, modified ${st.mtime.toISOString()})`;
  } catch {
    return `${bin} (missing)`;
  }
}
