// A Bayeux client library that nobody here wrote, besides the official one: Faye's client
// (npm `faye`), against bayeuxd over long-polling and websocket, side by side with the
// official CometD client on the same channels. Faye's client speaks Bayeux its own way (ids
// in base 36, one connect type per transport, its own re-handshake rules), so these tests
// hold the server to the protocol rather than to one client's habits.
//
// What Faye really sent is recorded by one of its own extensions (a public API): every
// outgoing message passes through it, so the test knows which connection type carried the
// connects, instead of trusting what the library says of itself.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import faye from 'faye';
// Faye 1.2's websocket transport sends `[]` as a keep-alive, first when the socket opens.
import faye12 from 'faye-1.2';
import { startEnv } from '../lib/fixture.mjs';
import { Collector, notifyChange, until, withDeadline } from '../lib/client.mjs';

const TEST_TIMEOUT = 30000;

/** A Faye client of `env`, websocket disabled unless asked for, with an outgoing tap. */
function fayeClient(env, { websocket, library = faye }) {
  const client = new library.Client(env.url, { timeout: 5, retry: 0.2 });
  client.on('transport:up', notifyChange);
  if (!websocket) client.disable('websocket');
  const sent = [];
  const received = [];
  client.addExtension({
    outgoing(message, callback) {
      sent.push(message);
      notifyChange();
      callback(message);
    },
    incoming(message, callback) {
      received.push(message);
      notifyChange();
      callback(message);
    },
  });
  // Disconnected while the server still runs: a Faye client whose disconnect finds no server
  // retries it for ever, and keeps the test process alive. (Its disconnect promise never
  // settles: the reply is awaited through the tap instead.)
  env.track({
    async close() {
      client.disconnect();
      await until(() => received.some((m) => m.channel === '/meta/disconnect'), {
        what: 'Faye disconnected',
      }).catch(() => {});
    },
  });
  return { client, sent, received };
}

/** The connection types Faye's `/meta/connect` messages named, in order, deduplicated. */
function connectTypes(sent) {
  const types = sent.filter((m) => m.channel === '/meta/connect').map((m) => m.connectionType);
  return types.filter((type, i) => type !== types[i - 1]);
}

/** Subscribes Faye's client to `channel`, collecting what arrives; resolves once subscribed. */
async function fayeSubscribe(client, channel) {
  const collector = new Collector(`faye ${channel}`);
  const subscription = client.subscribe(channel, (data) => collector.listener({ data }));
  await withDeadline(subscription, 5000, `Faye subscribed to ${channel}`);
  return collector;
}

async function crossTalk(t, { websocket, library }) {
  const env = await startEnv(t);
  const { client, sent, received } = fayeClient(env, { websocket, library });
  const fromOfficial = await fayeSubscribe(client, '/interop/official');
  const wildcard = await fayeSubscribe(client, '/interop/*');
  if (websocket) {
    // Faye starts on long-polling and moves to websocket once the socket is up.
    await until(() => connectTypes(sent).at(-1) === 'websocket', {
      what: 'Faye connecting over websocket',
      describe: () => JSON.stringify(connectTypes(sent)),
    });
  }

  const official = await env.connected({ websocket });
  const fromFaye = new Collector('/interop/faye');
  await official.subscribe('/interop/faye', fromFaye.listener);
  for (let n = 0; n < 5; n++) {
    const reply = await official.publish('/interop/official', { n });
    assert.equal(reply.successful, true, JSON.stringify(reply));
  }
  for (let n = 0; n < 5; n++) {
    await withDeadline(client.publish('/interop/faye', { n, by: 'faye' }), 5000, `Faye publish ${n}`);
  }

  const fives = [0, 1, 2, 3, 4];
  assert.deepEqual((await fromOfficial.waitFor(5)).map((m) => m.data), fives.map((n) => ({ n })));
  assert.deepEqual((await fromFaye.waitFor(5)).map((m) => m.data), fives.map((n) => ({ n, by: 'faye' })));
  // One copy each through the wildcard, from both publishers, each in its publisher's order.
  const all = await wildcard.waitFor(10);
  assert.equal(all.length, 10, JSON.stringify(all));
  assert.deepEqual(all.filter((m) => m.data.by === undefined).map((m) => m.data), fives.map((n) => ({ n })));
  assert.deepEqual(all.filter((m) => m.data.by === 'faye').map((m) => m.data), fives.map((n) => ({ n, by: 'faye' })));

  const types = connectTypes(sent);
  // Over websocket, only the handshake went over HTTP.
  assert.deepEqual(types, [websocket ? 'websocket' : 'long-polling'],
    `connection types Faye used: ${JSON.stringify(types)}`);
  // Nothing Faye sent was refused.
  const refused = received.filter((m) => m.successful === false);
  assert.deepEqual(refused, []);
}

describe('Faye client (npm faye) against bayeuxd', () => {
  test('long-polling: publishes both ways with the official client, wildcards, order', { timeout: TEST_TIMEOUT }, async (t) => {
    await crossTalk(t, { websocket: false });
  });

  test('websocket: the same once Faye has moved to websocket', { timeout: TEST_TIMEOUT }, async (t) => {
    await crossTalk(t, { websocket: true });
  });

  test('websocket with Faye 1.2, whose `[]` keep-alives are ignored', { timeout: TEST_TIMEOUT }, async (t) => {
    await crossTalk(t, { websocket: true, library: faye12 });
  });

  test('a server restart: Faye handshakes again and resubscribes by itself', { timeout: TEST_TIMEOUT }, async (t) => {
    const env = await startEnv(t);
    const { client, sent, received } = fayeClient(env, { websocket: false });
    const got = await fayeSubscribe(client, '/interop/restart');
    const clientIds = () => received.filter((m) => m.channel === '/meta/handshake' && m.successful)
      .map((m) => m.clientId);
    await env.server.restart();
    // The new server knows no session: Faye is told 402 with handshake advice, handshakes
    // again and sends its subscription anew.
    await until(() => sent.filter((m) => m.channel === '/meta/subscribe').length >= 2, {
      timeout: 10000,
      what: 'Faye resubscribing',
      describe: () => JSON.stringify(sent.map((m) => m.channel)),
    });
    const [before, after] = clientIds();
    assert.ok(after && after !== before, JSON.stringify(clientIds()));
    // What told it to: a connect refused as unknown, with advice to handshake.
    const unknown = received.find((m) => m.channel === '/meta/connect' && m.successful === false);
    assert.equal(unknown?.error, '402::session_unknown', JSON.stringify(unknown));
    assert.equal(unknown?.advice?.reconnect, 'handshake', JSON.stringify(unknown));
    const official = await env.connected();
    // The resubscription may still be on its way: publish until one arrives, then one more
    // that must arrive right after it.
    const giveUp = Date.now() + 10000;
    while (got.messages.length === 0) {
      assert.ok(Date.now() < giveUp, 'no delivery to Faye after the restart');
      await official.publish('/interop/restart', { probe: true });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await official.publish('/interop/restart', { last: true });
    const messages = await got.waitForData((data) => data.last === true);
    assert.deepEqual(messages.at(-1).data, { last: true });
    assert.ok(messages.slice(0, -1).every((m) => m.data.probe === true), JSON.stringify(messages));
  });
});
