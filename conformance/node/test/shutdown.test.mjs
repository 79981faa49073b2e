// Stopping bayeuxd (SIGTERM) with the OFFICIAL CometD JavaScript client and its AckExtension,
// over long-polling AND websocket: what is queued for a client that is between two connects
// when the stop begins is still handed to it, within --shutdown-grace.
//
// docs/configuration.md "Stopping and draining", docs/security.md "Shutdown": on SIGTERM every
// held /meta/connect is answered at once with what was queued for it and advice
// {reconnect: retry, interval >= 1000, timeout}; later connects are answered at once the same
// way; the process waits up to --shutdown-grace for clients between two connects to collect
// what is queued for them (while queued messages remain), then closes websockets with 1001 and
// exits 0.
//
// Scenario: bayeuxd with --interval 1000 (the client waits 1 s between connects),
// --shutdown-grace 5000, --timeout 20000 and the ack extension. The client subscribes in a
// /meta/handshake listener (as applications do); right after one of its successful /meta/connect
// replies (seen by an incoming extension registered after the AckExtension), a raw publisher
// session publishes 0..9 on the channel - queued, since the client is in its interval - and
// SIGTERM is sent at once. The client's next connect, about 1 s later, must collect 0..9, and
// bayeuxd must exit 0 right after that, long before the grace ends.
//
// Control: the same scenario with --shutdown-grace 0 loses 0..9 (bayeuxd exits before the client
// comes back), which shows that the scenario really depends on the grace and that the main test
// can fail.
//
// Same style as the other suites: assertions on what the application sees AND on the wire,
// bounded waits woken by events, no sleeps.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AckExtension } from 'cometd';
import { startServer } from '../lib/server.mjs';
import { Collector, TestClient, isDelivery, notifyChange, rawPost, until, withDeadline } from '../lib/client.mjs';

const TRANSPORTS = ['long-polling', 'websocket'];
const INTERVAL = 1000;
const GRACE = 5000;
const COUNT = 10; // messages 0..9
const SERVER_OPTIONS = { interval: INTERVAL, timeout: 20000, extensions: 'ack,timesync' };
const ALL = Array.from({ length: COUNT }, (_, n) => n);

/** A raw long-polling session (handshake only) that publishes a batch in one POST. */
async function rawPublisher(server) {
  const hs = await rawPost(`${server.url}/handshake`, [{
    id: '1', channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'],
  }], { timeout: 3000 });
  const reply = hs.json?.[0];
  assert.equal(reply?.successful, true, `raw publisher handshake: ${hs.status} ${hs.text}`);
  const cookie = hs.headers.get('set-cookie')?.split(';')[0];
  const clientId = reply.clientId;
  let id = 1;
  return {
    clientId,
    /** Publishes {n} for every n of `ns` on `channel`, in one batch; fails unless all succeed. */
    async publishAll(channel, ns) {
      const batch = ns.map((n) => ({ id: String(++id), channel, clientId, data: { n } }));
      const res = await rawPost(`${server.url}/`, batch, { cookie, timeout: 3000 });
      assert.equal(res.status, 200, `raw publish: ${res.status} ${res.text}`);
      const replies = (res.json ?? []).filter((m) => m && m.channel === channel && 'successful' in m);
      assert.deepEqual(replies.map((m) => [m.id, m.successful]), batch.map((m) => [m.id, true]),
        `raw publish replies: ${res.text}`);
    },
  };
}

/**
 * Runs the scenario up to bayeuxd's exit. Returns what the assertions need:
 * {server, client, wire, ns, trigger, signalAt, exit: {code, signal, at, nsAtExit}, state}.
 */
