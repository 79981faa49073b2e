// A cluster with the OFFICIAL CometD JavaScript client: three bayeuxd nodes sharing a real
// Redis (started by the test), behind a round-robin balancer that sends every HTTP request and
// every new websocket to the next node in turn, with no affinity. Over long-polling AND
// websocket:
//
// - publishes cross nodes, wildcards deliver once, a burst arrives in order;
// - remote calls are answered whatever node the call and the caller's session are on;
// - kill -9 of the node serving a subscriber (official AckExtension) while a publisher on
//   another node sends 1000 messages: all 1000 arrive exactly once, in order, and the
//   client keeps its clientId (no second handshake); the same with a drain (SIGUSR1);
// - Redis stopped for 5 s mid-stream: publishes in between fail with 503::backplane_unavailable,
//   none that succeeded is lost, none arrives twice, and delivery resumes by itself;
// - the same pub/sub and kill -9 on a Redis Cluster of 3 masters.
//
// Same style as the other suites: bounded waits woken by events, assertions on exact data.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AckExtension } from 'cometd';
import { startServer } from '../lib/server.mjs';
import { startBalancer } from '../lib/balancer.mjs';
import { startExample } from '../lib/example.mjs';
import { startRedis, startRedisCluster } from '../lib/redis.mjs';
import { TestClient, rawPost, until, withDeadline } from '../lib/client.mjs';

const TRANSPORTS = ['long-polling', 'websocket'];
const ADMIN_TOKEN = 'cluster-test-admin-token-0123456789';
/** Quick retries, so that a client reconnects soon after its node died. */
const CLIENT_CONFIG = { backoffIncrement: 100, maxBackoff: 1000 };

/** Three nodes on `backplane`, and a round-robin balancer in front of them. */
async function cluster(t, backplane, { names = ['a', 'b', 'c'], options = {} } = {}) {
  const nodes = [];
  for (const name of names) {
    const node = await startServer({
      backplane,
      'node-name': name,
      'admin-token': ADMIN_TOKEN,
      'drain-window': 300,
      ...options,
    });
    node.name = name;
    nodes.push(node);
    t.after(() => node.stop(0));
  }
  const balancer = await startBalancer(t, nodes.map((n) => ({ name: n.name, url: n.url })), {
    policy: 'round-robin',
  });
  return { nodes, balancer };
}

function client(t, url, transport, { name, ack = false } = {}) {
  const c = new TestClient({
    url,
    name,
    websocket: transport === 'websocket',
    config: CLIENT_CONFIG,
  });
  if (ack) c.cometd.registerExtension('ack', new AckExtension());
  t.after(() => c.close());
  return c;
}

/** A raw long-polling publisher made directly on one node (not through the balancer). */
async function rawPublisher(node) {
  let id = 0;
  const hs = await rawPost(`${node.url}/handshake`, [{
    id: String(++id), channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'],
  }], { timeout: 5000 });
  const cookie = hs.headers.get('set-cookie')?.split(';')[0];
  const clientId = hs.json?.[0]?.clientId;
  assert.ok(clientId, `raw handshake on ${node.url}: ${hs.status} ${hs.text}`);
  return {
    clientId,
    /** Publishes; resolves the reply (successful or not). */
    async publish(channel, data) {
      const res = await rawPost(`${node.url}/`, [{ id: String(++id), channel, clientId, data }],
        { cookie, timeout: 5000 });
      assert.equal(res.status, 200, `publish on ${node.url}: ${res.status} ${res.text}`);
      return res.json.find((m) => m.successful !== undefined);
    },
  };
}

async function admin(node, path) {
  const res = await fetch(`${node.origin}${path}`, {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(3000),
  });
  assert.equal(res.status, 200, `GET ${path} on ${node.url}`);
  return await res.json();
}

/** The node (of `nodes`) that serves `clientId` now, as the admin API of a live node says. */
async function ownerOf(nodes, clientId) {
  const live = nodes.find((n) => n.running);
  const sessions = await admin(live, '/admin/sessions');
  const name = sessions.find((s) => s.clientId === clientId)?.node;
  return nodes.find((n) => n.name === name);
}

