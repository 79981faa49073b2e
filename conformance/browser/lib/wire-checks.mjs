// Assertions on what actually crossed the wire (recorded by lib/browser.mjs Wire),
// independent of what the client library makes of it.

import assert from 'node:assert/strict';

const isConnect = (m) => m.channel === '/meta/connect';
const norm = (ct) => (ct ?? '').toLowerCase().replace(/\s+/g, '');

/**
 * Checks that every exchange used `transport` and was well-formed:
 * - websocket: no HTTP request to the mount at all, socket URL ws://host:port/cometd, no socket error.
 * - long-polling: no websocket; every request a POST answered 200 application/json, a non-empty array.
 * - callback-polling: no websocket; every request a GET with jsonp=_cometd_jsonp_N answered 200
 *   `text/javascript;charset=UTF-8` with body `<callback>([...])`; replies to requests without a
 *   /meta/connect carry no deliveries (callback-polling is meta-connect-delivery-only).
 * `ignoreSockets`: check only the HTTP exchanges (after a websocket fallback).
 * Waits (bounded) until every request except held connects has its response recorded.
 */
export async function assertTransportWire(transport, wire, serverUrl, { ms = 5000, ignoreSockets = false } = {}) {
  const origin = new URL(serverUrl);
  if (transport === 'websocket') {
    assert.deepEqual(wire.http.map((e) => `${e.method} ${e.path}`), [],
      'websocket client made HTTP requests to the Bayeux mount');
    assert.ok(wire.sockets.length >= 1, 'no websocket was opened');
    for (const s of wire.sockets) {
      assert.equal(s.url, `ws://${origin.host}${origin.pathname}`, 'websocket URL');
      assert.deepEqual(s.errors, [], `websocket errors on ${s.url}`);
      assert.ok(s.received.length >= 1, 'websocket received no frame');
    }
    assert.deepEqual(wire.problems, [], 'unparsable frames');
    return;
  }

  if (!ignoreSockets) assert.equal(wire.sockets.length, 0, `${transport} client opened a websocket`);
  // Every non-connect request must complete; connects may still be held.
  await wire.waitFor(() => wire.http.every((e) => e.done || e.messages.some(isConnect)), ms,
    'responses to every non-connect request');
  assert.ok(wire.http.length >= 2, `expected at least a handshake and a connect, got ${wire.http.length} requests`);
  for (const e of wire.http) {
    const label = `${e.method} ${e.url.slice(0, 200)}`;
    if (transport === 'long-polling') {
      assert.equal(e.method, 'POST', `long-polling request method: ${label}`);
    } else {
      assert.equal(e.method, 'GET', `callback-polling request method: ${label}`);
      assert.match(e.jsonp ?? '', /^_cometd_jsonp_\d+$/, `jsonp parameter: ${label}`);
    }
    if (!e.done) continue;
    assert.equal(e.failed, null, `request failed in the browser: ${label}`);
    assert.equal(e.status, 200, `status of ${label}; body ${String(e.body).slice(0, 300)}`);
    if (transport === 'long-polling') {
      assert.match(norm(e.contentType), /^application\/json(;|$)/, `content-type of ${label}`);
    } else {
      assert.equal(norm(e.contentType), 'text/javascript;charset=utf-8', `content-type of ${label}`);
      assert.ok(e.body.startsWith(`${e.jsonp}(`) && e.body.endsWith(')'),
        `JSONP body of ${label} is not ${e.jsonp}([...]): ${e.body.slice(0, 300)}`);
    }
    assert.ok(Array.isArray(e.replies) && e.replies.length >= 1,
      `response of ${label} is not a non-empty JSON array: ${String(e.body).slice(0, 300)}`);
    if (transport === 'callback-polling' && !e.messages.some(isConnect)) {
      const deliveries = e.replies.filter((r) => 'data' in r);
      assert.deepEqual(deliveries, [],
        `callback-polling reply to a non-connect request carried deliveries: ${label}`);
    }
  }
  assert.deepEqual(wire.problems, [], 'unparsable requests/responses');
}

/** Paths (and methods) the Bayeux requests went to, for HTTP transports. */
export function requestPaths(wire) {
  return wire.http.map((e) => `${e.method} ${e.path}`);
}
