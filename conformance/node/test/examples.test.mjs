// The example servers of examples/ (services, auth, ticker, embedded) driven by the OFFICIAL
// CometD JavaScript client (cometd 9.x via cometd-nodejs-client 2.x), over long-polling AND
// websocket: each example is a real binary (target/debug/examples/<name>, built by
// `cargo build -p bayeux-examples --examples`; EXAMPLES_DIR overrides the folder), started
// per test on 127.0.0.1 with BIND=127.0.0.1:0 (lib/example.mjs).
//
// Same style as the other suites: exact data, assertions on what the application sees
// (callbacks, listeners) and on the wire (HTTP tap / websocket frame tap), bounded waits,
// "nothing else arrived" proven with a fence message. The one deliberate wait is in the auth
// test of a refused handshake: "the client does not retry" can only be shown by watching the
// wire for a bounded window (1.2 s; without reconnect none, cometd 9 retries a refused
// handshake after its current backoff, 0 ms the first time, then 1 s more each time).
//
// The auth example also runs as three nodes on one Redis (started by the test): presence and
// delivery to a user across nodes, and a killed node's user going offline.
//
// The chat example is exercised in a browser: conformance/browser/test/chat.test.mjs.

import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { TestClient, until, withDeadline } from '../lib/client.mjs';
import { exampleIdentity, startExample } from '../lib/example.mjs';
import { startRedis } from '../lib/redis.mjs';

const TEST_TIMEOUT = 20000;
const TRANSPORTS = ['long-polling', 'websocket'];
const EXAMPLES = ['services', 'auth', 'ticker', 'embedded'];

// ---------------------------------------------------------------------------
// Fixture and helpers

/**
 * Starts the example `name` for this test and registers the teardown (clients closed first,
 * then the process stopped). env.connected(transport, options) makes a client on `transport`,
 * handshakes (with `handshake` props, e.g. an ext) and checks the transport really in use.
 */
async function exampleEnv(t, name, { env: vars = {} } = {}) {
  const server = await startExample(name, { env: vars });
  const clients = [];
  const env = {
    server,
    url: server.url,
    origin: server.origin,
    client(transport, options = {}) {
      const client = new TestClient({ url: server.url, websocket: transport === 'websocket', ...options });
      clients.push(client);
      return client;
    },
    async connected(transport, { handshake, ...options } = {}) {
      const client = env.client(transport, options);
      await client.connect(handshake);
      assertTransport(client, transport);
      return client;
    },
  };
  t.after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.stop();
  });
  return env;
}

function assertTransport(client, transport) {
  const type = client.cometd.getTransport()?.type;
  assert.equal(type, transport, `${client.name} negotiated ${type}, not ${transport}; ${summary(client)}`);
  if (transport === 'websocket') {
    assert.equal(client.tap.exchanges.length, 0, `${client.name} sent HTTP although on websocket: ${client.tap.summary()}`);
  }
}

/** The wire tap of a client: frames for websocket, HTTP exchanges for long-polling. Same API. */
function wire(client) {
  return client.frames ?? client.tap;
}

function summary(client, last = 16) {
  return `wire of ${client.name}:\n    ${wire(client).summary(last)}`;
}

/** Messages `client` sent on `channel`, in order. */
function sentOn(client, channel) {
  return wire(client).sent().filter((m) => m && m.channel === channel);
}

/** `cometd.remoteCall(target, data, timeout, cb)`, bounded; resolves {reply, elapsed, calls}. */
async function remoteCall(client, target, data, timeout) {
  const started = Date.now();
  const calls = [];
  const reply = await withDeadline(new Promise((resolve) => {
    client.cometd.remoteCall(target, data, timeout, (message) => {
      calls.push(message);
      resolve(message);
    });
  }), timeout + 3000, `${client.name} remoteCall(${target}) callback`);
  return { reply, elapsed: Date.now() - started, calls };
}

/** The remote-call answers (messages with `data`) the server sent `client` for the call `id`. */
function answersTo(client, id) {
  return wire(client).received().filter((m) => m && m.id === id && 'data' in m);
}

/** Publishes from `client` and fails unless the reply is successful. */
async function publishOk(client, channel, data) {
  const reply = await client.publish(channel, data);
  assert.equal(reply.successful, true, `publish on ${channel} by ${client.name}: ${JSON.stringify(reply)}\n${summary(client)}`);
  return reply;
}

/** Data of the messages a Collector received. */
const dataOf = (collector) => collector.messages.map((m) => m.data);

