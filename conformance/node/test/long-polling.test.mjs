// Conformance of bayeuxd with the OFFICIAL CometD JavaScript client (cometd 9.x via
// cometd-nodejs-client 2.x), long-polling transport only.
//
// Every test gets a fresh server (lib/fixture.mjs). Assertions are made on two levels:
// what the application sees (listeners, callbacks) and what the server really sent
// (the wire tap of lib/client.mjs), because the client fans one delivery out to every
// matching local listener and hides duplicates or extra fields only at the wire.
// "Nothing else arrived" is proven with a fence: a later message that must arrive after
// anything the server could still have queued, never with a sleep.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEnv } from '../lib/fixture.mjs';
import { Collector, notifyChange, rawPost, until } from '../lib/client.mjs';

const CLIENT_ID_RE = /^[A-Za-z0-9]{16,}$/;
const TEST_TIMEOUT = 30000;

/** The single message of `client`'s outgoing traffic on `channel` (fails if not exactly one). */
function sentOne(client, channel) {
  const sent = client.tap.sent().filter((m) => m.channel === channel);
  assert.equal(sent.length, 1, `${client.name} sent ${sent.length} messages on ${channel}`);
  return sent[0];
}

/** Deterministic printable text with JSON-significant characters mixed in. */
function makeText(length) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "\\/\n\t{}[]:,';
  let x = 12345;
  let out = '';
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out += alphabet[x % alphabet.length];
  }
  return out;
}

