// Server-side extensions of bayeuxd driven by the OFFICIAL CometD JavaScript client's
// extensions (cometd 9.x: AckExtension, TimeSyncExtension, BinaryExtension, TimeStampExtension),
// over long-polling AND websocket (every scenario is parameterised on the transport), plus raw
// HTTP requests with chosen ext.ack / ext.timesync values.
//
// PROTOCOL.md section 7 and checklist C69..C75:
//   ack (7.1, C69..C72): handshake ext.ack true <-> true; connect replies carry ext.ack
//     1, 2, 3, ...; connect requests echo the last batch received; deliveries only in
//     /meta/connect replies; a batch whose reply was lost is re-delivered (no loss, no
//     duplicate, in order) - proved with a fault-injecting proxy (lib/proxy.mjs) that drops a
//     connect reply carrying deliveries after the server sent it.
//   timesync (7.2, C73, C74): replies to meta messages carry {tc, ts, p, a} when l == 0 or
//     |a| >= 25, and nothing when l != 0 and |a| < 25.
//   binary (7.4, C75): Z85 payloads with ext.binary are relayed unchanged.
//   timestamp (7.5): with `timestamp` in --extensions every message sent is stamped (Java
//     Date.toString format); without it a client's `timestamp` field is relayed untouched.
//
// Same style as the other suites: a fresh server per test, assertions on what the
// application sees AND on the wire (HTTP tap / websocket frame tap), bounded waits, no sleeps.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AckExtension, BinaryExtension, TimeStampExtension, TimeSyncExtension } from 'cometd';
import { startEnv } from '../lib/fixture.mjs';
import { startProxy } from '../lib/proxy.mjs';
import { isDelivery, notifyChange, rawPost, until } from '../lib/client.mjs';

const TEST_TIMEOUT = 30000;
const TRANSPORTS = ['long-polling', 'websocket'];
/** Explicit, so that the tests do not depend on the server's default list. */
const ACK_TIMESYNC = { extensions: 'ack,timesync' };

// ---------------------------------------------------------------------------
// Helpers shared by both transports

/** A client of `env` on `transport`, with the given official extensions registered. */
function makeClient(env, transport, { extensions = {}, ...options } = {}) {
  const client = env.client({ websocket: transport === 'websocket', ...options });
  for (const [name, extension] of Object.entries(extensions)) {
    assert.equal(client.cometd.registerExtension(name, extension), true, `registerExtension(${name})`);
  }
  return client;
}

/** Handshakes, waits for the first connect reply and checks the transport really in use. */
async function connected(env, transport, options = {}) {
  const client = makeClient(env, transport, options);
  await client.connect();
  assertTransport(client, transport);
  return client;
}

function assertTransport(client, transport) {
  const type = client.cometd.getTransport()?.type;
  assert.equal(type, transport, `${client.name} negotiated ${type}, not ${transport}; ${summary(client)}`);
  if (transport === 'websocket') {
    assert.equal(client.tap.exchanges.length, 0, `${client.name} sent HTTP although on websocket: ${client.tap.summary()}`);
  } else {
    assert.equal(client.frames, undefined);
  }
}

/** The wire tap of a client: frames for websocket, HTTP exchanges for long-polling. Same API. */
function wire(client) {
  return client.frames ?? client.tap;
}

function summary(client, last = 16) {
  return `wire of ${client.name}:\n    ${wire(client).summary(last)}`;
}

/**
 * The reply batches a client received, one per HTTP response or websocket frame, in arrival
 * order: [{messages, request (long-polling only: the request batch it answers)}].
 */
function responses(client) {
  if (client.frames) {
    return client.frames.framesIn().map((f) => ({ messages: f.messages ?? [], request: undefined, text: f.text }));
  }
  return client.tap.completed.filter((e) => Array.isArray(e.response))
    .map((e) => ({ messages: e.response, request: e.request, text: e.responseText }));
}

const isConnectReply = (m) => m && m.channel === '/meta/connect' && 'successful' in m;

/** The reply received by `client` to the message with `id` on `channel`. */
function replyTo(client, id, channel) {
  return wire(client).received().find((m) => m && m.id === id && m.channel === channel && 'successful' in m);
}

function sentOn(client, channel) {
  return wire(client).sent().filter((m) => m && m.channel === channel);
}

/** Waits until `client` has seen `count` successful /meta/connect replies. */
function successfulConnects(client, count, timeout = 10000) {
  return until(() => client.connects.filter((m) => m.successful).length >= count, {
    timeout, what: `${count} successful /meta/connect replies at ${client.name}`, describe: () => summary(client),
  });
}

/** Publishes from `client` and fails unless the reply is successful. */
async function publishOk(client, channel, data) {
  const reply = await client.publish(channel, data);
  assert.equal(reply.successful, true, `publish on ${channel} by ${client.name}: ${JSON.stringify(reply)}`);
  return reply;
}

/** Every reply batch holding deliveries must hold a /meta/connect reply (C72). */
function assertDeliveriesOnlyWithConnectReplies(client) {
  for (const { messages, request, text } of responses(client)) {
    if (!messages.some(isDelivery)) continue;
    assert.ok(messages.some(isConnectReply),
      `C72: ${client.name} got deliveries in a ${client.frames ? 'frame' : 'response'} without a /meta/connect reply: ` +
      `${text}${request ? `\n    (request: ${JSON.stringify(request)})` : ''}`);
  }
}

// ---------------------------------------------------------------------------
// C71 scenario: an acking subscriber behind the fault proxy, numbered messages from a publisher.

const TOTAL = 100;