/**
 * Resolves after `ms` if `predicate()` never became true meanwhile (checked after every client
 * event); rejects as soon as it does. The bounded wait IS the assertion (used once: no retry).
 */
async function holdsFalseFor(predicate, ms, what, describe) {
  let hit = false;
  try {
    await until(predicate, { timeout: ms });
    hit = true;
  } catch (err) {
    if (!/^timed out/.test(err.message)) throw err;
  }
  if (hit) throw new Error(`${what}\n  ${describe()}`);
}

before(() => {
  for (const name of EXAMPLES) console.log(`example under test: ${exampleIdentity(name)}`);
});

// ---------------------------------------------------------------------------
// services: remote calls answered now, later, failing, and a private message

for (const transport of TRANSPORTS) {
  describe(`example "services" over ${transport}`, () => {
    test('echo: remoteCall answers with the data it got, once, with the call id', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'services');
      const client = await env.connected(transport, { name: 'caller' });
      const data = { x: 1, s: 'é' };
      const { reply } = await remoteCall(client, 'echo', data, 5000);
      assert.equal(reply.successful, true, JSON.stringify(reply));
      assert.deepEqual(reply.data, data);
      assert.equal(reply.channel, '/service/echo');
      const [call] = sentOn(client, '/service/echo');
      assert.deepEqual(call.data, data, 'the request carried the data');
      assert.equal(reply.id, call.id, 'the answer carries the id of the call');
      assert.equal(answersTo(client, call.id).length, 1, `exactly one answer with data on the wire: ${summary(client)}`);
    });

    test('fail: remoteCall answers successful false with data {reason}', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'services');
      const client = await env.connected(transport, { name: 'caller' });
      const { reply, calls } = await remoteCall(client, 'fail', {}, 5000);
      assert.equal(reply.successful, false, JSON.stringify(reply));
      assert.deepEqual(reply.data, { reason: 'this service always fails' });
      assert.equal(reply.channel, '/service/fail');
      const [call] = sentOn(client, '/service/fail');
      assert.equal(reply.id, call.id);
      assert.equal(calls.length, 1);
    });

    test('slow: answered later from a task, {waited: 300}, after at least 300 ms', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'services');
      const client = await env.connected(transport, { name: 'caller' });
      const { reply, elapsed } = await remoteCall(client, 'slow', { delayMs: 300 }, 5000);
      assert.equal(reply.successful, true, JSON.stringify(reply));
      assert.deepEqual(reply.data, { waited: 300 });
      assert.ok(elapsed >= 300, `the answer came after ${elapsed} ms, before the 300 ms delay`);
      assert.ok(elapsed < 4000, `the answer took ${elapsed} ms`);
      const [call] = sentOn(client, '/service/slow');
      assert.equal(reply.id, call.id);
      assert.equal(answersTo(client, call.id).length, 1, summary(client));
    });

    test('slow beyond the call timeout: the client times the call out with 406::timeout', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'services');
      const client = await env.connected(transport, { name: 'caller' });
      const { reply, elapsed, calls } = await remoteCall(client, 'slow', { delayMs: 3000 }, 500);
      assert.equal(reply.successful, false, JSON.stringify(reply));
      assert.equal(reply.error, '406::timeout');
      assert.ok(elapsed >= 500 && elapsed < 3000, `timed out after ${elapsed} ms`);
      const [call] = sentOn(client, '/service/slow');
      assert.equal(reply.id, call.id);
      assert.deepEqual(answersTo(client, call.id), [], 'no answer from the server yet');
      assert.equal(calls.length, 1);
      // The server still answers, from its task, ~3 s after the call; the client drops it.
      await until(() => answersTo(client, call.id).length > 0, {
        timeout: 6000, what: 'the late answer of /service/slow on the wire', describe: () => summary(client),
      });
      assert.deepEqual(answersTo(client, call.id).map((m) => ({ successful: m.successful, data: m.data })),
        [{ successful: true, data: { waited: 3000 } }]);
      assert.equal(calls.length, 1, `the callback ran once: ${JSON.stringify(calls)}`);
    });

    test('whoami: answers with the caller clientId', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'services');
      const client = await env.connected(transport, { name: 'caller' });
      const { reply } = await remoteCall(client, 'whoami', {}, 5000);
      assert.equal(reply.successful, true, JSON.stringify(reply));
      assert.equal(typeof client.cometd.getClientId(), 'string');
      assert.deepEqual(reply.data, { clientId: client.cometd.getClientId() });
    });

    test('notify: a private message on /notifications to the caller only', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'services');
      const a = await env.connected(transport, { name: 'a' });
      const b = await env.connected(transport, { name: 'b' });
      const atA = await a.collect('/notifications');
      const atB = await b.collect('/notifications');

      await publishOk(a, '/service/notify', { text: 'hi' });
      await atA.waitFor(1);
      assert.deepEqual(atA.messages.map((m) => ({ channel: m.channel, data: m.data })),
        [{ channel: '/notifications', data: { echo: 'hi' } }]);

      // Fences: each client notifies itself once more. Had a's message also been queued for b
      // (or b's for a), it would have arrived before the fence.
      await publishOk(b, '/service/notify', { text: 'fence-b' });
      await atB.waitFor(1);
      await publishOk(a, '/service/notify', { text: 'fence-a' });
      await atA.waitFor(2);
      assert.deepEqual(dataOf(atB), [{ echo: 'fence-b' }], `b got only its own notification: ${summary(b)}`);
      assert.deepEqual(dataOf(atA), [{ echo: 'hi' }, { echo: 'fence-a' }], `a got only its own: ${summary(a)}`);
    });
  });
}

