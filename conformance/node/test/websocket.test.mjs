// Conformance of bayeuxd with the OFFICIAL CometD JavaScript client (cometd 9.x via
// cometd-nodejs-client 2.x) over the websocket transport, which the client tries first.
//
// Same fixture and style as long-polling.test.mjs: a fresh server per test, assertions on
// what the application sees (listeners, callbacks) and on what the server really sent (the
// frame tap of lib/client.mjs records every websocket frame, socket and close code), and
// "nothing else arrived" proven with a fence message, never a sleep.
//
// Every test checks that the transport in use is websocket: if the server refused the
// upgrade the client would silently fall back to long-polling and the suite would prove
// nothing about websocket. (cometd 9 exposes the type as `getTransport().type`; there is no
// getType() method.) The Node websocket sends no cookies: the server must find websocket
// sessions by clientId.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket as RawWebSocket } from 'ws';
import { startEnv } from '../lib/fixture.mjs';
import { Collector, notifyChange, until, withDeadline } from '../lib/client.mjs';

const CLIENT_ID_RE = /^[A-Za-z0-9]{16,}$/;
const TEST_TIMEOUT = 30000;
const ALL_TRANSPORTS = ['websocket', 'long-polling', 'callback-polling'];

/** A websocket client of `env`, handshaken and connected; asserts the transport is websocket. */
async function wsConnected(env, options = {}) {
  const client = env.client({ websocket: true, ...options });
  await client.connect();
  assertWebSocket(client);
  return client;
}

function assertWebSocket(client) {
  const type = client.cometd.getTransport()?.type;
  assert.equal(type, 'websocket',
    `${client.name} negotiated ${type}, not websocket; frames:\n    ${client.frames.summary()}\n    http: ${client.tap.summary()}`);
  assert.equal(client.tap.exchanges.length, 0,
    `${client.name} sent HTTP requests although on websocket: ${client.tap.summary()}`);
}

/** The single message of `client`'s outgoing frames on `channel` (fails if not exactly one). */
function sentOne(client, channel) {
  const sent = client.frames.sent().filter((m) => m.channel === channel);
  assert.equal(sent.length, 1, `${client.name} sent ${sent.length} messages on ${channel}`);
  return sent[0];
}