const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);

for (const transport of TRANSPORTS) {
  describe(`cluster over ${transport}`, { timeout: 120000 }, () => {
    test('publishes cross nodes; wildcards deliver once; a burst arrives in order', { timeout: 30000 }, async (t) => {
      const redis = await startRedis(t);
      const { balancer } = await cluster(t, redis.url);
      const subscriber = client(t, balancer.url, transport, { name: 'subscriber' });
      await subscriber.connect();
      const exact = await subscriber.collect('/chat/room');
      const wild = await subscriber.collect('/chat/*');
      const publisher = client(t, balancer.url, transport, { name: 'publisher' });
      await publisher.connect();
      const replies = [];
      for (const n of range(0, 100)) {
        replies.push(await publisher.publish('/chat/room', { n }));
      }
      assert.deepEqual(replies.map((r) => r.successful), replies.map(() => true));
      await exact.waitFor(100, 15000);
      await wild.waitFor(100, 15000);
      assert.deepEqual(exact.messages.map((m) => m.data.n), range(0, 100));
      assert.deepEqual(wild.messages.map((m) => m.data.n), range(0, 100));
      // The subscriber's requests went to more than one node: nothing was sticky.
      const nodesSeen = new Set(balancer.routes.filter((r) => r.clientId === subscriber.clientId).map((r) => r.node));
      if (transport === 'long-polling') assert.ok(nodesSeen.size > 1, `nodes: ${[...nodesSeen]}`);
      assert.equal(subscriber.handshakes.filter((m) => m.successful).length, 1, 'never handshook again');
    });

    test('remote calls are answered wherever the call lands', { timeout: 30000 }, async (t) => {
      const redis = await startRedis(t);
      const nodes = [];
      for (const name of ['a', 'b', 'c']) {
        const example = await startExample('services', { env: { BACKPLANE: redis.url, NODE_NAME: name } });
        t.after(() => example.stop());
        nodes.push({ name, url: example.url });
      }
      const balancer = await startBalancer(t, nodes, { policy: 'round-robin' });
      const caller = client(t, balancer.url, transport, { name: 'caller' });
      await caller.connect();
      for (const n of range(0, 6)) {
        const reply = await withDeadline(new Promise((resolve) => {
          caller.cometd.remoteCall('echo', { n }, 5000, resolve);
        }), 8000, `remoteCall ${n}`);
        assert.equal(reply.successful, true, JSON.stringify(reply));
        assert.deepEqual(reply.data, { n });
      }
      const whoami = await withDeadline(new Promise((resolve) => {
        caller.cometd.remoteCall('whoami', {}, 5000, resolve);
      }), 8000, 'remoteCall whoami');
      assert.deepEqual(whoami.data, { clientId: caller.clientId });
    });

    for (const how of ['kill -9', 'drain']) {
      test(`${how} of the node serving an acking subscriber: 1000 messages exactly once, same clientId`, { timeout: 60000 }, async (t) => {
        const redis = await startRedis(t);
        const { nodes, balancer } = await cluster(t, redis.url);
        const [a, b, c] = nodes;
        // The subscriber reaches a and b only; the publisher lives on c.
        balancer.nodes = balancer.nodes.filter((n) => n.name !== 'c');
        const subscriber = client(t, balancer.url, transport, { name: 'subscriber', ack: true });
        await subscriber.connect();
        const clientId = subscriber.clientId;
        const stream = await subscriber.collect('/stream');
        const publisher = await rawPublisher(c);
        let hit = null;
        const publishing = (async () => {
          for (const n of range(0, 1000)) {
            const reply = await publisher.publish('/stream', n);
            assert.equal(reply.successful, true, JSON.stringify(reply));
            if (n === 300) {
              hit = (await ownerOf(nodes, clientId)) ?? a;
              if (how === 'kill -9') await hit.stop(0);
              else hit.signal('SIGUSR1');
            }
          }
        })();
        await publishing;
        await stream.waitFor(1000, 30000);
        assert.deepEqual(stream.messages.map((m) => m.data), range(0, 1000));
        assert.equal(subscriber.clientId, clientId);
        assert.equal(subscriber.handshakes.filter((m) => m.successful).length, 1, 'no second handshake');
        assert.ok(hit === a || hit === b, `the node hit served the session: ${hit?.name}`);
        if (how === 'drain') {
          const exit = await withDeadline(hit.exited, 15000, 'drained node exits');
          assert.equal(exit.code, 0);
        }
        // Nothing more arrives: exactly once.
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(stream.messages.length, 1000);
      });
    }

    test('Redis stopped for 5 s: publishes fail clearly, none is lost or repeated, delivery resumes', { timeout: 60000 }, async (t) => {
      const redis = await startRedis(t);
      const { balancer } = await cluster(t, redis.url);
      const subscriber = client(t, balancer.url, transport, { name: 'subscriber' });
      await subscriber.connect();
      const stream = await subscriber.collect('/outage');
      const publisher = client(t, balancer.url, transport, { name: 'publisher' });
      await publisher.connect();
      const accepted = [];
      const refused = [];
      const send = async (n) => {
        const reply = await publisher.publish('/outage', n, 15000);
        if (reply.successful) accepted.push(n);
        else refused.push({ n, error: reply.error, httpCode: reply.failure?.httpCode });
      };
      for (const n of range(0, 20)) await send(n);
      await stream.waitFor(20, 10000);
      await redis.stop();
      const stoppedAt = Date.now();
      let n = 20;
      while (Date.now() - stoppedAt < 5000) {
        await send(n++);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await redis.start();
      // Once every node reads the log again, publishes succeed by themselves.
      const deadline = Date.now() + 15000;
      do {
        assert.ok(Date.now() < deadline, `publishes never succeeded again: ${JSON.stringify(refused.slice(-3))}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        await send(n++);
      } while (accepted.at(-1) !== n - 1);
      for (const m of range(n, n + 20)) await send(m);
      n += 20;
      // Refused clearly: by a node (the Bayeux error), or, once every node said it is not
      // ready, by the balancer (HTTP 503, which the client reports as a failed publish). A
      // websocket stays on its node, so there the node itself answers; over long-polling the
      // balancer may turn every request away first (conformance/tests/cluster.rs checks the
      // nodes' own answer without a balancer).
      assert.ok(refused.length > 0, 'some publishes met the outage');
      if (transport === 'websocket') {
        assert.ok(refused.every((r) => r.error === '503::backplane_unavailable'), JSON.stringify(refused));
      }
      for (const r of refused) {
        assert.ok(r.error === '503::backplane_unavailable' || r.httpCode === 503, JSON.stringify(r));
      }
      await stream.waitUntil((ms) => ms.some((m) => m.data === n - 1), 20000, 'the last message');
      const received = stream.messages.map((m) => m.data);
      assert.deepEqual(received, [...new Set(received)], 'no duplicates');
      assert.deepEqual(received, accepted, 'exactly what was accepted, in order');
    });

    test('on a Redis Cluster of 3 masters: pub/sub across nodes and a kill -9 takeover', { timeout: 60000 }, async (t) => {
      const redis = await startRedisCluster(t, { masters: 3 });
      const { nodes, balancer } = await cluster(t, redis.url);
      const [a, b, c] = nodes;
      balancer.nodes = balancer.nodes.filter((n) => n.name !== 'c');
      const subscriber = client(t, balancer.url, transport, { name: 'subscriber', ack: true });
      await subscriber.connect();
      const clientId = subscriber.clientId;
      const stream = await subscriber.collect('/stream');
      const publisher = await rawPublisher(c);
      for (const n of range(0, 300)) {
        const reply = await publisher.publish('/stream', n);
        assert.equal(reply.successful, true, JSON.stringify(reply));
        if (n === 100) ((await ownerOf(nodes, clientId)) ?? a).stop(0);
      }
      await stream.waitFor(300, 30000);
      assert.deepEqual(stream.messages.map((m) => m.data), range(0, 300));
      assert.equal(subscriber.clientId, clientId);
      assert.ok([a, b].some((n) => !n.running), 'a node was killed');
    });
  });
}