// ---------------------------------------------------------------------------
// auth: a token in the handshake ext, a publish policy, an owner-only authorizer

const BOB = { ext: { auth: { token: 's3cr3t-bob' } } };
const ALICE = { ext: { auth: { token: 's3cr3t-alice' } } };

for (const transport of TRANSPORTS) {
  describe(`example "auth" over ${transport}`, () => {
    test('a valid token in the handshake ext is accepted', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'auth');
      const bob = await env.connected(transport, { name: 'bob', handshake: BOB });
      const [hs] = sentOn(bob, '/meta/handshake');
      assert.deepEqual(hs.ext?.auth, { token: 's3cr3t-bob' }, 'the token went in the handshake ext');
      const [reply] = wire(bob).replies('/meta/handshake');
      assert.equal(reply.successful, true, JSON.stringify(reply));
      assert.equal(typeof reply.clientId, 'string');
      assert.equal(bob.clientId, reply.clientId);
      assert.equal(bob.cometd.isDisconnected(), false);
    });

    test('a bad or missing token: 403::handshake_denied, reconnect none, and no retry', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'auth');
      const cases = [
        { client: env.client(transport, { name: 'mallory' }), props: { ext: { auth: { token: 's3cr3t-mallory' } } } },
        { client: env.client(transport, { name: 'anonymous' }), props: undefined },
      ];
      const replies = await Promise.all(cases.map(({ client, props }) => client.handshake(props)));
      for (const [i, { client }] of cases.entries()) {
        const reply = replies[i];
        assert.equal(reply.successful, false, `${client.name}: ${JSON.stringify(reply)}`);
        assert.equal(reply.error, '403::handshake_denied', `${client.name}: ${JSON.stringify(reply)}`);
        assert.deepEqual(reply.advice, { reconnect: 'none' }, `${client.name}: ${JSON.stringify(reply)}`);
        // The /meta/handshake listener saw that same reply.
        assert.equal(client.handshakes.length, 1, JSON.stringify(client.handshakes));
        assert.equal(client.handshakes[0], reply);
        // ... and it is what the server sent (not a client-made failure).
        const onWire = wire(client).replies('/meta/handshake');
        assert.equal(onWire.length, 1, summary(client));
        assert.equal(onWire[0].successful, false);
        assert.equal(onWire[0].error, '403::handshake_denied');
        assert.deepEqual(onWire[0].advice, { reconnect: 'none' });
        assert.equal(onWire[0].clientId, undefined, `no clientId in a refused handshake: ${JSON.stringify(onWire[0])}`);
      }
      // No retry: exactly one handshake request each, for a bounded window.
      const handshakesSent = () => cases.map(({ client }) => sentOn(client, '/meta/handshake').length);
      await holdsFalseFor(() => handshakesSent().some((n) => n !== 1), 1200,
        'a client sent another handshake after 403::handshake_denied with reconnect none',
        () => cases.map(({ client }) => summary(client)).join('\n  '));
      assert.deepEqual(handshakesSent(), [1, 1]);
      for (const { client } of cases) {
        assert.equal(client.status, 'disconnected', `${client.name} status`);
        assert.deepEqual(sentOn(client, '/meta/connect'), [], `${client.name} sent no connect`);
      }
    });

    test('/announcements: bob may not publish, alice (admin) may, and bob receives it', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'auth');
      const bob = await env.connected(transport, { name: 'bob', handshake: BOB });
      const alice = await env.connected(transport, { name: 'alice', handshake: ALICE });
      const atBob = await bob.collect('/announcements');

      const denied = await bob.publish('/announcements', { text: 'from bob' });
      assert.equal(denied.successful, false, JSON.stringify(denied));
      assert.equal(denied.error, '403:denied_by_security_policy:publish_denied');

      const data = { text: 'from alice' };
      await publishOk(alice, '/announcements', data);
      await atBob.waitFor(1);
      // Exactly alice's: bob's refused message, published first, would have come before it.
      assert.deepEqual(atBob.messages.map((m) => ({ channel: m.channel, data: m.data })),
        [{ channel: '/announcements', data }], summary(bob));
    });

    test('/private/<user>/**: bob may not subscribe to alice\'s inbox, may to his own', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'auth');
      const bob = await env.connected(transport, { name: 'bob', handshake: BOB });
      const foreign = await bob.subscribe('/private/alice/inbox');
      assert.equal(foreign.reply.successful, false, JSON.stringify(foreign.reply));
      assert.equal(foreign.reply.error, '403:not_owner:subscribe_denied');
      const own = await bob.subscribe('/private/bob/inbox');
      assert.equal(own.reply.successful, true, JSON.stringify(own.reply));
      assert.equal(own.reply.subscription, '/private/bob/inbox');
    });

    test('presence: a user joins with its first session and leaves with its last; a whisper reaches all its sessions', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'auth');
      const bob = await env.connected(transport, { name: 'bob', handshake: BOB });
      const presence = await bob.collect('/presence');
      const tab1 = await env.connected(transport, { name: 'alice-tab1', handshake: ALICE });
      await presence.waitFor(1);
      const tab2 = await env.connected(transport, { name: 'alice-tab2', handshake: ALICE });
      const whispers = [await tab1.collect('/whisper'), await tab2.collect('/whisper')];

      const call = await remoteCall(bob, 'whisper', { to: 'alice', text: 'psst' }, 5000);
      assert.equal(call.reply.successful, true, JSON.stringify(call.reply));
      assert.deepEqual(call.reply.data, { online: true });
      for (const w of whispers) {
        await w.waitFor(1);
        assert.deepEqual(dataOf(w), [{ from: 'bob', text: 'psst' }]);
      }
      const nobody = await remoteCall(bob, 'whisper', { to: 'carol', text: 'hello?' }, 5000);
      assert.deepEqual(nobody.reply.data, { online: false });

      // The second tab neither joined nor leaves: only the last session's end does.
      await tab1.disconnect();
      await tab2.disconnect();
      await presence.waitFor(2);
      // Clients cannot forge presence events.
      const forged = await bob.publish('/presence', { user: 'alice', online: true });
      assert.equal(forged.error, '403:denied_by_security_policy:publish_denied');
      await holdsFalseFor(() => presence.messages.length > 2, 500, 'a third presence event', () => summary(bob));
      assert.deepEqual(dataOf(presence), [
        { user: 'alice', online: true },
        { user: 'alice', online: false },
      ], summary(bob));
    });
  });
}

