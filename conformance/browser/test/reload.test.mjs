// The official CometD ReloadExtension (cometd 9.0.0) in headless Chromium against bayeuxd
// (PROTOCOL.md 7.3, checklist C76), once per transport.
//
// The page is www/reload.html (www/reload.js): one CometD client per document, the app code of
// the CometD documentation:
//   cometd.registerExtension('reload', new ReloadExtension());
//   window.addEventListener('beforeunload', () => cometd.reload());
//   cometd.addListener('/meta/handshake', (m) => { if (m.successful) cometd.subscribe(A, ...) });
//   cometd.handshake();
// page.reload() loads the same document again in the same tab (same sessionStorage, same
// cookies), which runs the same code. Expected (ReloadExtension.js):
// - page 1's reload() (unload path) aborts the transport and saves the last successful handshake
//   reply and the transport type in sessionStorage["org.cometd.reload"];
// - page 2's handshake() is NOT sent: the extension drops it and replays the saved reply locally
//   (ext.reload = true, supportedConnectionTypes = [old transport]); the client then sends a
//   /meta/connect with page 1's clientId and advice {timeout: 0}, and the extension holds every
//   other send (a batch) until that connect's reply arrives;
// - the client state is new: page 2 must subscribe again to get callbacks (the documentation says
//   the new page "still needs to call subscribe ... to register the callbacks"). The server keeps
//   the session's subscriptions (C76): a channel that page 2 does not subscribe again still gets
//   its messages delivered (the client has no callback for them; the tap extension sees them).
// Server side: the session must survive the gap, accept the old clientId on a new HTTP request /
// a new websocket, answer the timeout:0 connect at once with the full advice, treat the repeated
// /meta/subscribe as idempotent (one delivery per message), and have exactly one session for the
// tab: no /meta/handshake crosses the wire (Playwright records every request and frame to the
// mount) and bayeuxd logs no second "session added" (its info log, on stderr).
// Negative control: page 2 WITHOUT the extension (same saved state in sessionStorage) sends a real
// handshake and gets a new clientId.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, bounded } from '../lib/browser.mjs';
import { binaryIdentity } from '../lib/server.mjs';
import { ALL_TRANSPORTS, scenario, deliveries } from '../lib/fixture.mjs';

const TEST_TIMEOUT = 30000;
const STATE_KEY = 'org.cometd.reload';
const SERVER_TIMEOUT = 3000; // the browser suite's default --timeout

const isHandshake = (m) => m.channel === '/meta/handshake';
const isConnect = (m) => m.channel === '/meta/connect';

/** Drives www/reload.html in `page` (the fixture's first page, which starts on index.html). */
function reloadPage(page, server) {
  const url = `${new URL(server.url).origin}/www/reload.html`;
  const ready = async () => {
    await page.waitForFunction(() => window.reloadHarness && window.reloadHarness.ready === true, null, { timeout: 10000 });
  };
  return {
    url,
    async open() {
      const res = await page.goto(url, { timeout: 10000 });
      assert.equal(res && res.status(), 200, `GET ${url}`);
      await ready();
    },
    /** Same tab, same URL: a new document with the same sessionStorage and cookies. */
    async reload() {
      const res = await page.reload({ timeout: 10000 });
      assert.equal(res && res.status(), 200, `reload of ${url}`);
      await ready();
    },
    call: (fn, arg = {}, ms = 15000) =>
      bounded(page.evaluate(([f, a]) => window.reloadHarness[f](a), [fn, arg]), ms,
        `reloadHarness.${fn}(${JSON.stringify(arg).slice(0, 200)})`),
  };
}

/** Client ids of bayeuxd's info log lines "session added client_id=..." / "session removed ...". */
function sessionLog(stderr) {
  const added = [...stderr.matchAll(/session added client_id=(\S+)/g)].map((m) => m[1]);
  const removed = [...stderr.matchAll(/session removed client_id=(\S+)/g)].map((m) => m[1]);
  return { added, removed };
}

/** Every message the page sent / received on the wire after the marks (HTTP or websocket). */
function wireSince(wire, mark) {
  const http = wire.http.slice(mark.http);
  const sockets = wire.sockets.slice(mark.sockets);
  return {
    http,
    sockets,
    sent: [...http.flatMap((e) => e.messages), ...sockets.flatMap((s) => s.sent.flat())],
    received: [...http.flatMap((e) => e.replies ?? []), ...sockets.flatMap((s) => s.received.flat())],
  };
}

