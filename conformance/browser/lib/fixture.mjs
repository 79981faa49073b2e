// Per-scenario fixture: a fresh bayeuxd, a fresh browser context (own cookie jar) with
// the test page loaded, and clean-up of everything in reverse order. On failure the
// error message gets the wire log, the page log and the server's stderr tail.

import { bounded, openPage } from './browser.mjs';
import { startServer } from './server.mjs';

export const ALL_TRANSPORTS = ['websocket', 'long-polling', 'callback-polling'];

/**
 * Runs `body(env)` against a fresh server started with `serverOptions`, in `getBrowser`
 * (a Browser, or a function returning a promise of one).
 * env: {server, browser, context, page, wire, call, logs, connect(opts), openContext()}
 *   connect(opts) = harness.connect with the server URL and `transport` filled in
 *   openContext() = another page in a new browser context (a second "user"), same shape.
 *   openTab() = another page in the first context (same cookie jar: a second tab of one browser).
 */
export async function scenario(getBrowser, { transport, serverOptions = {} }, body) {
  const browser = typeof getBrowser === 'function' ? await getBrowser() : getBrowser;
  const server = await startServer(serverOptions);
  const contexts = [];
  const pages = [];
  const open = async (existing) => {
    const context = existing ?? await browser.newContext();
    if (!existing) contexts.push(context);
    const p = await openPage(context, server);
    pages.push(p);
    return {
      ...p,
      context,
      connect: (opts = {}) => p.call('connect', { url: server.url, transport, ...opts }),
    };
  };
  try {
    const first = await open();
    await body({
      server, browser, ...first,
      openContext: () => open(),
      openTab: () => open(first.context),
    });
    // An uncaught exception in a page (e.g. a JSONP callback that no longer exists) is a failure.
    pages.forEach((p, i) => {
      const errors = p.logs.filter((l) => l.startsWith('[pageerror]'));
      if (errors.length) throw new Error(`uncaught exceptions in page ${i}:\n${errors.join('\n')}`);
    });
  } catch (err) {
    pages.forEach((p, i) => {
      err.message += `\n--- page ${i} wire: ${p.wire.dump()}`;
      err.message += `\n--- page ${i} log:\n${p.logs.slice(-20).join('\n')}`;
    });
    err.message += `\n--- bayeuxd stderr tail:\n${server.stderr.slice(-3000)}`;
    throw err;
  } finally {
    for (const context of contexts.reverse()) {
      await bounded(context.close(), 10000, 'closing a browser context').catch(() => {});
    }
    await server.stop();
  }
}

/** The successful /meta/handshake reply the client received. */
export function handshakeReply(state) {
  const entry = state.tapIn.find((e) => e.message.channel === '/meta/handshake' && e.message.successful === true);
  if (!entry) throw new Error(`no successful handshake reply in ${JSON.stringify(state.tapIn).slice(0, 2000)}`);
  return entry.message;
}

/** Plain deliveries ({channel, data}) from harness.waitForData/received entries. */
export function deliveries(entries) {
  return entries.map((e) => ({ channel: e.message.channel, data: e.message.data }));
}
