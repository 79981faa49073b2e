// Page side of test/reload.test.mjs: ONE official CometD client per document, optionally with
// the official ReloadExtension, as an application page uses it:
//   cometd.registerExtension('reload', new ReloadExtension());
//   window.addEventListener('beforeunload', () => cometd.reload());
//   cometd.addListener('/meta/handshake', (m) => { if (m.successful) cometd.subscribe(...); });
//   cometd.handshake();
// Loading the same page again (same tab: same sessionStorage and cookies) runs the same code.
// Self-contained (it does not share state with harness.js). Every wait is bounded.

import { CometD, ReloadExtension } from '../node_modules/cometd/cometd.js';

const ALL_TRANSPORTS = ['websocket', 'long-polling', 'callback-polling'];
const DEFAULT_WAIT = 8000;
const now = () => Math.round(performance.now() * 10) / 10;
const events = new EventTarget();
const changed = () => events.dispatchEvent(new Event('change'));

let cometd = null;
const rec = {
  tapIn: [],            // [{at, message}] every message received (the tap runs before the reload extension)
  tapOut: [],           // [{at, message}] every message that really leaves (the reload extension runs first)
  handshakes: [],       // /meta/handshake listener notifications (a replayed one included)
  connects: [],         // /meta/connect listener notifications
  subscribeReplies: [], // replies to the subscribe() calls made by this page
  received: {},         // channel -> [{at, message}] subscription callback invocations
};

function plain(message) {
  if (message === undefined || message === null) return message;
  const { failure, ...rest } = message;
  const copy = JSON.parse(JSON.stringify(rest));
  if (failure) copy.failure = { reason: failure.reason, httpCode: failure.httpCode, websocketCode: failure.websocketCode };
  return copy;
}

function waitUntil(predicate, ms, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      let value;
      try { value = predicate(); } catch (err) { cleanup(); reject(err); return; }
      if (value) { cleanup(); resolve(value); }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}; status=${cometd && cometd.getStatus()} ` +
        `last incoming=${JSON.stringify(rec.tapIn.slice(-4).map((e) => e.message)).slice(0, 1500)}`));
    }, ms);
    const cleanup = () => { clearTimeout(timer); events.removeEventListener('change', check); };
    events.addEventListener('change', check);
    check();
  });
}

function subscribeNow(channel) {
  rec.received[channel] = rec.received[channel] || [];
  cometd.subscribe(channel, (m) => {
    rec.received[channel].push({ at: now(), message: plain(m) });
    changed();
  }, (reply) => {
    rec.subscribeReplies.push({ at: now(), message: plain(reply) });
    changed();
  });
}

/**
 * Creates the page's client and handshakes; resolves once a successful handshake (real or
 * replayed) was followed by a successful /meta/connect.
 * reload: register the ReloadExtension (after the tap, so its outgoing() runs first).
 * reloadOn: DOM event of the unload path that calls cometd.reload() (null: none).
 * subscribeOnHandshake: channels subscribed in a /meta/handshake listener on success.
 */
async function start({ url, transport, reload = false, reloadOn = null, subscribeOnHandshake = [], ms = DEFAULT_WAIT }) {
  if (cometd) throw new Error('start() already called in this document');
  cometd = new CometD('reload-page');
  for (const other of ALL_TRANSPORTS) if (other !== transport) cometd.unregisterTransport(other);
  const types = cometd.getTransportTypes();
  if (types.length !== 1 || types[0] !== transport) throw new Error(`could not force ${transport}: ${JSON.stringify(types)}`);

  cometd.registerExtension('tap', {
    incoming(message) { rec.tapIn.push({ at: now(), message: plain(message) }); changed(); return message; },
    outgoing(message) { rec.tapOut.push({ at: now(), message: plain(message) }); changed(); return message; },
  });
  if (reload) cometd.registerExtension('reload', new ReloadExtension());
  if (reloadOn) {
    // What the next document finds in sessionStorage is checked by the test (savedState()).
    window.addEventListener(reloadOn, () => cometd.reload());
  }
  cometd.addListener('/meta/handshake', (m) => { rec.handshakes.push({ at: now(), message: plain(m) }); changed(); });
  cometd.addListener('/meta/connect', (m) => { rec.connects.push({ at: now(), message: plain(m) }); changed(); });
  if (subscribeOnHandshake.length) {
    cometd.addListener('/meta/handshake', (m) => {
      if (m.successful) subscribeOnHandshake.forEach(subscribeNow);
    });
  }
  cometd.configure({ url, logLevel: 'warn' });
  cometd.handshake();

  await waitUntil(() => {
    const ok = rec.handshakes.find((h) => h.message.successful === true);
    return ok && rec.connects.some((c) => c.at >= ok.at && c.message.successful === true);
  }, ms, 'a successful handshake followed by a successful /meta/connect');
  return state();
}

async function subscribe({ channel, ms = DEFAULT_WAIT }) {
  const before = rec.subscribeReplies.length;
  subscribeNow(channel);
  const r = await waitUntil(() => rec.subscribeReplies.slice(before).find((e) => e.message.subscription === channel),
    ms, `the subscribe reply for ${channel}`);
  return r.message;
}

async function waitForSubscribeReply({ channel, ms = DEFAULT_WAIT }) {
  return (await waitUntil(() => rec.subscribeReplies.find((e) => e.message.subscription === channel),
    ms, `the subscribe reply for ${channel}`)).message;
}

async function waitForData({ channel, count, ms = DEFAULT_WAIT }) {
  await waitUntil(() => (rec.received[channel] || []).length >= count, ms,
    `${count} deliveries on ${channel} (have ${(rec.received[channel] || []).length})`);
  return rec.received[channel];
}

/** Calls cometd.reload() directly (instead of from the unload path). */
function reloadNow() {
  cometd.reload();
  return window.sessionStorage.getItem('org.cometd.reload');
}

function savedState() {
  return window.sessionStorage.getItem('org.cometd.reload');
}

function state() {
  const t = cometd && cometd.getTransport();
  return {
    status: cometd && cometd.getStatus(),
    clientId: cometd && cometd.getClientId(),
    transport: t ? t.type : null,
    ...rec,
  };
}

window.reloadHarness = { ready: true, start, subscribe, waitForSubscribeReply, waitForData, reloadNow, savedState, state };
