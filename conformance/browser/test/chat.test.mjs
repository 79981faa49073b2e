// The chat example (examples/chat: main.rs + index.html, the page using the OFFICIAL CometD
// client from npm) driven as a user would in headless Chromium: two browser contexts type
// their names, join, see each other in the member list, talk, and one leaves. Once on one
// node, and once on two nodes sharing a Redis (started by the test), one user on each: the
// messages, the member list (kept on the shared log by the example) and the departure cross
// nodes.
//
// Needs the built example (target/debug/examples/chat, `cargo build -p bayeux-examples
// --examples`; EXAMPLES_DIR overrides the folder) and the page's client
// (`npm install --prefix examples/chat`). The example runs with its defaults (maxInterval
// 10 s): the page disconnects in `beforeunload`, so a page closed with its unload handlers
// run ends its session at once and the departure must show within a few seconds, far less
// than the 10 s a silent session would take to expire.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, bounded, Wire } from '../lib/browser.mjs';
import { exampleIdentity, startExample } from '../../node/lib/example.mjs';
import { startRedis } from '../../node/lib/redis.mjs';

const TEST_TIMEOUT = 45000;
const STEP_MS = 5000;
/** Bound for the departure to show: well under the 10 s maxInterval of a silent session. */
const DEPARTURE_MS = 3000;

