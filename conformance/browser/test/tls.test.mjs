// The official CometD client in headless Chromium against `bayeuxd --tls-cert --tls-key`:
// the page and the Bayeux endpoint over https:// (HTTP/2 for long-polling and
// callback-polling, as browsers negotiate it) and wss:// for websocket.
//
// The certificate is made for this run by the repository's `self-signed-cert` binary (rcgen),
// and Chromium trusts exactly its key (--ignore-certificate-errors-spki-list), not every
// certificate: a TLS error would still fail the page.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, requireChromium } from '../lib/browser.mjs';
import { ALL_TRANSPORTS, deliveries, scenario } from '../lib/fixture.mjs';

const TEST_TIMEOUT = 60000;
const CERT_TOOL = process.env.SELF_SIGNED_CERT_BIN
  || fileURLToPath(new URL('../../../target/debug/self-signed-cert', import.meta.url));

describe('official CometD client in Chromium over TLS (https://, wss://)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bayeux-browser-tls-'));
  let launching = null;
  let spki = null;
  const browser = () => (launching ??= (async () => {
    requireChromium();
    return chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${spki}`],
      timeout: 30000,
    });
  })());

  before(() => {
    execFileSync(CERT_TOOL, [dir]);
    const cert = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    const der = cert.publicKey.export({ type: 'spki', format: 'der' });
    spki = createHash('sha256').update(der).digest('base64');
  });
  after(async () => {
    const b = await launching?.catch(() => null);
    if (b) await b.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const tls = () => ({ 'tls-cert': join(dir, 'cert.pem'), 'tls-key': join(dir, 'key.pem') });

  for (const T of ALL_TRANSPORTS) {
    test(`${T}: two users chat over TLS; an HTTP transport's cookie is Secure`, { timeout: TEST_TIMEOUT },
      () => scenario(browser, { transport: T, serverOptions: tls() }, async ({ server, page, wire, connect, call, context, openContext }) => {
        assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+\/cometd$/);
        assert.ok(page.url().startsWith('https://'), page.url());
        const alice = await connect();
        assert.equal(alice.transport, T);
        const other = await openContext();
        const bob = await other.connect();
        assert.equal(bob.transport, T);
        const channel = `/tls/${T}`;
        assert.equal((await call('subscribe', { id: alice.id, channel })).successful, true);
        for (let n = 0; n < 3; n++) {
          const pub = await other.call('publish', { id: bob.id, channel, data: { n, from: 'bob' } });
          assert.equal(pub.reply.successful, true, JSON.stringify(pub.reply));
        }
        const got = await call('waitForData', { id: alice.id, channel, count: 3, ms: 10000 });
        assert.deepEqual(deliveries(got), [0, 1, 2].map((n) => ({ channel, data: { n, from: 'bob' } })));

        // Over the HTTP transports the browser cookie is Secure (and HttpOnly) by default
        // over TLS; websocket sessions have none.
        const cookies = await context.cookies();
        const bayeux = cookies.find((c) => c.name === 'BAYEUX_BROWSER');
        if (T === 'websocket') {
          assert.equal(bayeux, undefined, JSON.stringify(cookies));
        } else {
          assert.ok(bayeux, `no BAYEUX_BROWSER cookie in ${JSON.stringify(cookies)}`);
          assert.equal(bayeux.secure, true);
          assert.equal(bayeux.httpOnly, true);
        }

        // What carried the Bayeux requests: HTTP/2 for the HTTP transports, a wss:// socket
        // for websocket.
        const protocols = await page.evaluate(() => performance.getEntriesByType('resource')
          .filter((e) => new URL(e.name).pathname.startsWith('/cometd'))
          .map((e) => [new URL(e.name).protocol, e.nextHopProtocol]));
        if (T === 'websocket') {
          const urls = wire.sockets.map((s) => s.url);
          assert.ok(urls.length > 0 && urls.every((u) => u.startsWith('wss://127.0.0.1:')), JSON.stringify(urls));
          assert.ok(wire.sockets[0].received.length > 0, 'frames came back over wss');
        } else {
          assert.ok(protocols.length > 0, 'no Bayeux requests seen by the page');
          assert.deepEqual([...new Set(protocols.map(([, p]) => p))], ['h2'], JSON.stringify(protocols));
        }
      }));
  }
});
