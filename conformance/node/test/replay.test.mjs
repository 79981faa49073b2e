// Channel history and replay with the OFFICIAL CometD JavaScript client, plus a small replay
// extension written here as an application would write it (Salesforce's wire shape: the
// handshake reply says ext.replay = true, /meta/subscribe carries ext.replay = {channel: id},
// deliveries carry their id). Over long-polling AND websocket:
//
// - a client that went away comes back as a new session and gets exactly what it missed, in
//   order, then new messages once;
// - -2 replays everything retained (count retention), -1 nothing;
// - an id older than the retention gets Salesforce's 400 error, and no subscription;
// - the `event` shape puts the id at data.event.replayId;
// - in a cluster of three nodes on one Redis: ids are the same on every node, a client that
//   left replays through other nodes after its node was killed, and a node started later
//   serves history published before it ran.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { startBalancer } from '../lib/balancer.mjs';
import { startRedis } from '../lib/redis.mjs';
import { TestClient, rawPost, withDeadline } from '../lib/client.mjs';

const TRANSPORTS = ['long-polling', 'websocket'];
const SALESFORCE_ERROR = (id) =>
  `400::The replayId {${id}} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.`;

/**
 * What an application writes to replay: remembers the newest id seen per channel (or what the
 * app sets), and sends the map with every subscribe once the server said it replays.
 */
class ReplayExtension {
  enabled = false;
  /** channel -> replay id to ask for */
  ids = {};

  incoming(message) {
    if (message.channel === '/meta/handshake') {
      this.enabled = message.ext?.replay === true;
    } else if (!message.channel.startsWith('/meta/')) {
      const id = message.ext?.replayId ?? message.data?.event?.replayId;
      if (id !== undefined) this.ids[message.channel] = id;
    }
    return message;
  }

  outgoing(message) {
    if (message.channel === '/meta/subscribe' && this.enabled) {
      message.ext = { ...message.ext, replay: { ...this.ids } };
    }
    return message;
  }
}

function client(t, url, transport, name, replay) {
  const c = new TestClient({
    url,
    name,
    websocket: transport === 'websocket',
    config: { backoffIncrement: 100, maxBackoff: 1000 },
  });
  if (replay) c.cometd.registerExtension('replay', replay);
  t.after(() => c.close());
  return c;
}

/** A raw long-polling publisher on `url`, outside the official client. */
async function rawPublisher(url) {
  let id = 0;
  const hs = await rawPost(`${url}/handshake`, [{
    id: String(++id), channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'],
  }], { timeout: 5000 });
  const cookie = hs.headers.get('set-cookie')?.split(';')[0];
  const clientId = hs.json?.[0]?.clientId;
  assert.ok(clientId, `raw handshake on ${url}: ${hs.status} ${hs.text}`);
  return async (channel, data) => {
    const res = await rawPost(`${url}/`, [{ id: String(++id), channel, clientId, data }], { cookie, timeout: 5000 });
    assert.equal(res.status, 200, `publish on ${url}: ${res.status} ${res.text}`);
    const reply = res.json.find((m) => m.successful !== undefined);
    assert.equal(reply.successful, true, JSON.stringify(reply));
  };
}

const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