function describeDrops(proxy) {
  return proxy.drops.map((d) => {
    const reply = d.messages.find(isConnectReply);
    const lost = d.messages.filter(isDelivery).map((m) => m.data?.n ?? 'fence');
    return `batch ${reply?.ext?.ack} (connect ${reply?.id}, n ${lost[0]}..${lost.at(-1)}, ${lost.length} msgs)`;
  }).join(', ') || 'none';
}

/**
 * Messages 0..TOTAL-1 then a fence, published one by one by a direct client, to a subscriber
 * with AckExtension that goes through the proxy:
 *  wave A (0..29): no fault; waits until the subscriber got them (so their batches are acked);
 *  wave B (30..64): the next connect reply with deliveries is dropped (waits for that drop and
 *  for the recovery: message 64 received, or lost);
 *  wave C (65..99): `laterDrops` more drops armed (with ack they chain: the re-delivery reply
 *  can be dropped again); waits until they all happened;
 *  then the fence, awaited at the subscriber.
 */
async function dropScenario(t, env, transport, { laterDrops }) {
  const proxy = await startProxy(t, env.url);
  const acker = makeClient(env, transport, {
    name: 'acker',
    url: proxy.url,
    extensions: { ack: new AckExtension() },
    // Reconnect quickly after a failure.
    config: { backoffIncrement: 50, maxBackoff: 500 },
  });
  await acker.connect();
  assertTransport(acker, transport);
  const publisher = await connected(env, transport, { name: 'publisher' });
  const channel = `/c71/${transport}`;
  acker.testChannel = channel;
  const received = await acker.collect(channel);
  const state = () => `received n ${JSON.stringify(received.messages.map((m) => m.data?.n ?? 'fence'))}\n` +
    `    drops=${describeDrops(proxy)} armed=${proxy.armed}\n    ${summary(acker, 20)}`;
  const gotN = (n) => until(() => received.messages.some((m) => m.data?.n === n), {
    timeout: 10000, what: `message ${n} at the acking subscriber`, describe: state,
  });

  for (let n = 0; n < 30; n++) await publishOk(publisher, channel, { n });
  await gotN(29);
  assert.equal(proxy.drops.length, 0);

  proxy.dropNextConnectsWithDeliveries(1);
  for (let n = 30; n < 65; n++) await publishOk(publisher, channel, { n });
  await until(() => proxy.drops.length === 1, { timeout: 10000, what: 'the first drop', describe: state });
  // Recovered (with ack: re-delivered; without: lost) before the next faults.
  await until(() => received.messages.some((m) => m.data?.n === 64) ||
    proxy.drops[0].messages.some((m) => isDelivery(m) && m.data?.n === 64), {
    timeout: 10000, what: 'message 64 at the subscriber (or dropped)', describe: state,
  });

  proxy.dropNextConnectsWithDeliveries(laterDrops);
  for (let n = 65; n < TOTAL; n++) await publishOk(publisher, channel, { n });
  await until(() => proxy.armed === 0, { timeout: 10000, what: `${laterDrops} more drops`, describe: state });

  const fence = { fence: true };
  await publishOk(publisher, channel, fence);
  await until(() => received.messages.some((m) => m.data?.fence === true), {
    timeout: 15000, what: 'the fence at the acking subscriber', describe: state,
  });
  return { acker, publisher, proxy, received, fence };
}