/** Opens the chat page at `origin` in a new context; returns {name, context, page, wire, logs}. */
async function openChat(browser, origin, name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const logs = [];
  page.on('console', (msg) => logs.push(`[console.${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => logs.push(`[pageerror] ${err.message}`));
  const wire = new Wire(page, '/cometd');
  // Module scripts run before the load event: once goto() resolves, the handlers are attached.
  const response = await page.goto(`${origin}/`, { waitUntil: 'load', timeout: 15000 });
  assert.equal(response?.status(), 200, `GET ${origin}/`);
  return { name, context, page, wire, logs };
}

/** The names in the page's member line ("Here: a, b"), sorted; null if the line is empty. */
async function members(user) {
  const text = await user.page.textContent('#members');
  if (!text) return null;
  assert.match(text, /^Here: /, `${user.name}'s member line: ${JSON.stringify(text)}`);
  return text.slice('Here: '.length).split(', ').sort();
}

/** Waits until the member line of `user` lists exactly `names` (any order). */
async function waitMembers(user, names, ms = STEP_MS) {
  const want = `Here: ${[...names].sort().join(', ')}`;
  try {
    await user.page.waitForFunction((sorted) => {
      const text = document.getElementById('members').textContent;
      if (!text.startsWith('Here: ')) return false;
      return 'Here: ' + text.slice(6).split(', ').sort().join(', ') === sorted;
    }, want, { timeout: ms });
  } catch (err) {
    const got = await user.page.textContent('#members').catch(() => '(page gone)');
    throw new Error(`${user.name}: member line never became ${JSON.stringify(want)} within ${ms} ms; ` +
      `it is ${JSON.stringify(got)}\n${err.message}`);
  }
}

/** The lines of the page's chat log. */
function logLines(user) {
  return user.page.$$eval('#log > div', (divs) => divs.map((d) => d.textContent));
}

/** Waits until the chat log of `user` has a line `line`. */
async function waitLogLine(user, line, ms = STEP_MS) {
  try {
    await user.page.waitForFunction((want) =>
      [...document.querySelectorAll('#log > div')].some((d) => d.textContent === want), line, { timeout: ms });
  } catch (err) {
    throw new Error(`${user.name}: no log line ${JSON.stringify(line)} within ${ms} ms; log: ` +
      `${JSON.stringify(await logLines(user).catch(() => '(page gone)'))}\n${err.message}`);
  }
}

/** Types the name and submits the join form (clicks Join), then waits for the joined state. */
async function join(user) {
  await user.page.fill('#name', user.name);
  await user.page.click('#join button');
  await waitLogLine(user, `joined as ${user.name} over websocket`);
  assert.equal(await user.page.isHidden('#join'), true, `${user.name}: join form hidden`);
  assert.equal(await user.page.isVisible('#say'), true, `${user.name}: say form shown`);
}

/** Every message `user`'s page sent over websocket on `channel`. */
function sentOn(user, channel) {
  return user.wire.sockets.flatMap((s) => s.sent).flat().filter((m) => m.channel === channel);
}

describe('example "chat" in headless Chromium (official CometD client)', () => {
  let launching = null;
  const browser = () => (launching ??= launchBrowser());
  before(() => console.log(`example under test: ${exampleIdentity('chat')}`));
  after(async () => {
    const b = await launching?.catch(() => null);
    if (b) await b.close();
  });

  /** The scenario, with alice's page served by `servers[0]` and bob's by the last one. */
  async function talk(servers) {
    const [first, last] = [servers[0], servers.at(-1)];
    const users = []; // open contexts, closed at the end
    const everyone = []; // for failure messages
    try {
      // The page imports ./node_modules/cometd/cometd.js, served by the example itself.
      const client = await fetch(`${first.origin}/node_modules/cometd/cometd.js`, { signal: AbortSignal.timeout(5000) });
      assert.equal(client.status, 200,
        'the chat page needs its CometD client: run `npm install --prefix examples/chat`');
      await client.arrayBuffer();

      const b = await browser();
      const alice = await openChat(b, first.origin, 'alice');
      users.push(alice);
      everyone.push(alice);
      const bob = await openChat(b, last.origin, 'bob');
      users.push(bob);
      everyone.push(bob);

      await join(alice);
      assert.deepEqual(await members(alice), ['alice']);
      await join(bob);
      await waitMembers(bob, ['alice', 'bob']);
      await waitMembers(alice, ['alice', 'bob']);

      // The page joined with a remote call to /service/join carrying the typed name.
      assert.deepEqual(sentOn(bob, '/service/join').map((m) => m.data), [{ name: 'bob' }]);

      await alice.page.fill('#text', 'hi bob');
      await alice.page.click('#say button');
      await waitLogLine(bob, 'alice: hi bob');
      await waitLogLine(alice, 'alice: hi bob');
      assert.deepEqual(await logLines(bob), ['joined as bob over websocket', 'alice: hi bob']);
      assert.deepEqual(await logLines(alice), ['joined as alice over websocket', 'alice: hi bob']);
      assert.equal(await alice.page.inputValue('#text'), '', 'the text box is cleared after sending');
      assert.deepEqual(sentOn(alice, '/chat/room').map((m) => m.data), [{ user: 'alice', text: 'hi bob' }]);

      await bob.page.fill('#text', 'hello alice');
      await bob.page.click('#say button');
      await waitLogLine(alice, 'bob: hello alice');

      // Bob leaves: his page closes (running its beforeunload handler: cometd.disconnect()),
      // then his browser context.
      const closed = new Promise((resolve) => bob.page.once('close', resolve));
      const leftAt = Date.now();
      await bob.page.close({ runBeforeUnload: true });
      await bounded(closed, STEP_MS, 'bob\'s page to close');
      await bounded(bob.context.close(), 10000, 'closing bob\'s context');
      users.splice(users.indexOf(bob), 1);
      await waitMembers(alice, ['alice'], DEPARTURE_MS);
      const tookMs = Date.now() - leftAt;
      assert.deepEqual(await members(alice), ['alice']);
      assert.deepEqual(await logLines(alice),
        ['joined as alice over websocket', 'alice: hi bob', 'bob: hello alice']);
      console.log(`bob's departure reached alice ${tookMs} ms after his page started closing; ` +
        `bob's page sent /meta/disconnect: ${sentOn(bob, '/meta/disconnect').length > 0}`);

      for (const user of [alice, bob]) {
        const errors = user.logs.filter((l) => l.startsWith('[pageerror]'));
        assert.deepEqual(errors, [], `uncaught exceptions in ${user.name}'s page`);
        assert.deepEqual(user.wire.problems, [], `${user.name}'s wire`);
        assert.deepEqual(user.wire.http, [], `${user.name}'s page used websocket only`);
      }
    } catch (err) {
      for (const user of everyone) {
        err.message += `\n--- ${user.name} wire: ${user.wire.dump()}`;
        err.message += `\n--- ${user.name} page log:\n${user.logs.slice(-20).join('\n')}`;
      }
      for (const server of servers) {
        err.message += `\n--- chat example stderr tail:\n${server.stderr.slice(-3000)}`;
      }
      throw err;
    } finally {
      for (const user of users) {
        await bounded(user.context.close(), 10000, 'closing a browser context').catch(() => {});
      }
      for (const server of servers) await server.stop();
    }
  }

  test('two users join, see each other, talk; a closed page leaves the member list', { timeout: TEST_TIMEOUT }, async () => {
    await talk([await startExample('chat')]);
  });

  test('the same on two nodes sharing a Redis, one user on each', { timeout: TEST_TIMEOUT }, async (t) => {
    const redis = await startRedis(t);
    const env = (name) => ({ env: { BACKPLANE: redis.url, NODE_NAME: name } });
    await talk([await startExample('chat', env('a')), await startExample('chat', env('b'))]);
  });
});
