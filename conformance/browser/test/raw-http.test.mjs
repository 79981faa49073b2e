// Raw HTTP checks from Node (no browser): the callback-polling (JSONP) wire format and
// its callback-name validation, and the --static-dir file serving the browser suite
// depends on (JavaScript MIME type for ES modules, no escape from the directory).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer, binaryIdentity } from '../lib/server.mjs';

const ALL = ['websocket', 'long-polling', 'callback-polling'];
const JS_CT = 'text/javascript;charset=UTF-8';

/** GET with a path sent exactly as given (no URL normalisation), 5 s bound. */
function rawGet(port, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'GET', headers, timeout: 5000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode,
        headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no response within 5000 ms`)));
    req.on('error', reject);
    req.end();
  });
}

const q = (params) => params.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');

function jsonpCall(res, callback) {
  assert.equal(res.status, 200, `status; body ${res.body.slice(0, 300)}`);
  assert.equal(res.headers['content-type'], JS_CT);
  const prefix = `${callback}(`;
  assert.ok(res.body.startsWith(prefix), `body does not start with ${prefix}: ${res.body.slice(0, 200)}`);
  assert.ok(res.body.endsWith(')'), `body does not end with ')' (no trailing semicolon): ${res.body.slice(-50)}`);
  const inner = JSON.parse(res.body.slice(prefix.length, -1));
  assert.ok(Array.isArray(inner), 'the callback argument is a JSON array');
  return inner;
}

describe('raw callback-polling and static files (Node, no browser)', () => {
  let server;
  let port;
  before(async () => {
    console.log(`bayeuxd under test: ${binaryIdentity()}`);
    server = await startServer();
    port = server.port;
  });
  after(async () => {
    if (server) await server.stop();
  });

  /** JSONP handshake with callback _cometd_jsonp_0; returns {clientId, cookie}. */
  async function handshake() {
    const message = [{
      id: '1', version: '1.0', minimumVersion: '1.0', channel: '/meta/handshake',
      supportedConnectionTypes: ['callback-polling'], advice: { timeout: 60000, interval: 0 },
    }];
    const res = await rawGet(port, `/cometd/handshake?${q([['jsonp', '_cometd_jsonp_0'], ['message', JSON.stringify(message)]])}`);
    const [reply, ...rest] = jsonpCall(res, '_cometd_jsonp_0');
    assert.deepEqual(rest, []);
    assert.equal(reply.channel, '/meta/handshake');
    assert.equal(reply.id, '1');
    assert.equal(reply.successful, true, JSON.stringify(reply));
    assert.deepEqual(reply.supportedConnectionTypes, ALL);
    assert.equal(typeof reply.clientId, 'string');
    const setCookie = [].concat(res.headers['set-cookie'] ?? []);
    const browserCookie = setCookie.map((c) => c.split(';')[0]).find((c) => c.startsWith('BAYEUX_BROWSER='));
    assert.ok(browserCookie, `no BAYEUX_BROWSER cookie in ${JSON.stringify(setCookie)}`);
    return { clientId: reply.clientId, cookie: browserCookie };
  }

  test('8a. JSONP handshake and connect: 200 text/javascript;charset=UTF-8, body _cometd_jsonp_N([...])', async () => {
    const { clientId, cookie } = await handshake();
    const connect = [{ id: '2', channel: '/meta/connect', connectionType: 'callback-polling', advice: { timeout: 0 }, clientId }];
    const res = await rawGet(port, `/cometd/connect?${q([['jsonp', '_cometd_jsonp_1'], ['message', JSON.stringify(connect)]])}`,
      { cookie });
    const replies = jsonpCall(res, '_cometd_jsonp_1');
    assert.equal(replies.length, 1, JSON.stringify(replies));
    assert.equal(replies[0].channel, '/meta/connect');
    assert.equal(replies[0].id, '2');
    assert.equal(replies[0].successful, true, JSON.stringify(replies[0]));
  });

  test('8b. several message parameters are one batch, in order; deliveries only with /meta/connect', async () => {
    const { clientId, cookie } = await handshake();
    const channel = '/raw/jsonp/batch';
    const res = await rawGet(port, `/cometd/?${q([
      ['jsonp', 'cb_batch'],
      ['message', JSON.stringify([{ id: '2', channel: '/meta/subscribe', subscription: channel, clientId }])],
      ['message', JSON.stringify({ id: '3', channel, data: { n: 1 }, clientId })],
    ])}`, { cookie });
    const replies = jsonpCall(res, 'cb_batch');
    assert.deepEqual(replies.map((m) => [m.id, m.channel, m.successful]),
      [['2', '/meta/subscribe', true], ['3', channel, true]], JSON.stringify(replies));
    assert.ok(replies.every((m) => !('data' in m)), 'a non-connect JSONP reply carried data');

    const connect = [{ id: '4', channel: '/meta/connect', connectionType: 'callback-polling', advice: { timeout: 0 }, clientId }];
    const res2 = await rawGet(port, `/cometd/connect?${q([['jsonp', 'cb_connect'], ['message', JSON.stringify(connect)]])}`,
      { cookie });
    const replies2 = jsonpCall(res2, 'cb_connect');
    assert.deepEqual(replies2.filter((m) => 'data' in m).map((m) => [m.channel, m.data]), [[channel, { n: 1 }]]);
    assert.equal(replies2.find((m) => m.channel === '/meta/connect')?.successful, true, JSON.stringify(replies2));
  });

  test('8c. hostile or oversized callback names: 400 text/plain, callback not echoed', async () => {
    const handshakeMsg = JSON.stringify([{ id: '1', version: '1.0', channel: '/meta/handshake', supportedConnectionTypes: ['callback-polling'] }]);
    for (const callback of ['alert(1)//', 'a'.repeat(65), 'a b', 'NOTICE:', 'x\r\nSet-Cookie: evil=1', '<script>']) {
      const res = await rawGet(port, `/cometd/handshake?${q([['jsonp', callback], ['message', handshakeMsg]])}`);
      assert.equal(res.status, 400, `callback ${JSON.stringify(callback)}: status ${res.status}, body ${res.body.slice(0, 200)}`);
      assert.match(res.headers['content-type'] ?? '', /^text\/plain/i, `content-type for ${JSON.stringify(callback)}`);
      assert.ok(!res.body.includes(callback), `the 400 body echoes ${JSON.stringify(callback)}: ${res.body.slice(0, 200)}`);
      assert.equal(res.headers['set-cookie'], undefined, 'no session cookie for a refused request');
    }
    // The boundary: 64 characters of the allowed alphabet is fine.
    const longest = 'A0._-'.repeat(13).slice(0, 64);
    const ok = await rawGet(port, `/cometd/handshake?${q([['jsonp', longest], ['message', handshakeMsg]])}`);
    const [reply] = jsonpCall(ok, longest);
    assert.equal(reply.successful, true);
  });

  test('8d. GET without jsonp, without message, or with malformed JSON: 400', async () => {
    const msg = JSON.stringify([{ id: '1', version: '1.0', channel: '/meta/handshake', supportedConnectionTypes: ['callback-polling'] }]);
    const cases = {
      'no jsonp': `/cometd/handshake?${q([['message', msg]])}`,
      'no message': `/cometd/handshake?${q([['jsonp', 'cb']])}`,
      'malformed JSON': `/cometd/handshake?${q([['jsonp', 'cb'], ['message', '[{"id":']])}`,
      'bare GET': '/cometd',
    };
    for (const [name, path] of Object.entries(cases)) {
      const res = await rawGet(port, path);
      assert.equal(res.status, 400, `${name}: status ${res.status}, body ${res.body.slice(0, 200)}`);
    }
  });

  test('static-dir: the page and the cometd ES modules are served with usable MIME types', async () => {
    const page = await rawGet(port, '/www/index.html');
    assert.equal(page.status, 200);
    assert.match(page.headers['content-type'] ?? '', /^text\/html/i);
    for (const path of ['/www/harness.js', '/node_modules/cometd/cometd.js', '/node_modules/cometd/Client.js']) {
      const res = await rawGet(port, path);
      assert.equal(res.status, 200, `GET ${path}`);
      // Browsers refuse ES modules served with a non-JavaScript MIME type.
      assert.match(res.headers['content-type'] ?? '', /^(text|application)\/javascript\b/i, `content-type of ${path}`);
      assert.ok(res.body.length > 100);
    }
    const missing = await rawGet(port, '/www/no-such-file.html');
    assert.equal(missing.status, 404);
  });

  test('static-dir: no path escapes the directory', async () => {
    // conformance/browser is the root, so ../node/package.json exists one level up.
    for (const path of ['/../node/package.json', '/%2e%2e/node/package.json', '/www/..%2f..%2fnode%2fpackage.json',
      '/%2e%2e%2fnode%2fpackage.json', '/..%5cnode%5cpackage.json']) {
      const res = await rawGet(port, path);
      assert.notEqual(res.status, 200, `GET ${path} served a file outside --static-dir: ${res.body.slice(0, 120)}`);
      assert.ok(!res.body.includes('bayeuxd-conformance-node'), `GET ${path} leaked ../node/package.json`);
    }
  });
});