const markOf = (wire) => ({ http: wire.http.length, sockets: wire.sockets.length });

/** sessionLog() once `ids` all appear as added (stderr is a pipe: allow it a moment), bounded. */
async function sessionLogWith(server, ids, ms = 2000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const log = sessionLog(server.stderr);
    if (ids.every((id) => log.added.includes(id)) || Date.now() > deadline) return log;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('official CometD ReloadExtension in Chromium (PROTOCOL 7.3, C76)', () => {
  let launching = null;
  const browser = () => (launching ??= launchBrowser());
  before(() => console.log(`bayeuxd under test: ${binaryIdentity()}`));
  after(async () => {
    const b = await launching?.catch(() => null);
    if (b) await b.close();
  });

  for (const T of ALL_TRANSPORTS) {
    const isHttp = T !== 'websocket';

    test(`R1. ${T}: reload keeps the clientId, no handshake on the wire, one session, subscriptions kept, deliveries exactly once`,
      { timeout: TEST_TIMEOUT }, () => scenario(browser, { transport: T }, async ({ page, wire, server, openContext }) => {
        const chA = `/reload/${T}/a`; // subscribed by the app code in every document (handshake listener)
        const chB = `/reload/${T}/b`; // subscribed by page 1 only
        const rp = reloadPage(page, server);
        const appCode = { url: server.url, transport: T, reload: true, reloadOn: 'beforeunload', subscribeOnHandshake: [chA] };

        // ---- page 1: a real handshake, subscriptions A (listener) and B (explicit).
        await rp.open();
        const beforePage1 = markOf(wire);
        const p1 = await rp.call('start', appCode);
        assert.equal(p1.transport, T);
        assert.equal(typeof p1.clientId, 'string');
        const oldId = p1.clientId;
        assert.equal(p1.tapOut.filter((e) => isHandshake(e.message)).length, 1, 'page 1 sent one handshake');
        assert.equal((await rp.call('waitForSubscribeReply', { channel: chA })).successful, true);
        assert.equal((await rp.call('subscribe', { channel: chB })).successful, true);
        // Control: the wire recorder does see page 1's handshake.
        const w1 = wireSince(wire, beforePage1);
        assert.equal(w1.sent.filter(isHandshake).length, 1, 'page 1 handshake recorded on the wire');

        // A second user (own browser context) publishes; A works in page 1.
        const other = await openContext();
        const pub = await other.connect({ name: 'publisher' });
        const m0 = { n: 0, before: 'reload' };
        assert.equal((await other.call('publish', { id: pub.id, channel: chA, data: m0 })).reply.successful, true);
        assert.deepEqual(deliveries(await rp.call('waitForData', { channel: chA, count: 1 })), [{ channel: chA, data: m0 }]);

        // ---- unload (beforeunload -> cometd.reload()) and page 2 in the same tab.
        await rp.reload();
        const saved = await rp.call('savedState');
        assert.ok(saved, `page 2 found no ${STATE_KEY} in sessionStorage: cometd.reload() did not run on unload`);
        const savedState = JSON.parse(saved);
        assert.equal(savedState.handshakeResponse?.clientId, oldId, 'saved handshake reply');
        assert.equal(savedState.transportType, T, 'saved transport type');
        const page2 = markOf(wire); // everything after this was sent by page 2
        const p2 = await rp.call('start', appCode);

        // (a) no handshake left the page; the first message is a timeout:0 connect with the old clientId.
        assert.equal(p2.clientId, oldId, 'page 2 clientId');
        assert.equal(p2.transport, T);
        assert.deepEqual(p2.tapOut.filter((e) => isHandshake(e.message)), [], 'page 2 tap saw a handshake going out');
        const replayed = p2.tapIn.find((e) => isHandshake(e.message));
        assert.ok(replayed, 'page 2: no (replayed) handshake reply');
        assert.equal(replayed.message.successful, true);
        assert.equal(replayed.message.clientId, oldId);
        assert.deepEqual(replayed.message.ext, { reload: true }, 'replayed reply is marked ext.reload');
        assert.deepEqual(replayed.message.supportedConnectionTypes, [T]);
        const firstOut = p2.tapOut[0].message;
        assert.equal(firstOut.channel, '/meta/connect', `page 2 first outgoing message: ${JSON.stringify(firstOut)}`);
        assert.equal(firstOut.clientId, oldId);
        assert.deepEqual(firstOut.advice, { timeout: 0 });
        assert.equal(firstOut.connectionType, T);

        // (b) the server answers that connect successfully, at once, with the full advice.
        const firstReply = p2.tapIn.find((e) => isConnect(e.message) && e.message.id === firstOut.id);
        assert.ok(firstReply, `no reply to page 2's first /meta/connect; tapIn ${JSON.stringify(p2.tapIn).slice(0, 1500)}`);
        assert.equal(firstReply.message.successful, true, `reply ${JSON.stringify(firstReply.message)}`);
        assert.equal(firstReply.message.advice?.reconnect, 'retry');
        assert.equal(firstReply.message.advice?.interval, 0);
        assert.equal(firstReply.message.advice?.timeout, SERVER_TIMEOUT);
        const sentAt = p2.tapOut[0].at;
        assert.ok(firstReply.at - sentAt < 1000, `timeout:0 connect answered after ${firstReply.at - sentAt} ms`);

        // The same, on the wire (independent of the client library).
        const w2 = wireSince(wire, page2);
        assert.deepEqual(w2.sent.filter(isHandshake), [], 'a /meta/handshake reached the server from page 2');
        assert.equal(w2.sent[0]?.channel, '/meta/connect', `first message on the wire from page 2: ${JSON.stringify(w2.sent[0])}`);
        assert.equal(w2.sent[0].clientId, oldId);
        assert.deepEqual(w2.sent[0].advice, { timeout: 0 });
        if (isHttp) {
          assert.equal(w2.sockets.length, 0);
          assert.equal(w2.http[0].path, '/cometd/connect');
        } else {
          assert.equal(w2.http.length, 0);
          assert.equal(w2.sockets.length, 1, 'page 2 opened one new websocket');
          assert.deepEqual(w2.sockets[0].sent[0].map((m) => m.channel), ['/meta/connect'], 'first frame on the new socket');
        }

        // The app's re-subscription (handshake listener) was held until that reply (batch), then succeeded.
        const subA = await rp.call('waitForSubscribeReply', { channel: chA });
        assert.equal(subA.successful, true, `page 2 re-subscribe reply ${JSON.stringify(subA)}`);
        let st = await rp.call('state');
        const subOut = st.tapOut.find((e) => e.message.channel === '/meta/subscribe');
        assert.equal(subOut.message.subscription, chA);
        assert.ok(subOut.at >= firstReply.at, 'the re-subscription left before the first connect reply');
        assert.deepEqual(st.tapOut.filter((e) => e.message.channel === '/meta/subscribe').map((e) => e.message.subscription),
          [chA], 'page 2 subscribes A only');

        // (c) deliveries: A (subscribed again) to the callback once each; B (subscribed by page 1
        // only) still delivered by the server, once, with no callback in page 2.
        const mB = { n: 1, on: 'b' };
        const mA = { n: 2, on: 'a' };
        const marker = { n: 3, marker: true };
        for (const [channel, data] of [[chB, mB], [chA, mA], [chA, marker]]) {
          const r = await other.call('publish', { id: pub.id, channel, data });
          assert.equal(r.reply.successful, true, JSON.stringify(r.reply));
        }
        const gotA = await rp.call('waitForData', { channel: chA, count: 2 });
        assert.deepEqual(deliveries(gotA), [{ channel: chA, data: mA }, { channel: chA, data: marker }],
          'page 2 callback on A: each message exactly once');
        st = await rp.call('state');
        const inData = (ch) => st.tapIn.filter((e) => e.message.channel === ch && 'data' in e.message).map((e) => e.message.data);
        assert.deepEqual(inData(chA), [mA, marker], 'messages on A that reached page 2 (tap)');
        assert.deepEqual(inData(chB), [mB], 'messages on B that reached page 2 (tap): the server kept the subscription');
        assert.deepEqual(Object.keys(st.received), [chA], 'page 2 has callbacks on A only');

        // (d) one session for the tab.
        assert.equal(st.clientId, oldId);
        // Every page-2 exchange but the last (held) connect has its response recorded (parsed asynchronously).
        await wire.waitFor(() => {
          const { http } = wireSince(wire, page2);
          const lastConnect = http.findLastIndex((e) => e.messages.some(isConnect));
          return http.every((e, i) => e.done || i === lastConnect);
        }, 5000, "responses to page 2's requests");
        const w2b = wireSince(wire, page2);
        assert.deepEqual(w2b.sent.filter(isHandshake), [], 'a /meta/handshake reached the server from page 2');
        const foreign = w2b.sent.filter((m) => m.clientId !== oldId);
        assert.deepEqual(foreign, [], 'page 2 sent messages with another clientId');
        const wireReply = w2b.received.find((m) => isConnect(m) && m.id === firstOut.id);
        assert.equal(wireReply?.successful, true, `wire reply to page 2's first connect: ${JSON.stringify(wireReply)}`);
        assert.equal(wireReply.advice?.timeout, SERVER_TIMEOUT);
        const unknown = w2b.received.filter((m) => m.successful === false);
        assert.deepEqual(unknown, [], 'unsuccessful replies to page 2');
        if (isHttp) {
          const multi = st.tapIn.filter((e) => e.message.advice?.['multiple-clients']);
          assert.deepEqual(multi, [], 'page 2 (one session in this browser) got multiple-clients advice');
        }
        const log = await sessionLogWith(server, [oldId, pub.clientId]);
        assert.ok(log.added.includes(oldId) && log.added.includes(pub.clientId),
          `bayeuxd's info log has no "session added" for page 1 / the publisher (RUST_LOG filtering?): ${JSON.stringify(log)}`);
        assert.deepEqual(log.added.sort(), [oldId, pub.clientId].sort(), 'sessions created by the server');
        assert.deepEqual(log.removed, [], 'sessions removed by the server');
        console.log(`R1 ${T}: clientId ${oldId} kept across the reload; page 2 wire: ` +
          JSON.stringify(w2b.sent.slice(0, 3).map((m) => ({ channel: m.channel, advice: m.advice, subscription: m.subscription }))));
      }));

    test(`N1. ${T}: control: page 2 without the reload extension handshakes on the wire and gets a new clientId`,
      { timeout: TEST_TIMEOUT }, () => scenario(browser, { transport: T }, async ({ page, wire, server }) => {
        const ch = `/reload/${T}/control`;
        const rp = reloadPage(page, server);
        await rp.open();
        const p1 = await rp.call('start', { url: server.url, transport: T, reload: true, reloadOn: 'beforeunload', subscribeOnHandshake: [ch] });
        const oldId = p1.clientId;
        await rp.call('waitForSubscribeReply', { channel: ch });

        await rp.reload();
        const saved = await rp.call('savedState');
        assert.ok(saved, `no ${STATE_KEY} in sessionStorage after the reload`);
        assert.equal(JSON.parse(saved).handshakeResponse?.clientId, oldId);
        const page2 = markOf(wire);
        const p2 = await rp.call('start', { url: server.url, transport: T, reload: false, subscribeOnHandshake: [ch] });

        assert.equal(typeof p2.clientId, 'string');
        assert.notEqual(p2.clientId, oldId, 'without the extension page 2 must get a new clientId');
        assert.equal(p2.tapOut[0].message.channel, '/meta/handshake', 'page 2 first outgoing message');
        const w2 = wireSince(wire, page2);
        const handshakes = w2.sent.filter(isHandshake);
        assert.equal(handshakes.length, 1, 'page 2 handshakes on the wire');
        assert.equal(w2.sent[0].channel, '/meta/handshake');
        assert.ok(!('clientId' in w2.sent[0]));
        // The recorder parses HTTP response bodies asynchronously: wait (bounded) for that reply.
        const hsReply = await wire.waitFor(() => wireSince(wire, page2).received.find((m) => isHandshake(m) && m.successful === true),
          5000, "page 2's successful handshake reply");
        assert.equal(hsReply.clientId, p2.clientId);
        const connects = w2.sent.filter(isConnect);
        assert.ok(connects.length >= 1);
        assert.ok(connects.every((m) => m.clientId === p2.clientId), 'page 2 connects carry the new clientId');
        assert.equal((await rp.call('waitForSubscribeReply', { channel: ch })).successful, true);
        const log = await sessionLogWith(server, [oldId, p2.clientId]);
        assert.deepEqual(log.added.sort(), [oldId, p2.clientId].sort(), 'the server created a second session');
      }));
  }
});