async function stopWhileQueued(t, transport, grace) {
  const server = await startServer({ ...SERVER_OPTIONS, 'shutdown-grace': grace });
  const channel = `/shutdown/${transport}`;
  const client = new TestClient({ url: server.url, name: `shutdown-${transport}-grace-${grace}`, websocket: transport === 'websocket' });
  t.after(async () => {
    await client.close();
    await server.stop();
  });
  const wire = () => client.frames ?? client.tap;
  const connectsSent = () => wire().sent().filter((m) => m && m.channel === '/meta/connect');

  assert.equal(client.cometd.registerExtension('ack', new AckExtension()), true, 'registerExtension(ack)');
  // The tap: remembers the first successful /meta/connect reply that arrives once the
  // subscription is confirmed (registered after the AckExtension, so it sees the reply after it).
  const received = new Collector(`${client.name} ${channel}`);
  const subscribed = [];
  let trigger = null;
  assert.equal(client.cometd.registerExtension('shutdown-tap', {
    incoming(message) {
      if (trigger === null && message.channel === '/meta/connect' && message.successful === true &&
          subscribed.some((r) => r.successful)) {
        trigger = { at: Date.now(), reply: message, connectsSent: connectsSent().length };
        notifyChange();
      }
      return message;
    },
  }), true, 'registerExtension(shutdown-tap)');
  client.cometd.addListener('/meta/handshake', (hs) => {
    if (!hs.successful) return;
    client.cometd.subscribe(channel, received.listener, (reply) => {
      subscribed.push(reply);
      notifyChange();
    });
  });

  const ns = () => received.messages.map((m) => m.data?.n);
  let signalAt = null;
  const state = () => `received n ${JSON.stringify(ns())}; client status ${client.status}, ` +
    `transport ${client.cometd.getTransport()?.type}; server running=${server.running}\n    ` +
    (client.frames ? `websockets (ms after SIGTERM): ${socketTimeline(client, signalAt)}\n    ` : '') +
    `wire of ${client.name}:\n    ${wire().summary(20)}\n  bayeuxd stderr tail: ${server.stderr.slice(-1500)}`;

  const hs = await client.handshake();
  assert.equal(hs.successful, true, `handshake: ${JSON.stringify(hs)}`);
  assert.deepEqual(hs.advice && { reconnect: hs.advice.reconnect, interval: hs.advice.interval },
    { reconnect: 'retry', interval: INTERVAL }, `handshake advice: ${JSON.stringify(hs)}`);
  await until(() => subscribed.length > 0, { timeout: 3000, what: `subscribe reply for ${channel}`, describe: state });
  assert.equal(subscribed[0].successful, true, `subscribe: ${JSON.stringify(subscribed[0])}`);
  assert.equal(client.cometd.getTransport()?.type, transport, `transport in use; ${state()}`);
  const publisher = await rawPublisher(server);

  // Right after a successful connect reply the client waits INTERVAL before its next connect.
  await until(() => trigger, {
    timeout: 3 * INTERVAL, what: 'a successful /meta/connect reply after the subscription', describe: state,
  });
  await publisher.publishAll(channel, ALL);
  // Premise: the client has not sent its next connect yet, so 0..9 are queued (not delivered
  // to a held connect) when the stop begins.
  const sentBefore = connectsSent().length;
  signalAt = Date.now();
  server.signal('SIGTERM');
  const exited = server.exited.then((info) => ({ ...info, at: Date.now(), nsAtExit: ns() }));
  assert.equal(sentBefore, trigger.connectsSent,
    `premise: SIGTERM sent while the client was between two connects (publishing took ${signalAt - trigger.at} ms ` +
    `of its ${INTERVAL} ms interval); ${state()}`);
  assert.deepEqual(ns(), [], `nothing of 0..9 delivered before SIGTERM; ${state()}`);

  const exit = await withDeadline(exited, grace + 3000, `bayeuxd to exit after SIGTERM (grace ${grace} ms); ${state()}`);
  t.diagnostic(`${transport}, grace ${grace}: trigger->SIGTERM ${signalAt - trigger.at} ms, ` +
    `SIGTERM->exit ${exit.at - signalAt} ms, received at exit ${JSON.stringify(exit.nsAtExit)}`);
  return { server, client, wire, ns, channel, trigger, signalAt, exit, state };
}

