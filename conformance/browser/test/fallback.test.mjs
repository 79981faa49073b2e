// Transport negotiation with every transport registered in the client (websocket first),
// as a real application uses it: websocket when the server allows it, long-polling when
// the server refuses the websocket upgrade.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser } from '../lib/browser.mjs';
import { binaryIdentity } from '../lib/server.mjs';
import { ALL_TRANSPORTS, scenario, handshakeReply, deliveries } from '../lib/fixture.mjs';
import { assertTransportWire } from '../lib/wire-checks.mjs';

const TEST_TIMEOUT = 30000;

async function pubSubOnce(call, id, channel) {
  const sub = await call('subscribe', { id, channel });
  assert.equal(sub.successful, true, JSON.stringify(sub));
  const data = { hello: 'negotiated', n: 7 };
  const pub = await call('publish', { id, channel, data });
  assert.equal(pub.reply.successful, true, JSON.stringify(pub.reply));
  assert.ok(!('data' in pub.reply));
  await call('waitForData', { id, channel, count: 1 });
  await call('publish', { id, channel, data: { marker: true } });
  const got = await call('waitForData', { id, channel, count: 2 });
  assert.deepEqual(deliveries(got), [{ channel, data }, { channel, data: { marker: true } }]);
}

describe('transport negotiation with all transports registered (official client, Chromium)', () => {
  // Launched by the first test that needs it; if Chromium is missing every test FAILS
  // with the reason (a failing before() hook would only mark them "cancelled").
  let launching = null;
  const browser = () => (launching ??= launchBrowser());
  before(() => console.log(`bayeuxd under test: ${binaryIdentity()}`));
  after(async () => {
    const b = await launching?.catch(() => null);
    if (b) await b.close();
  });

  test('7a. default server: the client offers all three and uses websocket',
    { timeout: TEST_TIMEOUT }, () => scenario(browser, {}, async ({ connect, call, wire, server }) => {
      const a = await connect();
      assert.deepEqual(a.transportTypes, ALL_TRANSPORTS, 'cometd 9 registers websocket, long-polling, callback-polling');
      const sent = a.tapOut.find((e) => e.message.channel === '/meta/handshake').message;
      assert.deepEqual(sent.supportedConnectionTypes, ALL_TRANSPORTS);
      assert.deepEqual(handshakeReply(a).supportedConnectionTypes, ALL_TRANSPORTS);
      assert.equal(a.transport, 'websocket');
      await pubSubOnce(call, a.id, '/browser/negotiation/ws');
      await assertTransportWire('websocket', wire, server.url);
    }));

  test('7b. --allowed-transports long-polling,callback-polling: websocket refused, client falls back to long-polling',
    { timeout: TEST_TIMEOUT },
    () => scenario(browser, { serverOptions: { 'allowed-transports': 'long-polling,callback-polling' } },
      async ({ connect, call, wire, server }) => {
        const a = await connect({ ms: 10000 });
        assert.equal(a.transport, 'long-polling', `ended on ${a.transport}; handshakes: ${JSON.stringify(a.handshakes)}`);
        const hs = handshakeReply(a);
        assert.deepEqual(hs.supportedConnectionTypes, ['long-polling', 'callback-polling']);
        await pubSubOnce(call, a.id, '/browser/negotiation/fallback');

        const st = await call('state', { id: a.id });
        const okAt = st.tapIn.find((e) => e.message.channel === '/meta/handshake' && e.message.successful).at;
        const connectTypes = st.tapOut
          .filter((e) => e.message.channel === '/meta/connect' && e.at >= okAt)
          .map((e) => e.message.connectionType);
        assert.ok(connectTypes.length >= 2);
        assert.deepEqual([...new Set(connectTypes)], ['long-polling'], 'connectionType after the fallback');

        // No websocket session was ever established: nothing was received on any socket.
        assert.deepEqual(wire.sockets.flatMap((s) => s.received), [], 'frames received over a refused websocket');
        // The successful handshake and everything after it went over POST.
        const hsReqs = wire.requestsWith((m) => m.channel === '/meta/handshake');
        assert.ok(hsReqs.length >= 1, 'no HTTP handshake after the websocket was refused');
        assert.ok(hsReqs.every((e) => e.method === 'POST'));
        // Now only the HTTP part of the wire must look like long-polling.
        await assertTransportWire('long-polling', wire, server.url, { ignoreSockets: true });
        console.log(`fallback: ${wire.sockets.length} websocket attempt(s), client handshake notifications: ` +
          JSON.stringify(st.handshakes.map((h) => ({ successful: h.message.successful, failure: h.message.failure }))));
      }));
});