// ---------------------------------------------------------------------------
// auth as three nodes on one Redis: presence and delivery to a user across the cluster

for (const transport of TRANSPORTS) {
  describe(`example "auth" as a cluster over ${transport}`, () => {
    test('presence is cluster-wide; a whisper reaches a user on every node; a killed node\'s user goes offline', { timeout: 60000 }, async (t) => {
      const redis = await startRedis(t);
      // Short timeout and maxInterval: a dead node's sessions are removed 4 s after it is
      // found dead (timeout + interval + maxInterval), and its users leave with them.
      const node = async (name) => {
        const server = await startExample('auth', {
          env: { BACKPLANE: redis.url, NODE_NAME: name, TIMEOUT_MS: '2000', MAX_INTERVAL_MS: '2000' },
        });
        t.after(() => server.stop());
        return server;
      };
      const [a, b, c] = [await node('a'), await node('b'), await node('c')];
      const clients = [];
      t.after(() => Promise.all(clients.map((cl) => cl.close())));
      const connected = async (server, name, handshake) => {
        const client = new TestClient({ url: server.url, name, websocket: transport === 'websocket' });
        clients.push(client);
        await client.connect(handshake);
        assertTransport(client, transport);
        return client;
      };
      const who = async (client) => {
        const { reply } = await remoteCall(client, 'who', {}, 5000);
        assert.equal(reply.successful, true, JSON.stringify(reply));
        return reply.data.users;
      };

      const bob = await connected(a, 'bob@a', BOB);
      const presence = await bob.collect('/presence');
      const tab1 = await connected(b, 'alice-tab1@b', ALICE);
      await presence.waitFor(1);
      // Node a counted alice in before its subscriber saw the event.
      assert.deepEqual(await who(bob), ['alice', 'bob']);
      const tab2 = await connected(c, 'alice-tab2@c', ALICE);
      const whispers = [await tab1.collect('/whisper'), await tab2.collect('/whisper')];

      // The service runs on a; alice's sessions are on b and c.
      const call = await remoteCall(bob, 'whisper', { to: 'alice', text: 'psst' }, 5000);
      assert.deepEqual(call.reply.data, { online: true });
      for (const w of whispers) {
        await w.waitFor(1);
        assert.deepEqual(dataOf(w), [{ from: 'bob', text: 'psst' }]);
      }
      const nobody = await remoteCall(bob, 'whisper', { to: 'carol', text: 'hello?' }, 5000);
      assert.deepEqual(nobody.reply.data, { online: false });

      // Alice's first tab ends; her second, on c, keeps her online.
      await tab1.disconnect();
      // Then c dies with that second tab's session, whose client goes away too.
      const killedAt = Date.now();
      await c.kill();
      await tab2.close();
      await presence.waitFor(2, 20000);
      const offlineAfter = Date.now() - killedAt;
      assert.deepEqual(dataOf(presence), [
        { user: 'alice', online: true },
        { user: 'alice', online: false },
      ], summary(bob));
      // Not before her session could have come back: node TTL 2 s, then 4 s of grace.
      assert.ok(offlineAfter >= 4000, `alice left ${offlineAfter} ms after her node died`);
      assert.deepEqual(await who(bob), ['bob']);
      const late = await remoteCall(bob, 'whisper', { to: 'alice', text: 'gone?' }, 5000);
      assert.deepEqual(late.reply.data, { online: false });
      assert.deepEqual(dataOf(whispers[0]), [{ from: 'bob', text: 'psst' }]);
    });
  });
}