/** Every websocket of `client`: when it opened and closed (relative to `since`), its close, the connects on it. */
function socketTimeline(client, since) {
  const rel = (at) => (at === null || at === undefined ? '-' : since === null ? at : `${at - since >= 0 ? '+' : ''}${at - since}`);
  return client.frames.sockets.map((s) => {
    const frames = client.frames.frames.filter((f) => f.socket === s.n);
    const connects = frames.filter((f) => f.dir === 'out').flatMap((f) => f.messages ?? [])
      .filter((m) => m.channel === '/meta/connect').map((m) => m.id);
    const answered = frames.filter((f) => f.dir === 'in').flatMap((f) => f.messages ?? [])
      .filter((m) => m.channel === '/meta/connect').map((m) => m.id);
    return `#${s.n} opened ${rel(s.openedAt)} closed ${rel(s.closedAt)} ${JSON.stringify(s.close)}, ` +
      `connects sent ${JSON.stringify(connects)} answered ${JSON.stringify(answered)}`;
  }).join('; ');
}

/** The close of the client's first websocket, once it is closed (bounded). */
async function firstSocketClose(client, state) {
  const [socket] = client.frames.sockets;
  await until(() => socket.close !== null, { timeout: 3000, what: 'the websocket closed by bayeuxd', describe: state });
  return socket;
}