for (const transport of TRANSPORTS) {
  describe(`extensions over ${transport} with the official CometD client`, { timeout: 120000 }, () => {
    // -----------------------------------------------------------------------
    // ack: C69 / C70

    test('C69/C70 ack: handshake ext.ack true <-> true, connect replies numbered 1,2,3,... and echoed back', { timeout: TEST_TIMEOUT }, async (t) => {
      // Default --extensions (ack,timesync): no flag at all. Short connect hold for several cycles.
      const env = await startEnv(t, { timeout: 200 });
      const client = await connected(env, transport, { name: 'acker', extensions: { ack: new AckExtension() } });
      await successfulConnects(client, 6);

      const [hs] = sentOn(client, '/meta/handshake');
      assert.equal(hs.ext?.ack, true, `handshake request carries ext.ack true: ${JSON.stringify(hs)}`);
      const hsReply = replyTo(client, hs.id, '/meta/handshake');
      assert.equal(hsReply.successful, true);
      assert.deepEqual(hsReply.ext, { ack: true }, `C69: handshake reply ext: ${JSON.stringify(hsReply)}`);

      const replies = wire(client).replies('/meta/connect');
      const requests = sentOn(client, '/meta/connect');
      assert.ok(replies.length >= 6, summary(client));
      // C70: every successful connect reply carries a numeric ext.ack, 1, 2, 3, ... (+1 each).
      assert.deepEqual(replies.map((r) => r.successful), replies.map(() => true), summary(client));
      assert.deepEqual(replies.map((r) => r.ext?.ack), replies.map((_, i) => i + 1),
        `C70: ext.ack of the connect replies in order: ${JSON.stringify(replies.map((r) => r.ext))}`);
      // Replies answer the requests in order; each request acknowledges the batch received before it.
      for (let i = 0; i < replies.length; i++) {
        assert.equal(replies[i].id, requests[i].id, `connect reply ${i} answers connect request ${i}`);
      }
      for (let i = 0; i < requests.length; i++) {
        const expected = i === 0 ? 0 : replies[i - 1].ext.ack;
        assert.equal(requests[i].ext?.ack, expected,
          `connect request ${i} must carry ext.ack ${expected}: ${JSON.stringify(requests[i])}`);
      }
      // The first connect (advice timeout 0) was answered with batch 1.
      assert.deepEqual(requests[0].advice, { timeout: 0 });
    });

    test('C70 ack after the server forgot the session: re-handshake with ext.ack, batches restart at 1', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t, { ...ACK_TIMESYNC, timeout: 200 });
      const client = await connected(env, transport, {
        name: 'acker', extensions: { ack: new AckExtension() }, config: { backoffIncrement: 50, maxBackoff: 500 },
      });
      await successfulConnects(client, 4);
      await env.server.restart();
      await until(() => client.handshakes.filter((m) => m.successful).length >= 2, {
        timeout: 10000, what: 'a second successful handshake', describe: () => summary(client),
      });
      const before = client.connects.filter((m) => m.successful).length;
      await successfulConnects(client, before + 3);

      const sent = wire(client).sent();
      const received = wire(client).received();
      const hsRequests = sent.filter((m) => m.channel === '/meta/handshake');
      const second = hsRequests.at(-1);
      assert.equal(second.ext?.ack, true, 'the re-handshake asks for ack again');
      const hsReplies = received.filter((m) => m.channel === '/meta/handshake' && m.successful);
      const secondReply = hsReplies.at(-1);
      assert.deepEqual(secondReply.ext, { ack: true }, JSON.stringify(secondReply));
      const requests = sent.slice(sent.indexOf(second)).filter((m) => m.channel === '/meta/connect');
      const replies = received.slice(received.indexOf(secondReply))
        .filter((m) => isConnectReply(m) && m.successful && m.clientId === undefined);
      assert.ok(replies.length >= 3, summary(client));
      assert.deepEqual(replies.map((r) => r.ext?.ack), replies.map((_, i) => i + 1),
        `the new session numbers its batches from 1: ${JSON.stringify(replies)}`);
      assert.equal(requests[0].ext?.ack, 0, `the first connect of the new session acks 0: ${JSON.stringify(requests[0])}`);
      for (let i = 1; i < replies.length && i < requests.length; i++) {
        assert.equal(requests[i].ext?.ack, replies[i - 1].ext.ack);
      }
    });

    test('C69 ack: a client without AckExtension gets no ext.ack in any reply', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t, { ...ACK_TIMESYNC, timeout: 200 });
      const plain = await connected(env, transport, { name: 'plain' });
      await successfulConnects(plain, 3);
      const [hs] = sentOn(plain, '/meta/handshake');
      assert.equal(hs.ext, undefined, 'the client sent no ext at all');
      const hsReply = replyTo(plain, hs.id, '/meta/handshake');
      assert.equal(hsReply.successful, true);
      assert.equal(hsReply.ext?.ack, undefined, `C69: no ext.ack for a client that did not ask: ${JSON.stringify(hsReply)}`);
      for (const reply of wire(plain).replies('/meta/connect')) {
        assert.equal(reply.ext?.ack, undefined, `no ext.ack in connect replies of a non-ack session: ${JSON.stringify(reply)}`);
      }

      // And ext.ack false (cometd.ackEnabled = false) is not "true": no ack either.
      const off = makeClient(env, transport, { name: 'ack-disabled', extensions: { ack: new AckExtension() } });
      off.cometd.ackEnabled = false;
      await off.connect();
      await successfulConnects(off, 2);
      const [hsOff] = sentOn(off, '/meta/handshake');
      assert.equal(hsOff.ext?.ack, false);
      assert.equal(replyTo(off, hsOff.id, '/meta/handshake').ext?.ack, undefined);
      for (const connect of sentOn(off, '/meta/connect')) {
        assert.equal(connect.ext?.ack, undefined, 'the extension sends no batch when the server said no');
      }
    });

    test('C69 ack: with --extensions timesync (ack disabled), ext.ack true is not answered', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t, { extensions: 'timesync', timeout: 200 });
      const client = await connected(env, transport, { name: 'acker', extensions: { ack: new AckExtension() } });
      await successfulConnects(client, 2);
      const [hs] = sentOn(client, '/meta/handshake');
      assert.equal(hs.ext?.ack, true);
      assert.equal(replyTo(client, hs.id, '/meta/handshake').ext?.ack, undefined,
        'a server with ack disabled must not claim ack support');
      for (const reply of wire(client).replies('/meta/connect')) assert.equal(reply.ext?.ack, undefined);
    });

    // -----------------------------------------------------------------------
    // ack: C72

    test('C72 ack: publish/subscribe replies carry no deliveries; deliveries only with connect replies', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t, ACK_TIMESYNC);
      const acker = await connected(env, transport, { name: 'acker', extensions: { ack: new AckExtension() } });
      const other = await connected(env, transport, { name: 'other' });
      const channel = '/c72/chat';
      const received = await acker.collect(channel);

      // The acking client publishes to its own channel (a non-ack server piggy-backs the
      // delivery on the publish reply over long-polling, or pushes it alone over websocket).
      await publishOk(acker, channel, { n: 1 });
      await received.waitFor(1);
      // Several at once, in one batch.
      acker.cometd.batch(() => {
        for (let n = 2; n <= 4; n++) acker.cometd.publish(channel, { n });
      });
      await received.waitFor(4);
      // And from another client.
      await publishOk(other, channel, { n: 5 });
      await received.waitFor(5);
      assert.deepEqual(received.messages.map((m) => m.data), [1, 2, 3, 4, 5].map((n) => ({ n })));

      // Wire: every reply batch with deliveries also answers a /meta/connect ...
      assertDeliveriesOnlyWithConnectReplies(acker);
      // ... and the batches answering publish/subscribe carry no delivery.
      for (const { messages, text } of responses(acker)) {
        if (messages.some((m) => m && 'successful' in m && (m.channel === '/meta/subscribe' || m.channel === channel))) {
          assert.ok(!messages.some(isDelivery), `C72: deliveries travelled with a publish/subscribe reply: ${text}`);
        }
      }
      if (transport === 'long-polling') {
        // Each delivery came in the response to a request holding a /meta/connect.
        for (const e of acker.tap.completed) {
          if (Array.isArray(e.response) && e.response.some(isDelivery)) {
            assert.ok(e.request.some((m) => m.channel === '/meta/connect'),
              `C72: deliveries in the response to ${e.requestText}`);
          }
        }
      }
      assert.deepEqual(wire(acker).deliveries(channel).map((m) => m.data), [1, 2, 3, 4, 5].map((n) => ({ n })),
        'each message exactly once on the wire');
    });

    // -----------------------------------------------------------------------
    // ack: C71, the main one

    test('C71 ack: no loss, no duplicate, in order across reconnects forced by dropped connect replies', { timeout: 45000 }, async (t) => {
      const env = await startEnv(t, { ...ACK_TIMESYNC, timeout: 2000 });
      const { acker, proxy, received, fence } = await dropScenario(t, env, transport, { laterDrops: 2 });

      const expected = [...Array.from({ length: TOTAL }, (_, n) => ({ n })), fence];
      const got = received.messages.map((m) => m.data);
      if (JSON.stringify(got) !== JSON.stringify(expected)) {
        const counts = new Map();
        for (const d of got) counts.set(JSON.stringify(d), (counts.get(JSON.stringify(d)) ?? 0) + 1);
        const missing = expected.filter((d) => !counts.has(JSON.stringify(d))).map((d) => d.n ?? 'fence');
        const dups = [...counts].filter(([, c]) => c > 1).map(([k, c]) => `${k}x${c}`);
        assert.fail(`C71: the acking subscriber must get 0..${TOTAL - 1} then the fence, exactly once each, in order.\n` +
          `    missing: ${JSON.stringify(missing)}\n    duplicates: ${JSON.stringify(dups)}\n` +
          `    got (${got.length}): ${JSON.stringify(got.map((d) => d.n ?? 'fence'))}\n` +
          `    drops: ${describeDrops(proxy)}\n    ${summary(acker, 24)}`);
      }

      // The test really exercised re-delivery: something was dropped AFTER the server sent it.
      assert.equal(proxy.drops.length, 3, `three connect replies dropped: ${describeDrops(proxy)}`);
      const droppedData = proxy.drops.flatMap((d) => d.messages.filter(isDelivery).map((m) => m.data));
      assert.ok(droppedData.length > 0, 'the dropped replies held deliveries');
      assert.equal(acker.cometd.getTransport()?.type, transport, 'still on the same transport after the reconnects');

      // Each dropped reply carried batch N; the client's next connect acknowledged less than N
      // (it never saw N) and asked for an immediate answer (advice timeout 0); the reply to it
      // (unless dropped too) is batch N + 1 and starts with the lost messages, in order.
      const connectsSent = sentOn(acker, '/meta/connect');
      for (const drop of proxy.drops) {
        const reply = drop.messages.find(isConnectReply);
        assert.equal(reply.successful, true);
        const batch = reply.ext?.ack;
        assert.equal(typeof batch, 'number', `dropped connect reply has a numeric ext.ack: ${JSON.stringify(reply)}`);
        const index = connectsSent.findIndex((m) => m.id === reply.id);
        assert.ok(index >= 0, `the dropped reply answers a connect the client sent (id ${reply.id})`);
        const next = connectsSent[index + 1];
        assert.ok(next, `the client reconnected after losing the reply to connect ${reply.id}`);
        assert.ok(typeof next.ext?.ack === 'number' && next.ext.ack < batch,
          `reconnect after losing batch ${batch} acknowledges less: ${JSON.stringify(next)}`);
        assert.deepEqual(next.advice, { timeout: 0 }, `reconnect asks for an immediate reply: ${JSON.stringify(next)}`);
        const nextReply = replyTo(acker, next.id, '/meta/connect');
        if (nextReply) {
          assert.equal(nextReply.successful, true);
          assert.equal(nextReply.ext?.ack, batch + 1, 'batches keep counting +1 across the loss');
          const batchIn = responses(acker).find(({ messages }) => messages.includes(nextReply));
          const resent = batchIn.messages.filter(isDelivery).map((m) => m.data);
          const lost = drop.messages.filter(isDelivery).map((m) => m.data);
          assert.deepEqual(resent.slice(0, lost.length), lost,
            `the reply to the reconnect starts with the lost batch ${batch}, in order: ${batchIn.text}`);
        }
      }
      // Over the wire (what reached the client), every message exactly once in order.
      assert.deepEqual(wire(acker).deliveries(acker.testChannel).map((m) => m.data), expected,
        'the client saw each message exactly once on the wire');
      assertDeliveriesOnlyWithConnectReplies(acker);
      // Batches seen by the client: the only gaps are the dropped batches.
      const seen = wire(acker).replies('/meta/connect').filter((r) => r.successful).map((r) => r.ext?.ack);
      const dropped = proxy.drops.map((d) => d.messages.find(isConnectReply).ext.ack);
      const all = [...seen, ...dropped].sort((a, b) => a - b);
      assert.deepEqual(all, all.map((_, i) => i + 1),
        `connect batches 1..N, each once (seen ${JSON.stringify(seen)}, dropped ${JSON.stringify(dropped)})`);
      t.diagnostic(`${transport}: dropped ${describeDrops(proxy)}`);
    });

    test('C71 control: without ack (meta-connect-deliver-only), a drop loses exactly the dropped messages', { timeout: 45000 }, async (t) => {
      // Proves that the proxy really loses data that only ack re-delivery can recover: the
      // same scenario on a server with ack disabled, deliveries still only in connect replies.
      const env = await startEnv(t, { extensions: 'timesync', 'meta-connect-deliver-only': true, timeout: 2000 });
      const { proxy, received, fence } = await dropScenario(t, env, transport, { laterDrops: 0 });
      assert.equal(proxy.drops.length, 1, describeDrops(proxy));
      const lost = new Set(proxy.drops.flatMap((d) => d.messages.filter(isDelivery).map((m) => m.data.n)));
      assert.ok(lost.size > 0, 'the proxy dropped deliveries');
      const expected = [...Array.from({ length: TOTAL }, (_, n) => ({ n })).filter((d) => !lost.has(d.n)), fence];
      assert.deepEqual(received.messages.map((m) => m.data), expected,
        'without ack, exactly the dropped messages are missing (the proxy really loses them)');
      t.diagnostic(`${transport} control: lost ${[...lost].join(',')}`);
    });

    // -----------------------------------------------------------------------
    // timesync: C73 / C74

    test('C73/C74 timesync: meta replies carry {tc,ts,p,a}; offset and lag converge', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t, { ...ACK_TIMESYNC, timeout: 200 });
      const timesync = new TimeSyncExtension();
      const client = await connected(env, transport, { name: 'timesync', extensions: { timesync } });
      assert.equal(client.cometd.getExtension('timesync'), timesync);
      await client.collect('/c73/x'); // a /meta/subscribe exchange too
      await successfulConnects(client, 8);

      const metaSent = wire(client).sent().filter((m) => m.channel.startsWith('/meta/'));
      assert.ok(metaSent.length >= 9, summary(client));
      let withTimesync = 0;
      for (const request of metaSent) {
        const sync = request.ext?.timesync;
        assert.ok(sync && Number.isInteger(sync.tc) && Number.isInteger(sync.l) && Number.isInteger(sync.o),
          `client sends ext.timesync on every meta message: ${JSON.stringify(request)}`);
        const reply = replyTo(client, request.id, request.channel);
        if (!reply) continue; // the connect still held
        const answer = reply.ext?.timesync;
        if (sync.l === 0) {
          assert.ok(answer, `C73: reply to a request with l == 0 must carry ext.timesync: ${JSON.stringify(request)} -> ${JSON.stringify(reply)}`);
        }
        if (!answer) {
          // C74: only allowed when l != 0 and |a| < 25; ts is in [tc, now], so a is in
          // [tc + o + l - now, o + l]: the reply had to carry timesync if that range is all >= 25 in magnitude.
          assert.notEqual(sync.l, 0);
          const aMax = sync.o + sync.l;
          const aMin = sync.tc + sync.o + sync.l - Date.now();
          assert.ok(!(aMin >= 25 || aMax <= -25), `C74: |a| >= 25 for sure, ext.timesync was due: ${JSON.stringify(request)}`);
          continue;
        }
        withTimesync += 1;
        assert.deepEqual(Object.keys(answer).sort(), ['a', 'p', 'tc', 'ts'], `timesync reply fields: ${JSON.stringify(answer)}`);
        assert.equal(answer.tc, sync.tc, 'C73: tc echoed');
        assert.ok(Number.isInteger(answer.ts) && Math.abs(answer.ts - sync.tc) < 5000,
          `C73: ts ${answer.ts} is server ms epoch (same clock), tc ${sync.tc}`);
        assert.ok(answer.ts >= sync.tc - 50, `ts ${answer.ts} not before the client sent (tc ${sync.tc})`);
        assert.ok(Number.isInteger(answer.p) && answer.p >= 0, `C73: p >= 0: ${answer.p}`);
        assert.ok(answer.ts + answer.p <= Date.now() + 50, `ts + p is not in the future: ${JSON.stringify(answer)}`);
        if (request.channel === '/meta/connect' && !request.advice) {
          // A held connect: p covers the hold (timeout 200 ms).
          assert.ok(answer.p >= 100 && answer.p < 2000, `p of a held connect covers the hold: ${answer.p}`);
        }
        assert.equal(answer.a, sync.tc + sync.o + sync.l - answer.ts, `a = tc + o + l - ts: ${JSON.stringify({ sync, answer })}`);
        if (sync.l !== 0) assert.ok(Math.abs(answer.a) >= 25, `C74: |a| < 25 with l != 0 must not be answered: ${JSON.stringify({ sync, answer })}`);
      }
      // The official client only gets a new sample when l == 0 or |a| >= 25: on loopback its
      // first estimate is already accurate, so typically only the handshake reply is a sample.
      assert.ok(withTimesync >= 1, `at least one timesync sample (${withTimesync})`);
      const offset = timesync.getTimeOffset();
      const lag = timesync.getNetworkLag();
      assert.ok(Number.isFinite(offset) && Math.abs(offset) < 1000, `offset ${offset} ms (same clock)`);
      assert.ok(Number.isFinite(lag) && lag >= 0 && lag < 1000, `lag ${lag} ms`);
      t.diagnostic(`${transport}: ${withTimesync} samples, offset ${offset} ms, lag ${lag} ms`);
    });

    // -----------------------------------------------------------------------
    // timestamp (7.5) and all extensions together

    test('timestamp: --extensions with timestamp stamps every message sent; without it the client stamp is relayed', { timeout: TEST_TIMEOUT }, async (t) => {
      const JAVA_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{2} \d{2}:\d{2}:\d{2} [A-Z]{3,4} \d{4}$/;
      for (const [extensions, serverStamps] of [['ack,timesync,timestamp', true], ['ack,timesync', false]]) {
        const env = await startEnv(t, { extensions, timeout: 200 });
        const subscriber = await connected(env, transport, { name: `plain-${extensions}` });
        const publisher = await connected(env, transport, { name: `stamping-${extensions}`, extensions: { timestamp: new TimeStampExtension() } });
        const channel = '/ts/chat';
        const received = await subscriber.collect(channel);
        await publishOk(publisher, channel, { hello: 1 });
        await received.waitFor(1);
        await successfulConnects(subscriber, 3);

        const [published] = sentOn(publisher, channel);
        assert.match(published.timestamp, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/,
          'the official extension stamps with toUTCString()');
        const [delivery] = wire(subscriber).deliveries(channel);
        if (serverStamps) {
          for (const client of [subscriber, publisher]) {
            for (const m of wire(client).received()) {
              assert.match(String(m.timestamp), JAVA_DATE, `${extensions}: every message to ${client.name} is stamped: ${JSON.stringify(m)}`);
              const at = Date.parse(m.timestamp);
              assert.ok(Math.abs(at - Date.now()) < 10000, `timestamp ${m.timestamp} is now (same clock)`);
            }
          }
        } else {
          for (const m of wire(subscriber).received().concat(wire(publisher).received())) {
            if (m === delivery) continue;
            assert.equal(m.timestamp, undefined, `${extensions}: no timestamp added by the server: ${JSON.stringify(m)}`);
          }
          assert.equal(delivery.timestamp, published.timestamp, 'the publisher\'s timestamp is relayed untouched');
        }
        assert.deepEqual(received.messages.map((m) => m.data), [{ hello: 1 }]);
        await env.close();
      }
    });

    test('all official extensions together: ack + timesync + binary + timestamp on one client', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t, { extensions: 'ack,timesync,timestamp', timeout: 200 });
      const extensions = () => ({
        ack: new AckExtension(), timesync: new TimeSyncExtension(), binary: new BinaryExtension(), timestamp: new TimeStampExtension(),
      });
      const a = await connected(env, transport, { name: 'all-a', extensions: extensions() });
      const b = await connected(env, transport, { name: 'all-b', extensions: extensions() });
      const channel = '/all/bin';
      const atA = await a.collect(channel);
      const atB = await b.collect(channel);
      const bytes = new Uint8Array([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]);
      const reply = await new Promise((resolve) => a.cometd.publishBinary(channel, bytes, true, { k: 1 }, resolve));
      assert.equal(reply.successful, true, JSON.stringify(reply));
      await atA.waitFor(1);
      await atB.waitFor(1);
      await successfulConnects(a, 4);
      for (const got of [atA.messages[0], atB.messages[0]]) {
        assert.deepEqual([...new Uint8Array(got.data.data)], [...bytes]);
        assert.deepEqual(got.data.meta, { k: 1 });
      }
      for (const client of [a, b]) {
        // Handshake reply: both ack and timesync in the same ext.
        const [hs] = sentOn(client, '/meta/handshake');
        assert.deepEqual(hs.ext.ack, true);
        const hsReply = replyTo(client, hs.id, '/meta/handshake');
        assert.equal(hsReply.ext?.ack, true, `ack in ${JSON.stringify(hsReply)}`);
        assert.equal(hsReply.ext?.timesync?.tc, hs.ext.timesync.tc, `timesync in ${JSON.stringify(hsReply)}`);
        // Connect replies: numbered batches, and timesync where due (l == 0), side by side.
        const requests = sentOn(client, '/meta/connect');
        const replies = wire(client).replies('/meta/connect');
        assert.deepEqual(replies.map((r) => r.ext?.ack), replies.map((_, i) => i + 1), summary(client));
        for (let i = 0; i < replies.length; i++) {
          assert.equal(replies[i].id, requests[i].id);
          if (requests[i].ext.timesync.l === 0) {
            assert.equal(replies[i].ext?.timesync?.tc, requests[i].ext.timesync.tc, `timesync with ack: ${JSON.stringify(replies[i])}`);
          }
        }
        assertDeliveriesOnlyWithConnectReplies(client);
        assert.deepEqual(wire(client).deliveries(channel).map((m) => ({ data: m.data, ext: m.ext })),
          [{ data: { meta: { k: 1 }, data: 'HelloWorld', last: true }, ext: { binary: {} } }],
          'binary relayed unchanged (ext.binary kept) to an acking client');
        for (const m of wire(client).received()) assert.equal(typeof m.timestamp, 'string', `stamped: ${JSON.stringify(m)}`);
      }
    });
  });
}

