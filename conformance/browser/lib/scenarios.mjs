// The per-transport scenarios: the official CometD client in Chromium, forced onto one
// transport (the other two unregistered), against a fresh bayeuxd per scenario.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser } from './browser.mjs';
import { binaryIdentity } from './server.mjs';
import { ALL_TRANSPORTS, scenario, handshakeReply, deliveries } from './fixture.mjs';
import { assertTransportWire } from './wire-checks.mjs';

const TEST_TIMEOUT = 30000;

/** Unicode that must survive JSON, URL encoding (JSONP), UTF-8 frames and bodies unchanged. */
export const UNICODE_DATA = Object.freeze({
  text: 'héllo wörld – naïve café ß Ω ≠ ∞',
  cjk: '日本語のテキスト 中文 한국어',
  emoji: '😀🎉👍🏽 🇫🇷',
  rtl: 'עברית العربية',
  escapes: 'quote " backslash \\ slash / tab \t newline \n cr \r nul \u0000 bell \u0007',
  separators: 'line\u2028para\u2029end',
  html: '</script><script>alert(1)</script>',
  'ключ ✓': ['вложенный', { 'キー': '値' }],
  numbers: [0, -1, 2.5, 1e-7, 9007199254740991],
  literals: [true, false, null],
  empty: { string: '', array: [], object: {} },
});

/** Deterministic text of `length` characters mixing ASCII and multi-byte characters. */
export function bigText(length, { asciiOnly = false } = {}) {
  const alphabet = asciiOnly
    ? 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
    : 'abcdefghijklmnopqrstuvwxyz0123456789 éüß日本😀"\\/<>&{}[]';
  const chars = Array.from(alphabet);
  let out = '';
  let x = 12345;
  while (out.length < length) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out += chars[x % chars.length];
  }
  return out.slice(0, length);
}