for (const transport of TRANSPORTS) {
  describe(`shutdown over ${transport}`, { timeout: 30000 }, () => {
    test('SIGTERM: a client between two connects collects what was queued for it, then bayeuxd exits 0 (ack)', { timeout: 15000 }, async (t) => {
      const run = await stopWhileQueued(t, transport, GRACE);
      const { client, wire, ns, channel, signalAt, exit, state } = run;

      assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null },
        `bayeuxd's exit after SIGTERM; ${state()}`);
      // The client collected 0..9 before bayeuxd exited: exactly once, in order.
      assert.deepEqual(exit.nsAtExit, ALL, `received 0..9 before bayeuxd exited; ${state()}`);
      assert.deepEqual(ns(), ALL, `received 0..9 exactly once, in order; ${state()}`);

      // On the wire: one batch carries them, with the reply to a connect sent after SIGTERM.
      const batches = client.frames
        ? client.frames.framesIn().map((f) => ({ messages: f.messages ?? [], at: f.at }))
        : client.tap.completed.filter((e) => Array.isArray(e.response)).map((e) => ({ messages: e.response, at: e.doneAt }));
      const carrying = batches.filter((b) => b.messages.some((m) => isDelivery(m) && m.channel === channel));
      assert.equal(carrying.length, 1, `one batch carries the deliveries; ${state()}`);
      const [batch] = carrying;
      assert.deepEqual(batch.messages.filter(isDelivery).map((m) => [m.channel, m.data?.n]), ALL.map((n) => [channel, n]),
        `the batch carries 0..9 once, in order: ${JSON.stringify(batch.messages)}`);
      const replies = batch.messages.filter((m) => m && m.channel === '/meta/connect' && 'successful' in m);
      assert.equal(replies.length, 1, `the batch holds a /meta/connect reply: ${JSON.stringify(batch.messages)}`);
      const [reply] = replies;
      assert.equal(reply.successful, true, `the connect reply carrying 0..9: ${JSON.stringify(reply)}`);
      assert.equal(reply.advice?.reconnect, 'retry', `advice of the reply carrying 0..9: ${JSON.stringify(reply)}`);
      assert.ok(typeof reply.advice?.interval === 'number' && reply.advice.interval >= 1000,
        `advice interval >= 1000 in the reply carrying 0..9: ${JSON.stringify(reply)}`);
      assert.ok('timeout' in reply.advice, `advice timeout in the reply carrying 0..9: ${JSON.stringify(reply)}`);
      assert.equal(typeof reply.ext?.ack, 'number', `an ack batch number (ack extension in use): ${JSON.stringify(reply)}`);
      // It answers the client's first connect after SIGTERM, at once (not held for the timeout).
      const connect = client.frames
        ? client.frames.framesOut().flatMap((f) => (f.messages ?? []).map((m) => ({ m, at: f.at }))).find((x) => x.m.channel === '/meta/connect' && x.m.id === reply.id)
        : client.tap.exchanges.flatMap((e) => (Array.isArray(e.request) ? e.request : []).map((m) => ({ m, at: e.sentAt }))).find((x) => x.m.channel === '/meta/connect' && x.m.id === reply.id);
      assert.ok(connect, `the connect answered by ${JSON.stringify(reply)} was sent by the client; ${state()}`);
      assert.ok(connect.at >= signalAt, `that connect was sent after SIGTERM (${connect.at - signalAt} ms); ${state()}`);
      const firstAfter = wire().sent().filter((m) => m.channel === '/meta/connect');
      assert.equal(firstAfter.indexOf(connect.m), run.trigger.connectsSent, `it is the client's first connect after SIGTERM; ${state()}`);
      assert.ok(batch.at - connect.at < 500, `answered at once: ${batch.at - connect.at} ms (timeout 20000)`);

      // bayeuxd exited after the client collected them, soon after that connect, well before the grace.
      assert.ok(exit.at >= batch.at, `exit after the reply carrying 0..9 arrived (${exit.at - batch.at} ms)`);
      assert.ok(exit.at - batch.at < INTERVAL,
        `bayeuxd exited ${exit.at - batch.at} ms after the client collected 0..9: expected before the client's next connect (${INTERVAL} ms)`);
      assert.ok(exit.at - signalAt < INTERVAL + 1500,
        `bayeuxd exited ${exit.at - signalAt} ms after SIGTERM: expected soon after the client's next connect, well before the ${GRACE} ms grace`);
      if (transport === 'websocket') {
        // One websocket all along: bayeuxd closed it (1001) only after the client collected 0..9.
        assert.equal(client.frames.sockets.length, 1, `one websocket all along; ${state()}`);
        const socket = await firstSocketClose(client, state);
        assert.equal(socket.close.code, 1001, `bayeuxd closed the websocket with 1001: ${JSON.stringify(socket.close)}`);
        assert.ok(socket.closedAt >= batch.at, `the websocket closed after the reply carrying 0..9; ${state()}`);
        assert.equal(client.tap.exchanges.length, 0, `no HTTP fallback: ${client.tap.summary()}`);
      }
    });

    // Over websocket the socket itself stays open until its next connect reply (the server's
    // graceful stop waits for open connections), so even without a grace nothing is lost: the
    // control only makes sense for long-polling, where a stopped listener cannot be reached.
    if (transport === 'websocket') {
      test('with --shutdown-grace 0 the open websocket still collects 0..9 before it is closed', { timeout: 15000 }, async (t) => {
        const { client, ns, exit, state } = await stopWhileQueued(t, transport, 0);
        assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null },
          `bayeuxd's exit after SIGTERM; ${state()}`);
        assert.deepEqual(exit.nsAtExit, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
          `all of 0..9 received before bayeuxd exited; ${state()}`);
        assert.deepEqual(ns(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], `each exactly once; ${state()}`);
        const socket = await firstSocketClose(client, state);
        assert.equal(socket.close.code, 1001, `then closed with 1001: ${JSON.stringify(socket.close)}`);
      });
      return;
    }
    test('control: with --shutdown-grace 0 the same messages are lost (why the grace exists)', { timeout: 15000 }, async (t) => {
      const { client, wire, ns, channel, signalAt, exit, state } = await stopWhileQueued(t, transport, 0);

      assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null },
        `bayeuxd's exit after SIGTERM; ${state()}`);
      assert.deepEqual(exit.nsAtExit, [], `none of 0..9 received before bayeuxd exited; ${state()}`);
      assert.ok(exit.at - signalAt < INTERVAL,
        `with no grace bayeuxd exits at once, before the client's next connect (${exit.at - signalAt} ms after SIGTERM)`);
      // The client's next connect finds no server: the messages are gone for good.
      await until(() => client.connects.some((m) => m.successful === false), {
        timeout: INTERVAL + 5000, what: 'the client\'s next /meta/connect failing', describe: state,
      });
      assert.deepEqual(ns(), [], `none of 0..9 ever received; ${state()}`);
      assert.deepEqual(wire().deliveries(channel), [], `no delivery on the wire; ${state()}`);
      if (transport === 'websocket') {
        const socket = await firstSocketClose(client, state);
        assert.equal(socket.close.code, 1001, `bayeuxd closed the websocket with 1001: ${JSON.stringify(socket.close)}`);
      }
    });
  });
}