// ---------------------------------------------------------------------------
// timesync at the raw wire (long-polling, C73 / C74 with chosen values)

describe('timesync raw requests (C73, C74)', { timeout: 60000 }, () => {
  /** POSTs one meta message with ext.timesync; resolves {reply, sentAt, doneAt}. */
  async function rawMeta(url, message, cookie) {
    const sentAt = Date.now();
    const res = await rawPost(url, [message], { cookie });
    const doneAt = Date.now();
    assert.equal(res.status, 200, res.text);
    assert.ok(Array.isArray(res.json) && res.json.length >= 1, res.text);
    const reply = res.json.find((m) => m.id === message.id);
    assert.ok(reply, `reply to ${message.id} in ${res.text}`);
    return { reply, sentAt, doneAt, res };
  }

  test('l == 0 always answered; l != 0 with |a| < 25 not answered; l != 0 with |a| >= 25 answered', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, ACK_TIMESYNC);
    const tc0 = Date.now();
    const hs = await rawMeta(`${env.url}/handshake`, {
      id: '1', channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'],
      ext: { timesync: { tc: tc0, l: 0, o: 0 } },
    });
    assert.equal(hs.reply.successful, true, JSON.stringify(hs.reply));
    const clientId = hs.reply.clientId;
    const setCookie = hs.res.headers.get('set-cookie');
    assert.ok(setCookie, 'handshake sets the browser cookie');
    const cookie = setCookie.split(';')[0];
    const sync0 = hs.reply.ext?.timesync;
    assert.ok(sync0, `C73: l == 0 -> ext.timesync in the handshake reply: ${JSON.stringify(hs.reply)}`);
    assert.equal(sync0.tc, tc0);
    assert.ok(sync0.ts >= hs.sentAt && sync0.ts <= hs.doneAt, `ts ${sync0.ts} within [${hs.sentAt}, ${hs.doneAt}]`);
    assert.ok(sync0.p >= 0 && sync0.ts + sync0.p <= hs.doneAt, `p ${sync0.p}`);
    assert.equal(sync0.a, tc0 - sync0.ts);

    // l != 0, o = -l, tc = now: a = tc - ts = -(one-way delay), |a| < 25 on loopback.
    // Retried if the machine was too slow for the premise (round trip >= 25 ms).
    let id = 2;
    let conclusive = 0;
    for (let attempt = 0; attempt < 8 && conclusive < 3; attempt++) {
      const tc = Date.now();
      const r = await rawMeta(`${env.url}/connect`, {
        id: String(id++), channel: '/meta/connect', clientId, connectionType: 'long-polling', advice: { timeout: 0 },
        ext: { timesync: { tc, l: 3, o: -3 } },
      }, cookie);
      assert.equal(r.reply.successful, true, JSON.stringify(r.reply));
      if (r.doneAt - tc >= 25) continue; // |a| could legitimately be >= 25
      conclusive += 1;
      assert.equal(r.reply.ext?.timesync, undefined,
        `C74: l=3, o=-3, tc=${tc}, round trip ${r.doneAt - tc} ms so |a| < 25: no ext.timesync expected, got ${JSON.stringify(r.reply)}`);
    }
    assert.ok(conclusive >= 1, 'at least one request fast enough to test C74');

    // l != 0 but the client's estimate is off by a minute: |a| >= 25 -> answered, with a = tc + o + l - ts.
    const tcOld = Date.now() - 60000;
    const off = await rawMeta(`${env.url}/connect`, {
      id: String(id++), channel: '/meta/connect', clientId, connectionType: 'long-polling', advice: { timeout: 0 },
      ext: { timesync: { tc: tcOld, l: 3, o: 0 } },
    }, cookie);
    const sync = off.reply.ext?.timesync;
    assert.ok(sync, `|a| >= 25 -> ext.timesync: ${JSON.stringify(off.reply)}`);
    assert.equal(sync.tc, tcOld);
    assert.ok(sync.ts >= off.sentAt && sync.ts <= off.doneAt, `ts ${sync.ts} within [${off.sentAt}, ${off.doneAt}]`);
    assert.equal(sync.a, tcOld + 0 + 3 - sync.ts);
    assert.ok(sync.p >= 0);

    // A non-meta message with ext.timesync is not a timesync exchange... relayed untouched is
    // the only duty; its reply must not be broken. (Java answers only meta messages.)
    const pub = await rawMeta(`${env.url}/`, {
      id: String(id++), channel: '/raw/ts', clientId, data: { x: 1 }, ext: { timesync: { tc: Date.now(), l: 0, o: 0 } },
    }, cookie);
    assert.equal(pub.reply.successful, true, JSON.stringify(pub.reply));
  });
});