export function transportSuite(T) {
  describe(`official CometD client in Chromium over ${T}`, () => {
    // Launched by the first test that needs it; if Chromium is missing every test FAILS
    // with the reason (a failing before() hook would only mark them "cancelled").
    let launching = null;
    const browser = () => (launching ??= launchBrowser());
    before(() => console.log(`bayeuxd under test: ${binaryIdentity()}`));
    after(async () => {
      const b = await launching?.catch(() => null);
      if (b) await b.close();
    });

    const run = (serverOptions, body) => scenario(browser, { transport: T, serverOptions }, body);
    const isHttp = T !== 'websocket';

    test(`1. ${T}: handshake negotiates ${T}, connects carry connectionType ${T}, held connect answered at timeout`,
      { timeout: TEST_TIMEOUT }, () => run({}, async ({ connect, call, wire, server }) => {
        const a = await connect();
        assert.deepEqual(a.transportTypes, [T], 'transports registered in the client');

        const sentHandshake = a.tapOut.find((e) => e.message.channel === '/meta/handshake').message;
        assert.deepEqual(sentHandshake.supportedConnectionTypes, [T], 'client offered only the forced transport');

        const hs = handshakeReply(a);
        assert.equal(hs.successful, true);
        assert.equal(hs.version, '1.0');
        assert.equal(typeof hs.clientId, 'string');
        assert.ok(hs.clientId.length > 0);
        assert.ok(Array.isArray(hs.supportedConnectionTypes) && hs.supportedConnectionTypes.includes(T),
          `supportedConnectionTypes ${JSON.stringify(hs.supportedConnectionTypes)} lacks ${T}`);
        assert.deepEqual(hs.supportedConnectionTypes, ALL_TRANSPORTS,
          'default server: all three transports, in contract order');
        assert.equal(a.transport, T, 'cometd.getTransport().type');

        // First connect: advice {timeout:0}, answered at once with the full advice.
        const firstIndex = a.tapOut.findIndex((e) => e.message.channel === '/meta/connect');
        const firstOut = a.tapOut[firstIndex];
        assert.deepEqual(firstOut.message.advice, { timeout: 0 });
        const firstReply = a.tapIn.find((e) => e.message.channel === '/meta/connect' && e.message.id === firstOut.message.id);
        assert.ok(firstReply, 'no reply to the first /meta/connect');
        assert.equal(firstReply.message.successful, true);
        assert.equal(firstReply.message.advice?.reconnect, 'retry');
        assert.equal(firstReply.message.advice?.interval, 0);
        assert.equal(firstReply.message.advice?.timeout, 3000, 'advice.timeout = server --timeout');

        // Second connect is held for --timeout (3000 ms) and answered with its own id.
        const held = await call('waitForOutgoing', { id: a.id, match: { channel: '/meta/connect' }, from: firstIndex + 1 });
        const heldReply = await call('waitForIncoming', {
          id: a.id, match: { channel: '/meta/connect', id: held.message.id }, ms: 8000,
        });
        const heldFor = heldReply.at - held.at;
        assert.equal(heldReply.message.successful, true);
        assert.ok(heldFor >= 2500 && heldFor <= 6000, `held connect answered after ${heldFor} ms, expected ~3000`);
        // ...and the client goes on polling over the same transport.
        await call('waitForOutgoing', { id: a.id, match: { channel: '/meta/connect' }, from: held.index + 1 });

        const st = await call('state', { id: a.id });
        const connects = st.tapOut.filter((e) => e.message.channel === '/meta/connect');
        assert.ok(connects.length >= 3);
        assert.deepEqual([...new Set(connects.map((e) => e.message.connectionType))], [T],
          'connectionType of every /meta/connect sent');
        assert.equal(st.transport, T);

        await assertTransportWire(T, wire, server.url);
        if (T === 'websocket') {
          assert.equal(wire.sockets.length, 1, 'one websocket for the whole session');
          assert.equal(wire.sockets[0].sent[0][0].channel, '/meta/handshake', 'handshake is the first frame');
          const hsFrame = wire.framesReceivedWith((m) => m.channel === '/meta/handshake');
          assert.equal(hsFrame.length, 1);
        } else {
          const hsReq = wire.requestsWith((m) => m.channel === '/meta/handshake');
          assert.deepEqual(hsReq.map((e) => e.path), ['/cometd/handshake']);
          assert.ok(wire.requestsWith(isConnect).every((e) => e.path === '/cometd/connect'));
        }
      }));

    test(`2. ${T}: subscribe, publish, receive own message once; publish reply has no data`,
      { timeout: TEST_TIMEOUT }, () => run({ timeout: 10000 }, async ({ connect, call, wire, server }) => {
        const a = await connect();
        const channel = `/browser/${T}/echo`;
        const sub = await call('subscribe', { id: a.id, channel });
        assert.equal(sub.successful, true, `subscribe reply ${JSON.stringify(sub)}`);
        assert.equal(sub.subscription, channel);
        assert.equal(sub.channel, '/meta/subscribe');

        const data = { text: 'hello from the browser', n: 42, nested: { ok: true, list: [1, 'two', null] } };
        const pub = await call('publish', { id: a.id, channel, data });
        assert.equal(pub.reply.successful, true, `publish reply ${JSON.stringify(pub.reply)}`);
        assert.equal(pub.reply.channel, channel);
        assert.ok(!('data' in pub.reply), `publish reply carries data: ${JSON.stringify(pub.reply)}`);
        assert.ok(pub.elapsed < 1000, `publish reply took ${pub.elapsed} ms`);
        // The reply travelled with the publish's own id.
        const sentPublish = (await call('state', { id: a.id })).tapOut.find((e) => e.message.channel === channel).message;
        assert.equal(pub.reply.id, sentPublish.id);
        assert.equal(typeof sentPublish.id, 'string');

        const got = await call('waitForData', { id: a.id, channel, count: 1, ms: 3000 });
        const latency = got[0].at - pub.start;
        // --timeout is 10000 here, so a server that only delivers when the held connect expires fails this.
        assert.ok(latency < 1000, `own message delivered ${latency} ms after publishing`);

        // Barrier: a second message from the same publisher; the session queue is FIFO, so
        // a duplicate of the first would show up before it.
        const marker = { marker: true };
        await call('publish', { id: a.id, channel, data: marker });
        const all = await call('waitForData', { id: a.id, channel, count: 2 });
        assert.deepEqual(deliveries(all), [{ channel, data }, { channel, data: marker }]);

        await assertTransportWire(T, wire, server.url);
        if (T === 'websocket') {
          // Pushed while the connect stays held: no delivery frame answers the connect.
          const frames = wire.framesReceivedWith((m) => m.channel === channel && 'data' in m);
          assert.ok(frames.length >= 1);
          for (const f of frames) {
            assert.ok(!f.some(isConnect), `delivery frame also answered /meta/connect: ${JSON.stringify(f)}`);
          }
        }
      }));

    test(`3. ${T}: cometd.batch() of 5 publishes leaves in one ${isHttp ? 'request' : 'frame'}, delivered in order`,
      { timeout: TEST_TIMEOUT }, () => run({}, async ({ connect, call, wire, server }) => {
        const a = await connect();
        const channel = `/browser/${T}/batch`;
        await call('subscribe', { id: a.id, channel });
        const datas = [0, 1, 2, 3, 4].map((seq) => ({ seq, text: `message ${seq}` }));
        const { replies } = await call('batchPublish', { id: a.id, channel, datas });
        replies.forEach((r, i) => {
          assert.equal(r.successful, true, `reply ${i}: ${JSON.stringify(r)}`);
          assert.equal(r.channel, channel);
          assert.ok(!('data' in r), `publish reply ${i} carries data`);
        });
        const ids = replies.map((r) => r.id);
        assert.equal(new Set(ids).size, 5, `reply ids ${JSON.stringify(ids)}`);

        const got = await call('waitForData', { id: a.id, channel, count: 5 });
        assert.deepEqual(deliveries(got), datas.map((data) => ({ channel, data })));
        await call('publish', { id: a.id, channel, data: { marker: true } });
        const all = await call('waitForData', { id: a.id, channel, count: 6 });
        assert.deepEqual(deliveries(all).map((d) => d.data), [...datas, { marker: true }]);

        // Wire: exactly one request/frame holds the batch, with the 5 publishes in order.
        const isBatched = (m) => m.channel === channel && m.data && typeof m.data.seq === 'number';
        const units = T === 'websocket' ? wire.framesSentWith(isBatched) : wire.requestsWith(isBatched).map((e) => e.messages);
        assert.equal(units.length, 1, `the batch left in ${units.length} ${isHttp ? 'requests' : 'frames'}`);
        assert.deepEqual(units[0].map((m) => m.data), datas, 'the batch holds exactly the 5 publishes, in order');
        assert.deepEqual(units[0].map((m) => m.id), ids);
        if (isHttp) {
          const [req] = wire.requestsWith(isBatched);
          await wire.waitFor(() => req.done, 5000, 'the batch response');
          const publishReplies = req.replies.filter((m) => m.channel === channel && !('data' in m));
          assert.deepEqual(publishReplies.map((m) => m.id), ids, 'the batch response holds the 5 replies, in order');
        }
        await assertTransportWire(T, wire, server.url);
      }));

    test(`4. ${T}: two clients in one page (shared cookie) and a second browser context`,
      { timeout: TEST_TIMEOUT }, () => run({}, async ({ connect, call, wire, server, context, openContext, openTab }) => {
        const channel = `/browser/${T}/room`;
        const a = await connect({ name: 'A' });
        // cometd 9's CallbackPollingTransport numbers its JSONP callbacks per instance
        // (window._cometd_jsonp_0, _1, ...), so two instances in one window overwrite and delete
        // each other's callbacks. For callback-polling, B is a second tab of the same browser
        // context instead: same BAYEUX_BROWSER cookie, separate window.
        const tabB = T === 'callback-polling' ? await openTab() : null;
        const callB = tabB ? tabB.call : call;
        const b = tabB ? await tabB.connect({ name: 'B' }) : await connect({ name: 'B' });
        assert.notEqual(a.clientId, b.clientId);
        await call('subscribe', { id: a.id, channel });

        const m1 = { from: 'B', n: 1 };
        assert.equal((await callB('publish', { id: b.id, channel, data: m1 })).reply.successful, true);
        await call('waitForData', { id: a.id, channel, count: 1 });

        // A second user: its own context, own cookie jar.
        const other = await openContext();
        const c = await other.connect({ name: 'C' });
        await other.call('subscribe', { id: c.id, channel });

        const m2 = { from: 'B', n: 2 };
        await callB('publish', { id: b.id, channel, data: m2 });
        await call('waitForData', { id: a.id, channel, count: 2 });
        await other.call('waitForData', { id: c.id, channel, count: 1 });

        const m3 = { from: 'C', n: 3, text: 'from the other browser' };
        assert.equal((await other.call('publish', { id: c.id, channel, data: m3 })).reply.successful, true);
        await call('waitForData', { id: a.id, channel, count: 3 });
        await other.call('waitForData', { id: c.id, channel, count: 2 });

        const marker = { from: 'B', marker: true };
        await callB('publish', { id: b.id, channel, data: marker });
        const gotA = await call('waitForData', { id: a.id, channel, count: 4 });
        const gotC = await other.call('waitForData', { id: c.id, channel, count: 3 });
        assert.deepEqual(deliveries(gotA).map((d) => d.data), [m1, m2, m3, marker], 'A got each message exactly once');
        assert.deepEqual(deliveries(gotC).map((d) => d.data), [m2, m3, marker], 'C got each message exactly once');
        assert.deepEqual(await callB('received', { id: b.id, channel }), [], 'B is not subscribed');

        const multi = { channel: '/meta/connect', advice: { 'multiple-clients': true } };
        if (isHttp) {
          // Same BAYEUX_BROWSER cookie: one of A/B must be told multiple-clients.
          await Promise.any([
            call('waitForIncoming', { id: a.id, match: multi, ms: 8000 }),
            callB('waitForIncoming', { id: b.id, match: multi, ms: 8000 }),
          ]).catch(() => assert.fail('neither A nor B (same cookie) ever got advice multiple-clients'));
          const cookies1 = (await context.cookies()).filter((k) => k.name === 'BAYEUX_BROWSER');
          const cookies2 = (await other.context.cookies()).filter((k) => k.name === 'BAYEUX_BROWSER');
          assert.equal(cookies1.length, 1, 'first context has one BAYEUX_BROWSER cookie');
          assert.equal(cookies2.length, 1, 'second context has one BAYEUX_BROWSER cookie');
          assert.notEqual(cookies1[0].value, cookies2[0].value, 'two contexts, two browser ids');
          assert.equal(cookies1[0].httpOnly, true, 'BAYEUX_BROWSER is HttpOnly');
          assert.equal(cookies1[0].path, '/');
        } else {
          // Websocket does not use the browser cookie: both A and B hold connects.
          const bState = await call('state', { id: b.id });
          const firstB = bState.tapOut.findIndex((e) => e.message.channel === '/meta/connect');
          await call('waitForOutgoing', { id: b.id, match: { channel: '/meta/connect' }, from: firstB + 1 });
          await call('publish', { id: b.id, channel: `/browser/${T}/barrier`, data: {} });
          for (const id of [a.id, b.id]) {
            const st = await call('state', { id });
            const told = st.tapIn.filter((e) => e.message.advice?.['multiple-clients']);
            assert.deepEqual(told, [], `${st.name} got multiple-clients advice over websocket`);
          }
        }
        const cState = await other.call('state', { id: c.id });
        assert.deepEqual(cState.tapIn.filter((e) => e.message.advice?.['multiple-clients']), [],
          'C is alone in its browser context and must never get multiple-clients');

        await assertTransportWire(T, wire, server.url);
        if (tabB) await assertTransportWire(T, tabB.wire, server.url);
        await assertTransportWire(T, other.wire, server.url);
      }));

    test(`5. ${T}: unicode round-trip and a ${T === 'callback-polling' ? '~1500-char' : '~50 KB'} message`,
      { timeout: TEST_TIMEOUT }, () => run({}, async ({ connect, call, wire, server }) => {
        const a = await connect({ config: { maxSendBayeuxMessageSize: 1024 * 1024 } });
        const channel = `/browser/${T}/unicode`;
        await call('subscribe', { id: a.id, channel });
        const pub = await call('publish', { id: a.id, channel, data: UNICODE_DATA });
        assert.equal(pub.reply.successful, true, JSON.stringify(pub.reply));
        const [got] = await call('waitForData', { id: a.id, channel, count: 1 });
        assert.deepEqual(got.message.data, UNICODE_DATA);

        const bigChannel = `/browser/${T}/big`;
        await call('subscribe', { id: a.id, channel: bigChannel });
        const big = T === 'callback-polling'
          ? { blob: bigText(1500, { asciiOnly: true }) }
          : { blob: bigText(50 * 1024), list: Array.from({ length: 200 }, (_, i) => ({ i, s: bigText(20) })) };
        const bigPub = await call('publish', { id: a.id, channel: bigChannel, data: big });
        assert.equal(bigPub.reply.successful, true, JSON.stringify(bigPub.reply));
        const [bigGot] = await call('waitForData', { id: a.id, channel: bigChannel, count: 1 });
        assert.equal(bigGot.message.data.blob.length, big.blob.length);
        assert.deepEqual(bigGot.message.data, big);

        if (T === 'websocket') {
          const frames = wire.framesSentWith((m) => m.channel === bigChannel && 'data' in m);
          assert.equal(frames.length, 1);
          assert.ok(JSON.stringify(frames[0]).length > 50 * 1024, 'the large message went in one frame');
        } else if (T === 'long-polling') {
          const reqs = wire.requestsWith((m) => m.channel === bigChannel && 'data' in m);
          assert.equal(reqs.length, 1);
        } else {
          const reqs = wire.requestsWith((m) => m.channel === bigChannel && 'data' in m);
          assert.equal(reqs.length, 1, 'the ~1500-char message went in one JSONP GET');
          assert.ok(reqs[0].url.length > 1500 && reqs[0].url.length < 8000);
        }
        await assertTransportWire(T, wire, server.url);
      }));

    test(`5b. ${T}: strings with lone surrogates (a cut emoji) come back exactly as sent`,
      { timeout: TEST_TIMEOUT }, () => run({}, async ({ connect, call }) => {
        const a = await connect();
        const got = await call('loneSurrogates', { id: a.id, channel: `/browser/${T}/cut` });
        assert.equal(got.reply.successful, true, JSON.stringify(got.reply));
        assert.deepEqual(got.got, got.sent, 'the same UTF-16 code units');
        assert.equal(got.same, true);
      }));

    test(`6. ${T}: disconnect succeeds, status disconnected, held connect released`,
      { timeout: TEST_TIMEOUT }, () => run({ timeout: 8000 }, async ({ connect, call, wire, server }) => {
        const a = await connect();
        await call('subscribe', { id: a.id, channel: `/browser/${T}/bye` });
        const firstOut = a.tapOut.findIndex((e) => e.message.channel === '/meta/connect');
        const held = await call('waitForOutgoing', { id: a.id, match: { channel: '/meta/connect' }, from: firstOut + 1 });
        // Sent is not yet held: the browser's other connection may carry the disconnect to the
        // server first, and the connect would then meet a session already gone (402).
        await untilHeld(server, 1);
        await assertTransportWire(T, wire, server.url);

        const d = await call('disconnect', { id: a.id });
        assert.equal(d.reply.channel, '/meta/disconnect');
        assert.equal(d.reply.successful, true, `disconnect reply ${JSON.stringify(d.reply)}`);
        assert.equal(d.statusInCallback, 'disconnected');
        assert.equal(d.status, 'disconnected');
        const st = await call('state', { id: a.id });
        const sentDisconnect = st.tapOut.find((e) => e.message.channel === '/meta/disconnect');
        assert.equal(sentDisconnect.message.clientId, a.clientId);
        const replyOnWire = st.tapIn.find((e) => e.message.channel === '/meta/disconnect');
        assert.equal(replyOnWire.message.id, sentDisconnect.message.id);
        assert.equal(replyOnWire.message.successful, true, 'the server (not the client) said successful');

        // The held connect (server --timeout 8000) is answered promptly, with reconnect:none.
        const released = await call('waitForIncoming', {
          id: a.id, match: { channel: '/meta/connect', id: held.message.id }, ms: 6000,
        });
        const after = released.at - replyOnWire.at;
        assert.ok(after < 1000, `held connect answered ${after} ms after the disconnect reply (timeout is 8000)`);
        assert.equal(released.message.advice?.reconnect, 'none', `held connect reply ${JSON.stringify(released.message)}`);
        assert.equal((await call('state', { id: a.id })).status, 'disconnected');
      }));
  });
}

/** Resolves once the server says `count` connects are held (its `/metrics`), or throws after 5 s. */
async function untilHeld(server, count) {
  const metrics = new URL('/metrics', server.url);
  const deadline = Date.now() + 5000;
  let last = '';
  while (Date.now() < deadline) {
    const text = await (await fetch(metrics)).text();
    last = text.split('\n').find((line) => line.startsWith('bayeux_held_connects ')) ?? '(none)';
    if (Number(last.split(' ')[1]) >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`never ${count} held connect(s): ${last}`);
}

function isConnect(m) {
  return m.channel === '/meta/connect';
}