describe('long-polling with the official CometD client', { timeout: 120000 }, () => {
  test('1. handshake: successful reply, clientId, long-polling, browser cookie, first connect', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const client = env.client();
    const seen = [];
    client.cometd.addListener('/meta/handshake', (m) => seen.push(m));

    const reply = await client.handshake();

    assert.equal(seen.length, 1, 'the /meta/handshake listener is called exactly once');
    const m = seen[0];
    assert.equal(m.successful, true);
    assert.match(m.clientId, CLIENT_ID_RE);
    assert.ok(Array.isArray(m.supportedConnectionTypes), 'supportedConnectionTypes is an array');
    assert.ok(m.supportedConnectionTypes.includes('long-polling'),
      `supportedConnectionTypes ${JSON.stringify(m.supportedConnectionTypes)} includes long-polling`);
    assert.equal(reply.clientId, m.clientId);

    // Wire level: one request with only the handshake, one reply with the exact Java shape.
    const exchanges = client.tap.exchangesWith('/meta/handshake');
    assert.equal(exchanges.length, 1);
    const [hs] = exchanges;
    assert.equal(hs.path, '/cometd/handshake');
    assert.equal(hs.status, 200);
    assert.equal(hs.request.length, 1);
    const request = hs.request[0];
    assert.deepEqual(hs.response, [{
      id: request.id,
      channel: '/meta/handshake',
      successful: true,
      version: '1.0',
      minimumVersion: '1.0',
      clientId: m.clientId,
      supportedConnectionTypes: m.supportedConnectionTypes,
      advice: { reconnect: 'retry', interval: 0, timeout: 2000 },
    }]);

    // The handshake response set the browser cookie (PROTOCOL 5.5).
    assert.equal(client.browser.setCookieHeaders.length, 1, 'exactly one Set-Cookie on the handshake');
    const [setCookie] = client.browser.setCookieHeaders;
    assert.match(setCookie, /^BAYEUX_BROWSER=[^;\s]+/);
    const attributes = setCookie.split(';').slice(1).map((a) => a.trim().toLowerCase());
    assert.ok(attributes.includes('path=/'), `Set-Cookie ${setCookie} has Path=/`);
    assert.ok(attributes.includes('httponly'), `Set-Cookie ${setCookie} has HttpOnly`);

    // The first /meta/connect (advice timeout 0) is answered at once with full advice,
    // and the negotiated transport is long-polling.
    await until(() => client.connects.length >= 1, { what: 'first /meta/connect reply', describe: () => client.tap.summary() });
    assert.equal(client.cometd.getTransport().type, 'long-polling');
    const firstConnect = client.tap.exchangesWith('/meta/connect')[0];
    assert.equal(firstConnect.path, '/cometd/connect');
    assert.deepEqual(firstConnect.request, [{
      id: firstConnect.request[0].id,
      channel: '/meta/connect',
      connectionType: 'long-polling',
      advice: { timeout: 0 },
      clientId: m.clientId,
    }]);
    assert.equal(firstConnect.status, 200);
    assert.deepEqual(firstConnect.response, [{
      id: firstConnect.request[0].id,
      channel: '/meta/connect',
      successful: true,
      advice: { reconnect: 'retry', interval: 0, timeout: 2000 },
    }]);
    assert.equal(client.connects[0].successful, true);
  });

  test('2. subscribe, publish, receive own message', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const client = await env.connected();
    const channel = '/s2/chat';
    const chat = await client.collect(channel);
    const subscribe = sentOne(client, '/meta/subscribe');
    assert.deepEqual(client.tap.replies('/meta/subscribe'),
      [{ id: subscribe.id, channel: '/meta/subscribe', subscription: channel, successful: true }]);

    const data = { text: 'hello', n: 1, f: 1.5, neg: -7, yes: true, no: false, nothing: null, list: [1, 'two', { three: 3 }], nested: { a: { b: [] } }, empty: {} };
    const reply = await client.publish(channel, data);
    assert.equal(reply.successful, true);
    const publish = sentOne(client, channel);
    // The publish reply: no data echoed, same id, same channel.
    assert.deepEqual(client.tap.replies(channel), [{ id: publish.id, channel, successful: true }]);

    const [message] = await chat.waitFor(1);
    assert.deepEqual(message, { channel, data });

    // Exactly one copy: a later message on the same channel arrives after anything queued before it.
    await client.publish(channel, { fence: true });
    await chat.waitFor(2);
    const expected = [{ channel, data }, { channel, data: { fence: true } }];
    assert.deepEqual(chat.messages, expected);
    assert.deepEqual(client.tap.deliveries(), expected);
  });

  test('3. fan-out to three browsers: exactly one copy each', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await env.connected());
    const cookies = clients.map((c) => c.browserCookie());
    assert.ok(cookies.every((c) => typeof c === 'string' && c.length > 0), `cookies ${JSON.stringify(cookies)}`);
    assert.equal(new Set(cookies).size, 3, 'each simulated browser got its own BAYEUX_BROWSER cookie');

    const channel = '/fan/out';
    const collectors = [];
    for (const c of clients) collectors.push(await c.collect(channel));

    const data = { hello: 'everyone', n: 3 };
    assert.equal((await clients[0].publish(channel, data)).successful, true);
    assert.equal((await clients[0].publish(channel, { fence: true })).successful, true);

    const expected = [{ channel, data }, { channel, data: { fence: true } }];
    for (const [i, collector] of collectors.entries()) {
      await collector.waitFor(2);
      assert.deepEqual(collector.messages, expected, `listener of client ${i}`);
      assert.deepEqual(clients[i].tap.deliveries(), expected, `wire of client ${i}`);
    }
    for (const c of clients) {
      const mc = c.tap.replies('/meta/connect').filter((r) => r.advice && r.advice['multiple-clients']);
      assert.deepEqual(mc, [], `${c.name} (own cookie jar) must never get multiple-clients advice`);
    }
  });

  test('4. wildcards: /w/* one level, /w/** all levels, one wire delivery per message', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const one = await env.connected({ name: 'star' });
    const all = await env.connected({ name: 'starstar' });
    const both = await env.connected({ name: 'overlapping' });
    const publisher = await env.connected({ name: 'publisher' });

    const star = await one.collect('/w/*');
    const starStar = await all.collect('/w/**');
    const bothStar = await both.collect('/w/*');
    const bothStarStar = await both.collect('/w/**');
    const bothExact = await both.collect('/w/a');

    await publisher.publish('/w/a', { n: 1 });
    await publisher.publish('/w/a/b', { n: 2 });
    await publisher.publish('/w/z', { fence: true }); // matches /w/* and /w/**
    const m1 = { channel: '/w/a', data: { n: 1 } };
    const m2 = { channel: '/w/a/b', data: { n: 2 } };
    const fence = { channel: '/w/z', data: { fence: true } };

    await star.waitFor(2);
    assert.deepEqual(star.messages, [m1, fence]);
    // The client would hide /w/a/b from a /w/* listener by itself: check what the server sent.
    assert.deepEqual(one.tap.deliveries(), [m1, fence], '/w/* subscriber must not be sent /w/a/b');

    await starStar.waitFor(3);
    assert.deepEqual(starStar.messages, [m1, m2, fence]);
    assert.deepEqual(all.tap.deliveries(), [m1, m2, fence]);

    // Subscribed to /w/*, /w/** and /w/a: the server sends ONE copy of each message;
    // the client then notifies every matching listener.
    await until(() => both.tap.deliveries('/w/z').length > 0, { what: 'fence at the overlapping client', describe: () => both.tap.summary() });
    assert.deepEqual(both.tap.deliveries(), [m1, m2, fence]);
    assert.deepEqual(bothExact.messages, [m1]);
    assert.deepEqual(bothStar.messages, [m1, fence]);
    assert.deepEqual(bothStarStar.messages, [m1, m2, fence]);
    assert.deepEqual(publisher.tap.deliveries(), [], 'the publisher subscribed to nothing');
  });

  test('5. service channel: publish acknowledged, never broadcast to subscribers', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const sender = await env.connected({ name: 'sender' });
    const watcher = await env.connected({ name: 'watcher' });

    const { reply: subReply, collector: echoWatch } = await watcher.subscribe('/service/echo');
    const sub = sentOne(watcher, '/meta/subscribe');
    assert.deepEqual(subReply.successful, true);
    assert.deepEqual(watcher.tap.replies('/meta/subscribe'),
      [{ id: sub.id, channel: '/meta/subscribe', subscription: '/service/echo', successful: true }]);
    const fence = await watcher.collect('/s5/fence');

    const reply = await sender.publish('/service/echo', { q: 'ping' });
    assert.equal(reply.successful, true);
    const publish = sentOne(sender, '/service/echo');
    assert.deepEqual(sender.tap.replies('/service/echo'), [{ id: publish.id, channel: '/service/echo', successful: true }]);

    // The sender's next broadcast reaches the watcher after anything queued by the service publish.
    await sender.publish('/s5/fence', { fence: true });
    await fence.waitFor(1);
    assert.deepEqual(watcher.tap.deliveries(), [{ channel: '/s5/fence', data: { fence: true } }]);
    assert.deepEqual(echoWatch.messages, []);
  });

  test('6. batch: 5 publishes in one request, delivered in order', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const publisher = await env.connected({ name: 'publisher' });
    const subscriber = await env.connected({ name: 'subscriber' });
    const channel = '/b/batch';
    const received = await subscriber.collect(channel);

    const replies = [];
    publisher.cometd.batch(() => {
      for (let i = 1; i <= 5; i++) {
        publisher.cometd.publish(channel, { i }, (r) => { replies.push(r); notifyChange(); });
      }
    });
    await until(() => replies.length === 5, { what: '5 publish callbacks', describe: () => publisher.tap.summary() });
    assert.deepEqual(replies.map((r) => r.successful), [true, true, true, true, true]);

    const exchanges = publisher.tap.exchangesWith(channel);
    assert.equal(exchanges.length, 1, 'the 5 publishes travelled in ONE HTTP request');
    const [batch] = exchanges;
    assert.deepEqual(batch.request.map((m) => ({ channel: m.channel, data: m.data })),
      [1, 2, 3, 4, 5].map((i) => ({ channel, data: { i } })));
    assert.equal(batch.status, 200);
    // Replies in request order (the publisher subscribed to nothing: no deliveries in there).
    assert.deepEqual(batch.response, batch.request.map((m) => ({ id: m.id, channel, successful: true })));

    await publisher.publish(channel, { fence: true });
    await received.waitFor(6);
    const expected = [1, 2, 3, 4, 5].map((i) => ({ channel, data: { i } }));
    expected.push({ channel, data: { fence: true } });
    assert.deepEqual(received.messages, expected);
    assert.deepEqual(subscriber.tap.deliveries(), expected);
  });

  test('7. 200 messages from one client arrive in order at another', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const publisher = await env.connected({ name: 'publisher' });
    const subscriber = await env.connected({ name: 'subscriber' });
    const channel = '/o/seq';
    const received = await subscriber.collect(channel);

    const replies = await Promise.all(Array.from({ length: 200 }, (_, seq) => publisher.publish(channel, { seq }, 20000)));
    assert.equal(replies.filter((r) => r.successful === true).length, 200);
    await publisher.publish(channel, { fence: true });

    await received.waitFor(201, 20000);
    const expected = Array.from({ length: 200 }, (_, seq) => ({ channel, data: { seq } }));
    expected.push({ channel, data: { fence: true } });
    assert.deepEqual(received.messages, expected);
    assert.deepEqual(subscriber.tap.deliveries(), expected);
  });

  test('8. a ~100 KB message round-trips exactly', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const publisher = await env.connected({ name: 'publisher', config: { maxSendBayeuxMessageSize: 2 * 1024 * 1024 } });
    const subscriber = await env.connected({ name: 'subscriber' });
    const channel = '/big/one';
    const received = await subscriber.collect(channel);
    const own = await publisher.collect(channel);

    const data = {
      text: makeText(100 * 1024),
      rows: Array.from({ length: 64 }, (_, i) => ({ i, s: 'y'.repeat(i), even: i % 2 === 0 })),
    };
    const reply = await publisher.publish(channel, data, 10000);
    assert.equal(reply.successful, true, `publish reply ${JSON.stringify(reply)}`);
    const [bigRequest] = publisher.tap.exchangesWith(channel);
    assert.ok(bigRequest.requestText.length > 100 * 1024, `request body ${bigRequest.requestText.length} bytes`);

    const [message] = await received.waitFor(1, 10000);
    assert.deepEqual(message, { channel, data });
    const [mine] = await own.waitFor(1, 10000);
    assert.deepEqual(mine, { channel, data });
  });

  test('9. unicode data round-trips exactly', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const publisher = await env.connected({ name: 'publisher' });
    const subscriber = await env.connected({ name: 'subscriber' });
    const channel = '/u/nicode';
    const received = await subscriber.collect(channel);

    const data = {
      emoji: '😀🎉👍🏽👨‍👩‍👧‍👦🏳️‍🌈',
      cjk: '漢字かなカナ한국어中文',
      combining: 'e\u0301 a\u0308 n\u0303 Å',
      separators: 'line\u2028separator paragraph\u2029separator',
      controls: 'nul\u0000 tab\t cr\r lf\n bell\u0007 del\u007f',
      bom: '\ufeffbom',
      astral: '𝄞 𐍈 🀄',
      rtl: 'עברית العربية',
      'ключ 🔑': 'значение',
      quotes: '"\'\\/',
    };
    const reply = await publisher.publish(channel, data);
    assert.equal(reply.successful, true, `publish reply ${JSON.stringify(reply)}`);
    const [message] = await received.waitFor(1);
    assert.deepEqual(message, { channel, data });
  });

  test('10. unsubscribe: no more deliveries on that channel', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const subscriber = await env.connected({ name: 'subscriber' });
    const publisher = await env.connected({ name: 'publisher' });
    const a = await subscriber.collect('/u/a');
    const b = await subscriber.collect('/u/b');

    // Control: /u/a is delivered while subscribed.
    await publisher.publish('/u/a', { n: 0 });
    await a.waitFor(1);

    const reply = await subscriber.unsubscribe(a.subscription);
    assert.equal(reply.successful, true);
    const unsubscribe = sentOne(subscriber, '/meta/unsubscribe');
    assert.deepEqual(subscriber.tap.replies('/meta/unsubscribe'),
      [{ id: unsubscribe.id, channel: '/meta/unsubscribe', subscription: '/u/a', successful: true }]);

    await publisher.publish('/u/a', { n: 1 });
    await publisher.publish('/u/b', { n: 2 });
    await b.waitFor(1);
    assert.deepEqual(b.messages, [{ channel: '/u/b', data: { n: 2 } }]);
    assert.deepEqual(a.messages, [{ channel: '/u/a', data: { n: 0 } }]);
    // The client drops the listener locally before unsubscribing: check the server stopped sending.
    assert.deepEqual(subscriber.tap.deliveries(),
      [{ channel: '/u/a', data: { n: 0 } }, { channel: '/u/b', data: { n: 2 } }]);
  });

  test('11. disconnect: acknowledged, held connect released, session unknown afterwards', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { timeout: 20000 });
    const client = await env.connected();
    const clientId = client.clientId;
    const cookie = client.browser.cookieHeader();
    assert.match(cookie, /^BAYEUX_BROWSER=/);

    // Positive control: this client's cookie + clientId are honoured by the server...
    const ok = await rawPost(`${env.url}/`, [{ id: '98', channel: '/raw/x', data: {}, clientId }], { cookie });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, [{ id: '98', channel: '/raw/x', successful: true }]);
    // ...and the clientId alone (no cookie) is not (--trust-client-session false).
    const noCookie = await rawPost(`${env.url}/`, [{ id: '97', channel: '/raw/x', data: {}, clientId }]);
    assert.equal(noCookie.status, 200);
    assert.deepEqual(noCookie.json, [{ id: '97', channel: '/raw/x', successful: false, error: '402::session_unknown' }]);

    // Wait for the long poll (a connect without advice) to be outstanding.
    await until(() => client.tap.pendingConnects().find((e) => !e.request[0].advice), {
      what: 'held /meta/connect', describe: () => client.tap.summary(),
    });
    const [held] = client.tap.pendingConnects();

    const reply = await client.disconnect();
    assert.equal(reply.successful, true);
    const disconnect = sentOne(client, '/meta/disconnect');
    assert.deepEqual(client.tap.replies('/meta/disconnect'), [{ id: disconnect.id, channel: '/meta/disconnect', successful: true }]);

    // The held connect is answered at once (timeout is 20 s) with reconnect:none.
    await until(() => held.doneAt !== null, { timeout: 3000, what: 'held connect released by the disconnect', describe: () => client.tap.summary() });
    assert.equal(held.status, 200);
    assert.deepEqual(held.response.filter((m) => m.channel === '/meta/connect'),
      [{ id: held.request[0].id, channel: '/meta/connect', successful: true, advice: { reconnect: 'none' } }]);
    await until(() => client.status === 'disconnected', { what: 'client disconnected' });

    // The server forgot the session: same cookie, same clientId -> 402.
    const connect = await rawPost(`${env.url}/connect`,
      [{ id: '99', channel: '/meta/connect', clientId, connectionType: 'long-polling' }], { cookie });
    assert.equal(connect.status, 200);
    assert.deepEqual(connect.json, [{
      id: '99', channel: '/meta/connect', successful: false, error: '402::session_unknown',
      advice: { reconnect: 'handshake', interval: 0 },
    }]);
    const publish = await rawPost(`${env.url}/`, [{ id: '96', channel: '/raw/x', data: {}, clientId }], { cookie });
    assert.deepEqual(publish.json, [{ id: '96', channel: '/raw/x', successful: false, error: '402::session_unknown' }]);
  });

  for (const crash of [false, true]) {
    const how = crash ? 'crash (SIGKILL)' : 'graceful restart (SIGINT)';
    test(`12. server forgets the session after a ${how}: 402, re-handshake, resubscribe`, { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t);
      const client = env.client({ name: 'survivor', config: { backoffIncrement: 100 } });
      const chat = new Collector('/r/chat');
      const subscriptions = [];
      // The documented application pattern: (re)subscribe in the /meta/handshake listener.
      client.cometd.addListener('/meta/handshake', (m) => {
        if (!m.successful) return;
        client.cometd.subscribe('/r/chat', chat.listener, (reply) => {
          subscriptions.push({ clientId: m.clientId, reply });
          notifyChange();
        });
      });
      await client.connect();
      await until(() => subscriptions.length === 1, { what: 'first subscription' });
      assert.equal(subscriptions[0].reply.successful, true);
      const firstId = client.clientId;
      const mark = client.tap.completed.length;
      const port = env.server.port;

      await env.server.restart({ crash });
      assert.equal(env.server.port, port);

      await until(() => client.handshakes.filter((m) => m.successful).length === 2, {
        timeout: 10000, what: 'automatic re-handshake', describe: () => client.tap.summary(),
      });
      await until(() => subscriptions.length === 2, { what: 'resubscription' });
      assert.equal(subscriptions[1].reply.successful, true);
      const secondId = client.clientId;
      assert.match(secondId, CLIENT_ID_RE);
      assert.notEqual(secondId, firstId, 'a re-handshake yields a new clientId');
      assert.equal(subscriptions[1].clientId, secondId);

      // What the new server answered: the old session's connect got 402 + reconnect:handshake,
      // and only then did the client handshake again.
      const after = client.tap.completed.slice(mark).flatMap((e) => (Array.isArray(e.response) ? e.response : []));
      const i402 = after.findIndex((m) => m.channel === '/meta/connect' && m.successful === false);
      assert.ok(i402 >= 0, `a failed /meta/connect reply after the restart; got ${JSON.stringify(after)}`);
      assert.deepEqual(after[i402], {
        id: after[i402].id, channel: '/meta/connect', successful: false,
        error: '402::session_unknown', advice: { reconnect: 'handshake', interval: 0 },
      });
      const connect402 = client.tap.sent().find((m) => m.channel === '/meta/connect' && m.id === after[i402].id);
      assert.equal(connect402.clientId, firstId, 'the 402 answered a connect of the forgotten session');
      const iHandshake = after.findIndex((m) => m.channel === '/meta/handshake' && m.successful === true);
      assert.ok(i402 < iHandshake, '402 came before the new handshake');

      // A publish after the re-handshake reaches the resubscribed listener.
      const publisher = await env.connected({ name: 'publisher' });
      await publisher.publish('/r/chat', { after: 'restart' });
      await chat.waitFor(1);
      assert.deepEqual(chat.messages, [{ channel: '/r/chat', data: { after: 'restart' } }]);
    });
  }

  test('13. multiple-clients: two tabs of one browser both get messages', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { 'multi-session-interval': 500 });
    const shared = env.browser('shared-browser');
    const tab1 = await env.connected({ name: 'tab1', browser: shared });
    const tab2 = await env.connected({ name: 'tab2', browser: shared });
    assert.equal(shared.setCookieHeaders.length, 1,
      `the second handshake carried the cookie, so no new Set-Cookie; got ${JSON.stringify(shared.setCookieHeaders)}`);
    const c1 = await tab1.collect('/m/chat');
    const c2 = await tab2.collect('/m/chat');

    const mc = await until(() => [tab1, tab2].flatMap((c) => c.tap.replies('/meta/connect'))
      .find((r) => r.advice && r.advice['multiple-clients']), {
      what: 'a /meta/connect reply with multiple-clients advice',
      describe: () => `${tab1.tap.summary()}\n  ${tab2.tap.summary()}`,
    });
    assert.deepEqual(mc, {
      id: mc.id, channel: '/meta/connect', successful: true,
      advice: { 'multiple-clients': true, reconnect: 'retry', interval: 500 },
    });

    const publisher = await env.connected({ name: 'publisher' });
    await publisher.publish('/m/chat', { n: 1 });
    await publisher.publish('/m/chat', { fence: true });
    const expected = [{ channel: '/m/chat', data: { n: 1 } }, { channel: '/m/chat', data: { fence: true } }];
    await c1.waitFor(2);
    await c2.waitFor(2);
    assert.deepEqual(c1.messages, expected);
    assert.deepEqual(c2.messages, expected);
    assert.deepEqual(tab1.tap.deliveries(), expected);
    assert.deepEqual(tab2.tap.deliveries(), expected);
  });

  test('14. a held connect is woken by a publish, long before the timeout', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { timeout: 20000 });
    const subscriber = await env.connected({ name: 'subscriber' });
    const channel = '/h/wake';
    const received = await subscriber.collect(channel);
    const held = await until(() => subscriber.tap.pendingConnects().find((e) => !e.request[0].advice), {
      what: 'held /meta/connect', describe: () => subscriber.tap.summary(),
    });

    const publisher = await env.connected({ name: 'publisher' });
    const start = Date.now();
    await publisher.publish(channel, { wake: true });
    await received.waitFor(1, 5000);
    const latency = Date.now() - start;
    assert.ok(latency < 5000, `delivered after ${latency} ms (server timeout 20000 ms)`);
    assert.deepEqual(received.messages, [{ channel, data: { wake: true } }]);

    // It came in the response of that held connect, together with the connect reply.
    assert.equal(held.status, 200);
    assert.equal(held.response.length, 2, `held connect response ${held.responseText}`);
    assert.deepEqual(held.response.filter((m) => m.channel === channel), [{ channel, data: { wake: true } }]);
    assert.deepEqual(held.response.filter((m) => m.channel === '/meta/connect'),
      [{ id: held.request[0].id, channel: '/meta/connect', successful: true }]);
  });

  test('15. an idle held connect is answered after --timeout, without advice', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { timeout: 1000 });
    const client = await env.connected();
    const held = await until(() => client.tap.pendingConnects().find((e) => !e.request[0].advice), {
      what: 'held /meta/connect', describe: () => client.tap.summary(),
    });
    await until(() => held.doneAt !== null, { timeout: 4000, what: 'held connect answered at the timeout' });
    const heldFor = held.doneAt - held.sentAt;
    assert.ok(heldFor >= 900, `held ${heldFor} ms, expected about the 1000 ms timeout`);
    assert.ok(heldFor < 2500, `held ${heldFor} ms, expected about the 1000 ms timeout`);
    assert.equal(held.status, 200);
    assert.deepEqual(held.response, [{ id: held.request[0].id, channel: '/meta/connect', successful: true }]);
  });

  test('16. SIGINT answers the held connect and exits 0', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { timeout: 20000 });
    const client = await env.connected();
    const held = await until(() => client.tap.pendingConnects().find((e) => !e.request[0].advice), {
      what: 'held /meta/connect', describe: () => client.tap.summary(),
    });
    const exit = await env.server.stop();
    assert.deepEqual({ code: exit.code, signal: exit.signal, forced: exit.forced }, { code: 0, signal: null, forced: false },
      `server stderr:\n${env.server.stops.at(-1)?.stderr}`);
    await until(() => held.doneAt !== null, { timeout: 2000, what: 'held connect answered on shutdown' });
    assert.equal(held.error, null, `held connect failed instead of being answered: ${held.error}`);
    assert.equal(held.status, 200);
    const replies = held.response.filter((m) => m.channel === '/meta/connect');
    assert.equal(replies.length, 1, `held connect response ${held.responseText}`);
    assert.equal(replies[0].id, held.request[0].id);
  });
});