// ---------------------------------------------------------------------------
// ack at the raw wire (long-polling): C71 / C72 with chosen batch numbers

describe('ack raw requests (C71, C72)', { timeout: 60000 }, () => {
  test('re-sent until acknowledged, answered at once when a re-send is due, never re-sent once acked', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t, { ...ACK_TIMESYNC, timeout: 600 });
    const post = async (path, messages, cookie) => {
      const startedAt = Date.now();
      const res = await rawPost(`${env.url}${path}`, messages, { cookie, timeout: 5000 });
      assert.equal(res.status, 200, res.text);
      assert.ok(Array.isArray(res.json), res.text);
      return { json: res.json, text: res.text, elapsed: Date.now() - startedAt, headers: res.headers };
    };
    const hs = await post('/handshake', [{
      id: '1', channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'], ext: { ack: true },
    }]);
    assert.equal(hs.json[0].successful, true, hs.text);
    assert.deepEqual(hs.json[0].ext, { ack: true }, hs.text);
    const clientId = hs.json[0].clientId;
    const cookie = hs.headers.get('set-cookie').split(';')[0];
    let id = 2;
    const connect = (ack, advice) => post('/connect', [{
      id: String(id++), channel: '/meta/connect', clientId, connectionType: 'long-polling', ...(advice ? { advice } : {}), ext: { ack },
    }], cookie);
    const deliveries = (r) => r.json.filter(isDelivery).map((m) => m.data);
    const connectReply = (r) => {
      const reply = r.json.find(isConnectReply);
      assert.ok(reply && reply.successful === true, r.text);
      return reply;
    };

    const c1 = await connect(0, { timeout: 0 });
    assert.equal(connectReply(c1).ext?.ack, 1, c1.text);
    const sub = await post('/', [{ id: String(id++), channel: '/meta/subscribe', subscription: '/raw/ack', clientId }], cookie);
    assert.deepEqual(sub.json.filter(isDelivery), [], sub.text);
    // C72: the publisher is the subscriber; its publish reply carries no delivery.
    const pub = await post('/', [
      { id: String(id++), channel: '/raw/ack', clientId, data: { n: 1 } },
      { id: String(id++), channel: '/raw/ack', clientId, data: { n: 2 } },
    ], cookie);
    assert.deepEqual(pub.json.map((m) => [m.channel, m.successful]), [['/raw/ack', true], ['/raw/ack', true]],
      `C72: only the two publish replies, no delivery: ${pub.text}`);

    // Messages queued: answered at once, batch 2.
    const c2 = await connect(1);
    assert.deepEqual(deliveries(c2), [{ n: 1 }, { n: 2 }], c2.text);
    assert.equal(connectReply(c2).ext?.ack, 2, c2.text);
    // Batch 2 "lost": ack 1 again, WITHOUT advice timeout 0. The re-send is due, so the
    // connect must not be held (Java forces advice timeout 0): same messages, batch 3.
    const c3 = await connect(1);
    assert.deepEqual(deliveries(c3), [{ n: 1 }, { n: 2 }], `C71: batch 2 re-sent after ack 1: ${c3.text}`);
    assert.equal(connectReply(c3).ext?.ack, 3, c3.text);
    assert.ok(c3.elapsed < 400, `C71: a connect with a re-send due is answered at once (took ${c3.elapsed} ms, timeout 600)`);
    // A new message while batch 3 is unacknowledged too: re-sends first, then the new one.
    await post('/', [{ id: String(id++), channel: '/raw/ack', clientId, data: { n: 3 } }], cookie);
    // Batch 3 "lost" as well: ack 1 once more.
    const c4 = await connect(1);
    assert.deepEqual(deliveries(c4), [{ n: 1 }, { n: 2 }, { n: 3 }], `C71: unacked re-sent in order, before the new one: ${c4.text}`);
    assert.equal(connectReply(c4).ext?.ack, 4, c4.text);
    assert.ok(c4.elapsed < 400, `answered at once (took ${c4.elapsed} ms)`);
    // Everything acknowledged: nothing re-sent, the connect is held for the timeout.
    const c5 = await connect(4);
    assert.deepEqual(deliveries(c5), [], `C71: nothing re-sent once acked: ${c5.text}`);
    assert.equal(connectReply(c5).ext?.ack, 5, c5.text);
    assert.ok(c5.elapsed >= 450, `held for the timeout when nothing is due (${c5.elapsed} ms)`);
    // A new message is delivered once, and a later ack of it leaves nothing.
    await post('/', [{ id: String(id++), channel: '/raw/ack', clientId, data: { n: 4 } }], cookie);
    const c6 = await connect(5);
    assert.deepEqual(deliveries(c6), [{ n: 4 }], c6.text);
    assert.equal(connectReply(c6).ext?.ack, 6, c6.text);
    const c7 = await connect(6);
    assert.deepEqual(deliveries(c7), [], c7.text);
    assert.equal(connectReply(c7).ext?.ack, 7, c7.text);
  });
});