// ---------------------------------------------------------------------------
// ticker: a server-side task publishing {tick: n} every TICK_MS

for (const transport of TRANSPORTS) {
  describe(`example "ticker" over ${transport}`, () => {
    test('a subscriber to /ticker receives consecutive ticks', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'ticker', { env: { TICK_MS: '100' } });
      const client = await env.connected(transport, { name: 'watcher' });
      const ticks = await client.collect('/ticker');
      await ticks.waitFor(3, 3000);
      const got = ticks.messages.slice(0, 3);
      assert.ok(got.every((m) => m.channel === '/ticker'), JSON.stringify(got));
      const n = got[0].data?.tick;
      assert.ok(Number.isInteger(n) && n >= 1, `first tick ${JSON.stringify(got[0].data)}`);
      assert.deepEqual(got.map((m) => m.data), [{ tick: n }, { tick: n + 1 }, { tick: n + 2 }]);
    });
  });
}

// ---------------------------------------------------------------------------
// embedded: an actix-web route publishing to Bayeux subscribers

for (const transport of TRANSPORTS) {
  describe(`example "embedded" over ${transport}`, () => {
    test('POST /announce reaches the subscriber of /announcements', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await exampleEnv(t, 'embedded');
      const client = await env.connected(transport, { name: 'listener' });
      const announcements = await client.collect('/announcements');

      const post = async (body) => {
        const response = await fetch(`${env.origin}/announce`, {
          method: 'POST', body, signal: AbortSignal.timeout(5000),
        });
        return { status: response.status, text: await response.text() };
      };
      assert.deepEqual(await post('hello'), { status: 200, text: 'published\n' });
      await announcements.waitFor(1);
      assert.deepEqual(announcements.messages.map((m) => ({ channel: m.channel, data: m.data })),
        [{ channel: '/announcements', data: { text: 'hello' } }]);

      // Once unsubscribed, nobody receives it: subscribed again, the client gets only what
      // was published after.
      const unsubscribed = await client.unsubscribe(announcements.subscription);
      assert.equal(unsubscribed.successful, true, JSON.stringify(unsubscribed));
      assert.deepEqual(await post('bye'), { status: 200, text: 'published\n' });
      const again = await client.collect('/announcements');
      assert.deepEqual(await post('back'), { status: 200, text: 'published\n' });
      await again.waitFor(1);
      assert.deepEqual(again.messages.map((m) => m.data), [{ text: 'back' }]);
    });
  });
}