for (const transport of TRANSPORTS) {
  describe(`replay over ${transport}`, { timeout: 60000 }, () => {
    test('a client that went away gets exactly what it missed, then new messages once', async (t) => {
      const server = await startServer({ history: '/chat/**=100,1h' });
      t.after(() => server.stop());
      const publish = await rawPublisher(server.url);
      const replay = new ReplayExtension();
      const first = client(t, server.url, transport, 'first', replay);
      const hs = await first.connect();
      assert.deepEqual(hs.ext?.replay, true, 'the handshake reply says the server replays');
      const room = await first.collect('/chat/room');
      for (const n of range(0, 10)) await publish('/chat/room', n);
      await room.waitFor(10);
      assert.deepEqual(room.messages.map((m) => m.data), range(0, 10));
      const ids = room.messages.map((m) => m.ext.replayId);
      assert.ok(ids.every((id, i) => Number.isSafeInteger(id) && (i === 0 || id > ids[i - 1])),
        `increasing ids: ${ids}`);
      assert.equal(replay.ids['/chat/room'], ids[9]);
      await first.disconnect();

      for (const n of range(10, 20)) await publish('/chat/room', n);

      // Back as a new session (new CometD object), with the ids the app kept.
      const again = client(t, server.url, transport, 'again', replay);
      await again.connect();
      const back = await again.collect('/chat/room');
      await back.waitFor(10);
      await publish('/chat/room', 20);
      await back.waitFor(11);
      await pause(200);
      assert.deepEqual(back.messages.map((m) => m.data), range(10, 21));
      const more = back.messages.map((m) => m.ext.replayId);
      assert.ok(more[0] > ids[9] && more.every((id, i) => i === 0 || id > more[i - 1]), `ids: ${more}`);
    });

    test('-2 replays what is retained, -1 nothing; an id before the retention is refused', async (t) => {
      const server = await startServer({ history: ['/chat/**=5', '/topic/**=10,event'] });
      t.after(() => server.stop());
      const publish = await rawPublisher(server.url);
      const witness = client(t, server.url, transport, 'witness');
      await witness.connect();
      const seen = await witness.collect('/chat/room');
      for (const n of range(0, 8)) await publish('/chat/room', { n });
      await seen.waitFor(8);
      const idOf = seen.messages.map((m) => m.ext.replayId);

      const all = new ReplayExtension();
      all.ids['/chat/room'] = -2;
      const everything = client(t, server.url, transport, 'everything', all);
      await everything.connect();
      const kept = await everything.collect('/chat/room');
      await kept.waitFor(5);
      assert.deepEqual(kept.messages.map((m) => m.data.n), range(3, 8));
      assert.deepEqual(kept.messages.map((m) => m.ext.replayId), idOf.slice(3));

      const none = new ReplayExtension();
      none.ids['/chat/room'] = -1;
      const fresh = client(t, server.url, transport, 'fresh', none);
      await fresh.connect();
      const nothing = await fresh.collect('/chat/room');
      await publish('/chat/room', { n: 8 });
      await nothing.waitFor(1);
      await pause(200);
      assert.deepEqual(nothing.messages.map((m) => m.data.n), [8]);

      // Nine published, five kept (4..8): what came after 1 cannot be served whole.
      const stale = new ReplayExtension();
      stale.ids['/chat/room'] = idOf[1];
      const late = client(t, server.url, transport, 'late', stale);
      await late.connect();
      const { reply } = await late.subscribe('/chat/room');
      assert.equal(reply.successful, false);
      assert.equal(reply.error, SALESFORCE_ERROR(idOf[1]));
      // After the last one dropped (3) is still whole.
      stale.ids['/chat/room'] = idOf[3];
      const whole = await late.collect('/chat/room');
      await whole.waitFor(5);
      await pause(200);
      assert.deepEqual(whole.messages.map((m) => m.data.n), range(4, 9));

      // Salesforce's shape on /topic/**: the id inside data.event.
      const sf = new ReplayExtension();
      const salesforce = client(t, server.url, transport, 'salesforce', sf);
      await salesforce.connect();
      const topic = await salesforce.collect('/topic/orders');
      await publish('/topic/orders', { payload: { order: 1 } });
      await topic.waitFor(1);
      const [event] = topic.messages;
      assert.deepEqual(Object.keys(event.data).sort(), ['event', 'payload']);
      assert.deepEqual(event.data.payload, { order: 1 });
      assert.ok(Number.isSafeInteger(event.data.event.replayId));
      assert.equal(event.ext?.replayId, undefined);
      assert.equal(sf.ids['/topic/orders'], event.data.event.replayId);
    });
  });
}

describe('replay in a cluster', { timeout: 90000 }, () => {
  for (const transport of TRANSPORTS) {
    test(`over ${transport}: ids are cluster-wide, history outlives a killed node and reaches a new one`, { timeout: 60000 }, async (t) => {
      const redis = await startRedis(t);
      const nodes = [];
      const start = async (name) => {
        const node = await startServer({ backplane: redis.url, 'node-name': name, history: '/chat/**=1000' });
        node.name = name;
        t.after(() => node.stop(0));
        nodes.push(node);
        return node;
      };
      const [a, b, c] = [await start('a'), await start('b'), await start('c')];
      // The subscriber's session lives on a; the witness is on b; the publisher on c.
      const publish = await rawPublisher(c.url);
      const witness = client(t, b.url, transport, 'witness');
      await witness.connect();
      const seen = await witness.collect('/chat/room');
      const replay = new ReplayExtension();
      const first = client(t, a.url, transport, 'first', replay);
      await first.connect();
      const room = await first.collect('/chat/room');
      for (const n of range(0, 50)) await publish('/chat/room', n);
      await room.waitFor(50, 15000);
      await seen.waitFor(50, 15000);
      assert.deepEqual(room.messages.map((m) => m.data), range(0, 50));
      // The same message has the same id on every node: a log position.
      assert.deepEqual(room.messages.map((m) => m.ext.replayId), seen.messages.slice(0, 50).map((m) => m.ext.replayId));
      await first.disconnect();

      for (const n of range(50, 100)) await publish('/chat/room', n);
      await seen.waitFor(100, 15000);
      await a.stop(0); // kill -9 of the node the client used

      // Back through another node, from the id it kept.
      const balancer = await startBalancer(t, [b, c].map((n) => ({ name: n.name, url: n.url })), { policy: 'round-robin' });
      const again = client(t, balancer.url, transport, 'again', replay);
      await again.connect();
      const back = await again.collect('/chat/room');
      await back.waitFor(50, 15000);
      assert.deepEqual(back.messages.map((m) => m.data), range(50, 100));
      assert.deepEqual(back.messages.map((m) => m.ext.replayId), seen.messages.slice(50, 100).map((m) => m.ext.replayId));

      // A node started now fills its history from the log: everything, through it alone.
      const d = await start('d');
      const all = new ReplayExtension();
      all.ids['/chat/room'] = -2;
      const late = client(t, d.url, transport, 'late', all);
      await late.connect();
      const history = await late.collect('/chat/room');
      await history.waitFor(100, 15000);
      await publish('/chat/room', 100);
      await history.waitFor(101, 15000);
      await pause(200);
      assert.deepEqual(history.messages.map((m) => m.data), range(0, 101));
      await withDeadline(seen.waitFor(101, 15000), 16000, 'witness gets the last one');
      assert.deepEqual(history.messages.map((m) => m.ext.replayId), seen.messages.map((m) => m.ext.replayId));
    });
  }
});