// ---------------------------------------------------------------------------
// binary: C75

for (const transport of TRANSPORTS) {
  describe(`binary over ${transport} (C75)`, { timeout: 60000 }, () => {
    test('publishBinary: Z85 on the wire, relayed unchanged, bytes/last/meta back at the subscriber', { timeout: TEST_TIMEOUT }, async (t) => {
      const env = await startEnv(t, ACK_TIMESYNC);
      const subscriber = await connected(env, transport, { name: 'bin-sub', extensions: { binary: new BinaryExtension() } });
      const publisher = await connected(env, transport, { name: 'bin-pub', extensions: { binary: new BinaryExtension() } });
      const channel = '/bin';
      const received = await subscriber.collect(channel);

      const bytes = new Uint8Array([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]);
      const odd = new Uint8Array([0x01, 0x02, 0x03, 0x04, 0x05]);
      const replies = [];
      publisher.cometd.publishBinary(channel, bytes, true, { name: 'x' }, (r) => { replies.push(r); notifyChange(); });
      publisher.cometd.publishBinary(channel, odd, false, undefined, (r) => { replies.push(r); notifyChange(); });
      await until(() => replies.length === 2, { what: 'two publishBinary replies', describe: () => summary(publisher) });
      assert.deepEqual(replies.map((r) => r.successful), [true, true], JSON.stringify(replies));
      await received.waitFor(2);

      // Publisher's wire: Z85 text and ext.binary.
      const sent = wire(publisher).sent().filter((m) => m.channel === channel);
      assert.equal(sent.length, 2);
      assert.deepEqual(sent[0].data, { meta: { name: 'x' }, data: 'HelloWorld', last: true });
      assert.deepEqual(sent[0].ext, { binary: {} });
      assert.deepEqual(sent[1].data, { data: '0rJua1P', last: false });
      assert.deepEqual(sent[1].ext, { binary: {} });
      // Publish replies: no data (the client's BinaryExtension would try to decode it).
      for (const m of sent) {
        const reply = replyTo(publisher, m.id, channel);
        assert.ok(reply && reply.successful === true && !('data' in reply), `publish reply ${JSON.stringify(reply)}`);
      }

      // Subscriber's wire: relayed unchanged (C75).
      assert.deepEqual(wire(subscriber).deliveries(channel), [
        { channel, data: { meta: { name: 'x' }, data: 'HelloWorld', last: true }, ext: { binary: {} } },
        { channel, data: { data: '0rJua1P', last: false }, ext: { binary: {} } },
      ], summary(subscriber));

      // Application: the official extension decoded the exact bytes.
      const [first, second] = received.messages;
      assert.ok(first.data.data instanceof ArrayBuffer, 'decoded to an ArrayBuffer');
      assert.deepEqual([...new Uint8Array(first.data.data)], [...bytes]);
      assert.equal(first.data.last, true);
      assert.deepEqual(first.data.meta, { name: 'x' });
      assert.deepEqual([...new Uint8Array(second.data.data)], [...odd]);
      assert.equal(second.data.last, false);
    });
  });
}