/** Waits until `client` has a /meta/connect without advice outstanding; returns that message. */
function heldConnect(client) {
  return until(() => client.frames.pendingConnects().find((m) => !m.advice), {
    what: `${client.name} held /meta/connect`, describe: () => client.frames.summary(),
  });
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

/**
 * Opens a raw socket (no CometD client), sends `messages` in one frame and resolves with the
 * first frame received, parsed. Bounded.
 */
async function rawWsRequest(httpUrl, messages, timeout = 5000) {
  const socket = new RawWebSocket(httpUrl.replace(/^http/, 'ws'));
  try {
    return await withDeadline(new Promise((resolve, reject) => {
      socket.once('open', () => socket.send(JSON.stringify(messages)));
      socket.once('message', (data) => resolve(JSON.parse(data.toString('utf8'))));
      socket.once('error', reject);
      socket.once('close', (code) => reject(new Error(`socket closed (${code}) before a reply`)));
    }), timeout, `raw websocket reply to ${JSON.stringify(messages)}`);
  } finally {
    socket.terminate();
  }
}

describe('websocket with the official CometD client', { timeout: 120000 }, () => {
  test('1. handshake over websocket: one socket, exact replies, no HTTP at all', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const client = env.client({ websocket: true });
    const reply = await client.handshake();
    assert.equal(client.handshakes.length, 1, 'the /meta/handshake listener is called exactly once');
    assert.equal(reply.successful, true);
    assert.match(reply.clientId, CLIENT_ID_RE);
    assert.deepEqual(reply.supportedConnectionTypes, ALL_TRANSPORTS);

    // Wire: the handshake was the first frame of socket 1, answered by one frame with the exact reply.
    await until(() => client.connects.length >= 1, { what: 'first /meta/connect reply', describe: () => client.frames.summary() });
    assertWebSocket(client);
    assert.equal(client.frames.sockets.length, 1, 'one socket');
    const socket = client.frames.sockets[0];
    assert.equal(socket.status, 101);
    assert.equal(socket.headers['sec-websocket-protocol'], undefined, 'C60: no subprotocol selected');
    assert.equal(new URL(socket.url).pathname, '/cometd');
    const [out1, out2] = client.frames.framesOut();
    assert.equal(out1.messages.length, 1);
    const hs = out1.messages[0];
    assert.equal(hs.channel, '/meta/handshake');
    assert.ok(hs.supportedConnectionTypes.includes('websocket'), `client offered ${hs.supportedConnectionTypes}`);
    const [in1, in2] = client.frames.framesIn();
    assert.deepEqual(in1.messages, [{
      id: hs.id,
      channel: '/meta/handshake',
      successful: true,
      version: '1.0',
      minimumVersion: '1.0',
      clientId: reply.clientId,
      supportedConnectionTypes: ALL_TRANSPORTS,
      advice: { reconnect: 'retry', interval: 0, timeout: 2000 },
    }]);
    assert.ok(in1.text.startsWith('['), `C61: the reply frame is an array: ${in1.text}`);

    // First connect: connectionType websocket, advice timeout 0, answered with full advice.
    assert.deepEqual(out2.messages, [{
      id: out2.messages[0].id, channel: '/meta/connect', connectionType: 'websocket',
      advice: { timeout: 0 }, clientId: reply.clientId,
    }]);
    assert.deepEqual(in2.messages, [{
      id: out2.messages[0].id, channel: '/meta/connect', successful: true,
      advice: { reconnect: 'retry', interval: 0, timeout: 2000 },
    }]);
    assert.equal(client.connects[0].successful, true);
  });

  test('2. subscribe, publish, receive own message', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const client = await wsConnected(env);
    const channel = '/s2/chat';
    const chat = await client.collect(channel);
    const subscribe = sentOne(client, '/meta/subscribe');
    assert.deepEqual(client.frames.replies('/meta/subscribe'),
      [{ id: subscribe.id, channel: '/meta/subscribe', subscription: channel, successful: true }]);

    const data = { text: 'hello', n: 1, f: 1.5, neg: -7, yes: true, no: false, nothing: null, list: [1, 'two', { three: 3 }], nested: { a: { b: [] } }, empty: {} };
    const reply = await client.publish(channel, data);
    assert.equal(reply.successful, true);
    const publish = sentOne(client, channel);
    // The publish reply: no data (the client would take it for a delivery), same id.
    assert.deepEqual(client.frames.replies(channel), [{ id: publish.id, channel, successful: true }]);

    const [message] = await chat.waitFor(1);
    assert.deepEqual(message, { channel, data });

    await client.publish(channel, { fence: true });
    await chat.waitFor(2);
    const expected = [{ channel, data }, { channel, data: { fence: true } }];
    assert.deepEqual(chat.messages, expected);
    assert.deepEqual(client.frames.deliveries(), expected);
    assertWebSocket(client);
  });

  test('3. fan-out to three clients: exactly one copy each', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await wsConnected(env));
    assert.equal(new Set(clients.map((c) => c.clientId)).size, 3);
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
      assert.deepEqual(clients[i].frames.deliveries(), expected, `wire of client ${i}`);
      assertWebSocket(clients[i]);
    }
  });

  test('4. wildcards: /w/* one level, /w/** all levels, one wire delivery per message', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const one = await wsConnected(env, { name: 'star' });
    const all = await wsConnected(env, { name: 'starstar' });
    const both = await wsConnected(env, { name: 'overlapping' });
    const publisher = await wsConnected(env, { name: 'publisher' });

    // An incoming extension taps every message the client processes (after the frame tap).
    const tapped = [];
    both.cometd.registerExtension('tap', {
      incoming: (m) => {
        if (typeof m.channel === 'string' && m.channel.startsWith('/w/')) tapped.push(m);
        return m;
      },
    });

    const star = await one.collect('/w/*');
    const starStar = await all.collect('/w/**');
    const bothStar = await both.collect('/w/*');
    const bothStarStar = await both.collect('/w/**');
    const bothExact = await both.collect('/w/a');

    await publisher.publish('/w/a', { n: 1 });
    await publisher.publish('/w/a/b', { n: 2 });
    await publisher.publish('/w/z', { fence: true });
    const m1 = { channel: '/w/a', data: { n: 1 } };
    const m2 = { channel: '/w/a/b', data: { n: 2 } };
    const fence = { channel: '/w/z', data: { fence: true } };

    await star.waitFor(2);
    assert.deepEqual(star.messages, [m1, fence]);
    assert.deepEqual(one.frames.deliveries(), [m1, fence], '/w/* subscriber must not be sent /w/a/b');

    await starStar.waitFor(3);
    assert.deepEqual(starStar.messages, [m1, m2, fence]);
    assert.deepEqual(all.frames.deliveries(), [m1, m2, fence]);

    await until(() => both.frames.deliveries('/w/z').length > 0, { what: 'fence at the overlapping client', describe: () => both.frames.summary() });
    assert.deepEqual(both.frames.deliveries(), [m1, m2, fence]);
    assert.deepEqual(tapped.filter((m) => !('successful' in m)), [m1, m2, fence], 'one copy per publish through the extension');
    assert.deepEqual(bothExact.messages, [m1]);
    assert.deepEqual(bothStar.messages, [m1, fence]);
    assert.deepEqual(bothStarStar.messages, [m1, m2, fence]);
    assert.deepEqual(publisher.frames.deliveries(), [], 'the publisher subscribed to nothing');
  });

  test('5. service channel: publish acknowledged, never broadcast to subscribers', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const sender = await wsConnected(env, { name: 'sender' });
    const watcher = await wsConnected(env, { name: 'watcher' });

    const { reply: subReply, collector: echoWatch } = await watcher.subscribe('/service/echo');
    assert.equal(subReply.successful, true);
    const fence = await watcher.collect('/s5/fence');

    const reply = await sender.publish('/service/echo', { q: 'ping' });
    assert.equal(reply.successful, true);
    const publish = sentOne(sender, '/service/echo');
    assert.deepEqual(sender.frames.replies('/service/echo'), [{ id: publish.id, channel: '/service/echo', successful: true }]);

    await sender.publish('/s5/fence', { fence: true });
    await fence.waitFor(1);
    assert.deepEqual(watcher.frames.deliveries(), [{ channel: '/s5/fence', data: { fence: true } }]);
    assert.deepEqual(echoWatch.messages, []);
  });

  test('6. batch: 5 publishes in ONE frame, replies and deliveries in order', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const publisher = await wsConnected(env, { name: 'publisher' });
    const subscriber = await wsConnected(env, { name: 'subscriber' });
    const channel = '/b/batch';
    const received = await subscriber.collect(channel);

    const replies = [];
    publisher.cometd.batch(() => {
      for (let i = 1; i <= 5; i++) {
        publisher.cometd.publish(channel, { i }, (r) => { replies.push(r); notifyChange(); });
      }
    });
    await until(() => replies.length === 5, { what: '5 publish callbacks', describe: () => publisher.frames.summary() });
    assert.deepEqual(replies.map((r) => r.successful), [true, true, true, true, true]);

    const frames = publisher.frames.framesWith(channel);
    assert.equal(frames.length, 1, 'the 5 publishes travelled in ONE websocket frame');
    const [batch] = frames;
    assert.deepEqual(batch.messages.map((m) => ({ channel: m.channel, data: m.data })),
      [1, 2, 3, 4, 5].map((i) => ({ channel, data: { i } })));
    assert.deepEqual(publisher.frames.replies(channel), batch.messages.map((m) => ({ id: m.id, channel, successful: true })));

    await publisher.publish(channel, { fence: true });
    await received.waitFor(6);
    const expected = [1, 2, 3, 4, 5].map((i) => ({ channel, data: { i } }));
    expected.push({ channel, data: { fence: true } });
    assert.deepEqual(received.messages, expected);
    assert.deepEqual(subscriber.frames.deliveries(), expected);
  });

  test('7. 200 messages from one client arrive in order at another', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const publisher = await wsConnected(env, { name: 'publisher' });
    const subscriber = await wsConnected(env, { name: 'subscriber' });
    const channel = '/o/seq';
    const received = await subscriber.collect(channel);

    const replies = await Promise.all(Array.from({ length: 200 }, (_, seq) => publisher.publish(channel, { seq }, 20000)));
    assert.equal(replies.filter((r) => r.successful === true).length, 200);
    await publisher.publish(channel, { fence: true });

    await received.waitFor(201, 20000);
    const expected = Array.from({ length: 200 }, (_, seq) => ({ channel, data: { seq } }));
    expected.push({ channel, data: { fence: true } });
    assert.deepEqual(received.messages, expected);
    assert.deepEqual(subscriber.frames.deliveries(), expected);
    assertWebSocket(publisher);
  });

  test('8. a ~100 KB message round-trips exactly', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const publisher = await wsConnected(env, { name: 'publisher', config: { maxSendBayeuxMessageSize: 2 * 1024 * 1024 } });
    const subscriber = await wsConnected(env, { name: 'subscriber' });
    const channel = '/big/one';
    const received = await subscriber.collect(channel);
    const own = await publisher.collect(channel);

    const data = {
      text: makeText(100 * 1024),
      rows: Array.from({ length: 64 }, (_, i) => ({ i, s: 'y'.repeat(i), even: i % 2 === 0 })),
    };
    const reply = await publisher.publish(channel, data, 10000);
    assert.equal(reply.successful, true, `publish reply ${JSON.stringify(reply)}`);
    const [bigFrame] = publisher.frames.framesWith(channel).filter((f) => f.messages.some((m) => m.data));
    assert.ok(bigFrame.text.length > 100 * 1024, `frame of ${bigFrame.text.length} chars`);

    const [message] = await received.waitFor(1, 10000);
    assert.deepEqual(message, { channel, data });
    const [mine] = await own.waitFor(1, 10000);
    assert.deepEqual(mine, { channel, data });
    assertWebSocket(publisher);
  });

  test('9. unicode data round-trips exactly', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const publisher = await wsConnected(env, { name: 'publisher' });
    const subscriber = await wsConnected(env, { name: 'subscriber' });
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
    const subscriber = await wsConnected(env, { name: 'subscriber' });
    const publisher = await wsConnected(env, { name: 'publisher' });
    const a = await subscriber.collect('/u/a');
    const b = await subscriber.collect('/u/b');

    await publisher.publish('/u/a', { n: 0 });
    await a.waitFor(1);

    const reply = await subscriber.unsubscribe(a.subscription);
    assert.equal(reply.successful, true);
    const unsubscribe = sentOne(subscriber, '/meta/unsubscribe');
    assert.deepEqual(subscriber.frames.replies('/meta/unsubscribe'),
      [{ id: unsubscribe.id, channel: '/meta/unsubscribe', subscription: '/u/a', successful: true }]);

    await publisher.publish('/u/a', { n: 1 });
    await publisher.publish('/u/b', { n: 2 });
    await b.waitFor(1);
    assert.deepEqual(b.messages, [{ channel: '/u/b', data: { n: 2 } }]);
    assert.deepEqual(a.messages, [{ channel: '/u/a', data: { n: 0 } }]);
    assert.deepEqual(subscriber.frames.deliveries(),
      [{ channel: '/u/a', data: { n: 0 } }, { channel: '/u/b', data: { n: 2 } }]);
  });

  test('11. disconnect: acknowledged, held connect released, session unknown afterwards (also on a new socket)', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { timeout: 20000 });
    const client = await wsConnected(env);
    const clientId = client.clientId;
    const held = await heldConnect(client);

    const reply = await client.disconnect();
    assert.equal(reply.successful, true);
    const disconnect = sentOne(client, '/meta/disconnect');
    assert.deepEqual(client.frames.replies('/meta/disconnect'), [{ id: disconnect.id, channel: '/meta/disconnect', successful: true }]);

    // The held connect is answered at once (timeout is 20 s) with reconnect:none.
    const connectReply = await until(() => client.frames.replyTo(held.id), {
      timeout: 3000, what: 'held connect released by the disconnect', describe: () => client.frames.summary(),
    });
    assert.deepEqual(connectReply, { id: held.id, channel: '/meta/connect', successful: true, advice: { reconnect: 'none' } });
    await until(() => client.status === 'disconnected', { what: 'client disconnected' });

    // The server forgot the session: a new socket presenting the clientId gets 402.
    const [answer] = await rawWsRequest(env.url, [{ id: '99', channel: '/meta/connect', connectionType: 'websocket', advice: { timeout: 0 }, clientId }]);
    assert.deepEqual(answer, {
      id: '99', channel: '/meta/connect', successful: false, error: '402::session_unknown',
      advice: { reconnect: 'handshake', interval: 0 },
    });
  });

  for (const crash of [false, true]) {
    const how = crash ? 'crash (SIGKILL)' : 'graceful restart (SIGINT)';
    test(`12. server forgets the session after a ${how}: 402, re-handshake over websocket, resubscribe`, { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t);
      const client = env.client({ name: 'survivor', websocket: true, config: { backoffIncrement: 100 } });
      const chat = new Collector('/r/chat');
      const subscriptions = [];
      client.cometd.addListener('/meta/handshake', (m) => {
        if (!m.successful) return;
        client.cometd.subscribe('/r/chat', chat.listener, (reply) => {
          subscriptions.push({ clientId: m.clientId, reply });
          notifyChange();
        });
      });
      await client.connect();
      assertWebSocket(client);
      await until(() => subscriptions.length === 1, { what: 'first subscription' });
      const firstId = client.clientId;
      const mark = client.frames.frames.length;

      await env.server.restart({ crash });

      await until(() => client.handshakes.filter((m) => m.successful).length === 2, {
        timeout: 10000, what: 'automatic re-handshake', describe: () => client.frames.summary(),
      });
      await until(() => subscriptions.length === 2, { what: 'resubscription' });
      assert.equal(subscriptions[1].reply.successful, true);
      const secondId = client.clientId;
      assert.match(secondId, CLIENT_ID_RE);
      assert.notEqual(secondId, firstId);
      assertWebSocket(client);

      const after = client.frames.frames.slice(mark).filter((f) => f.dir === 'in').flatMap((f) => f.messages ?? []);
      const i402 = after.findIndex((m) => m.channel === '/meta/connect' && m.successful === false);
      assert.ok(i402 >= 0, `a failed /meta/connect reply after the restart; got ${JSON.stringify(after)}`);
      assert.deepEqual(after[i402], {
        id: after[i402].id, channel: '/meta/connect', successful: false,
        error: '402::session_unknown', advice: { reconnect: 'handshake', interval: 0 },
      });
      const connect402 = client.frames.sent().find((m) => m.channel === '/meta/connect' && m.id === after[i402].id);
      assert.equal(connect402.clientId, firstId, 'the 402 answered a connect of the forgotten session');
      const iHandshake = after.findIndex((m) => m.channel === '/meta/handshake' && m.successful === true);
      assert.ok(i402 < iHandshake, '402 came before the new handshake');
      assert.ok(client.frames.sockets.length >= 2, 'a new socket to the new server');

      const publisher = await wsConnected(env, { name: 'publisher' });
      await publisher.publish('/r/chat', { after: 'restart' });
      await chat.waitFor(1);
      assert.deepEqual(chat.messages, [{ channel: '/r/chat', data: { after: 'restart' } }]);
    });
  }

  test('13. a delivery is pushed while /meta/connect is held (timeout 20 s)', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { timeout: 20000 });
    const subscriber = await wsConnected(env, { name: 'subscriber' });
    const channel = '/h/push';
    const received = await subscriber.collect(channel);
    const held = await heldConnect(subscriber);

    const publisher = await wsConnected(env, { name: 'publisher' });
    const start = Date.now();
    await publisher.publish(channel, { push: true });
    await received.waitFor(1, 5000);
    const latency = Date.now() - start;
    assert.ok(latency < 5000, `delivered after ${latency} ms (server timeout 20000 ms)`);
    assert.deepEqual(received.messages, [{ channel, data: { push: true } }]);

    // It arrived in a frame of its own while that connect was (and still is) outstanding.
    const deliveryFrame = subscriber.frames.framesIn().find((f) => (f.messages ?? []).some((m) => m.channel === channel));
    assert.deepEqual(deliveryFrame.messages, [{ channel, data: { push: true } }]);
    assert.equal(subscriber.frames.replyTo(held.id), undefined, 'the held connect was not answered by the delivery');
    assert.deepEqual(subscriber.frames.pendingConnects().map((m) => m.id), [held.id]);
  });

  test('14. the socket breaks: /meta/connect with the same clientId on a new socket, no re-handshake', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { timeout: 20000, 'max-interval': 10000 });
    const client = await wsConnected(env, { name: 'blip', config: { backoffIncrement: 100 } });
    const clientId = client.clientId;
    const channel = '/n/blip';
    const received = await client.collect(channel);
    await heldConnect(client);
    assert.equal(client.frames.sockets.length, 1);

    // Break the real `ws` socket from outside (TCP destroyed, no close frame).
    const first = client.frames.current;
    first.ws.terminate();
    await until(() => first.close !== null, { what: 'first socket closed', describe: () => client.frames.summary() });

    // The client reconnects on a new socket with the same clientId and advice timeout 0.
    const reconnect = await until(() => client.frames.framesOut().find((f) => f.socket === 2 &&
      (f.messages ?? []).some((m) => m.channel === '/meta/connect')), {
      timeout: 5000, what: '/meta/connect on a second socket', describe: () => client.frames.summary(),
    });
    const connect = reconnect.messages.find((m) => m.channel === '/meta/connect');
    assert.deepEqual(connect, {
      id: connect.id, channel: '/meta/connect', connectionType: 'websocket', advice: { timeout: 0 }, clientId,
    });
    const reply = await until(() => client.frames.replyTo(connect.id), {
      what: 'reply to the reconnect', describe: () => client.frames.summary(),
    });
    assert.deepEqual(reply, {
      id: connect.id, channel: '/meta/connect', successful: true,
      advice: { reconnect: 'retry', interval: 0, timeout: 20000 },
    });

    // Still the same session with its subscription, delivered on the new socket.
    const publisher = await wsConnected(env, { name: 'publisher' });
    await publisher.publish(channel, { after: 'blip' });
    await received.waitFor(1);
    assert.deepEqual(received.messages, [{ channel, data: { after: 'blip' } }]);
    const deliveryFrame = client.frames.framesIn().find((f) => (f.messages ?? []).some((m) => m.channel === channel));
    assert.equal(deliveryFrame.socket, 2);
    assert.equal(client.clientId, clientId);
    assert.equal(client.handshakes.length, 1, 'no re-handshake: /meta/handshake listener called once');
    assert.equal(client.frames.sent().filter((m) => m.channel === '/meta/handshake').length, 1);
    assertWebSocket(client);
  });

  test('15. an idle held connect is answered at --timeout with its id, without advice', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { timeout: 2000 });
    const client = await wsConnected(env);
    const held = await heldConnect(client);
    const sentAt = Date.now();
    const reply = await until(() => client.frames.replyTo(held.id), {
      timeout: 6000, what: 'held connect answered at the timeout', describe: () => client.frames.summary(),
    });
    const heldFor = Date.now() - sentAt;
    assert.ok(heldFor >= 1700 && heldFor < 3500, `held ${heldFor} ms, expected about 2000 ms`);
    assert.deepEqual(reply, { id: held.id, channel: '/meta/connect', successful: true });
    const frame = client.frames.framesIn().find((f) => (f.messages ?? []).some((m) => m.id === held.id));
    assert.deepEqual(frame.messages, [reply]);
    assertWebSocket(client);
  });

  test('16. websocket not allowed by the server: upgrade refused, the client falls back to long-polling', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { 'allowed-transports': 'long-polling' });
    const client = env.client({ websocket: true, config: { backoffIncrement: 100 } });
    // The first handshake (over websocket) fails; the client renegotiates and handshakes again.
    client.cometd.handshake();
    await until(() => client.connects.some((m) => m.successful), {
      what: 'connected after falling back', describe: () => `${client.frames.summary()}\n    ${client.tap.summary()}`,
    });
    assert.equal(client.cometd.getTransport()?.type, 'long-polling');
    assert.ok(client.frames.sockets.length >= 1, 'the client tried websocket first');
    assert.equal(client.frames.sockets[0].openedAt, null, 'the upgrade was refused');
    assert.match(client.frames.sockets[0].error ?? '', /400/, `upgrade error ${client.frames.sockets[0].error}`);
    const channel = '/f/back';
    const chat = await client.collect(channel);
    await client.publish(channel, { over: 'long-polling' });
    await chat.waitFor(1);
    assert.deepEqual(chat.messages, [{ channel, data: { over: 'long-polling' } }]);
    const handshakeReply = client.handshakes.filter((m) => m.successful).at(-1);
    assert.deepEqual(handshakeReply.supportedConnectionTypes, ['long-polling']);
  });

  test('17. SIGINT answers the held websocket connect and exits 0 (within the 3 s grace)', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { timeout: 20000 });
    const client = await wsConnected(env);
    const held = await heldConnect(client);
    const exit = await env.server.stop();
    const reply = await until(() => client.frames.replyTo(held.id), {
      timeout: 2000, what: 'held connect answered on shutdown', describe: () => client.frames.summary(),
    });
    assert.equal(reply.channel, '/meta/connect');
    assert.equal(typeof reply.successful, 'boolean');
    assert.deepEqual({ code: exit.code, signal: exit.signal, forced: exit.forced }, { code: 0, signal: null, forced: false },
      `server stderr:\n${env.server.stops.at(-1)?.stderr}`);
  });
});
