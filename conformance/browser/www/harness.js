// Page side of the browser suite: the official CometD client (npm `cometd`, ES modules,
// loaded unbundled) behind a small async API that the Node tests call with
// page.evaluate(). Every function takes one plain object and returns plain JSON;
// every wait is bounded and rejects with a message that says what was missing.

import { CometD } from '../node_modules/cometd/cometd.js';

const ALL_TRANSPORTS = ['websocket', 'long-polling', 'callback-polling'];
const DEFAULT_WAIT = 8000;

const clients = [];

const now = () => Math.round(performance.now() * 10) / 10;

/** JSON copy of a message; the client's failure objects hold transports, so keep a summary. */
function plain(message) {
  if (message === undefined || message === null) return message;
  const { failure, ...rest } = message;
  const copy = JSON.parse(JSON.stringify(rest));
  if (failure) {
    copy.failure = {
      reason: failure.reason,
      httpCode: failure.httpCode,
      websocketCode: failure.websocketCode,
      connectionType: failure.connectionType,
      exception: failure.exception === undefined ? undefined : String(failure.exception),
    };
  }
  return copy;
}

/** True when every field of `pattern` is found (recursively) in `value`; arrays compare exactly. */
function matches(value, pattern) {
  if (pattern === null || typeof pattern !== 'object') return value === pattern;
  if (Array.isArray(pattern)) return JSON.stringify(value) === JSON.stringify(pattern);
  if (value === null || typeof value !== 'object') return false;
  return Object.keys(pattern).every((k) => matches(value[k], pattern[k]));
}

class Client {
  constructor(name, cometd) {
    this.name = name;
    this.cometd = cometd;
    this.events = new EventTarget();
    this.tapIn = [];        // [{at, message}] every message the client received (incoming extension)
    this.tapOut = [];       // [{at, message}] every message the client sent (outgoing extension)
    this.handshakes = [];   // /meta/handshake listener notifications (incl. local failures)
    this.connects = [];     // /meta/connect listener notifications (incl. local failures)
    this.unsuccessful = []; // /meta/unsuccessful listener notifications
    this.received = {};     // channel -> [{at, message}] subscription deliveries
  }

  changed() {
    this.events.dispatchEvent(new Event('change'));
  }

  waitUntil(predicate, ms, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        let value;
        try { value = predicate(); } catch (err) { cleanup(); reject(err); return; }
        if (value) { cleanup(); resolve(value); }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.name}: timed out after ${ms} ms waiting for ${what}; ` +
          `status=${this.cometd.getStatus()} transport=${this.transportType()} ` +
          `last incoming=${JSON.stringify(this.tapIn.slice(-4).map((e) => e.message)).slice(0, 1500)}`));
      }, ms);
      const cleanup = () => {
        clearTimeout(timer);
        this.events.removeEventListener('change', check);
      };
      this.events.addEventListener('change', check);
      check();
    });
  }

  transportType() {
    const t = this.cometd.getTransport();
    return t ? t.type : null;
  }

  state() {
    return {
      name: this.name,
      status: this.cometd.getStatus(),
      transport: this.transportType(),
      transportTypes: this.cometd.getTransportTypes(),
      clientId: this.cometd.getClientId(),
      tapIn: this.tapIn,
      tapOut: this.tapOut,
      handshakes: this.handshakes,
      connects: this.connects,
      unsuccessful: this.unsuccessful,
    };
  }
}

function client(id) {
  const c = clients[id];
  if (!c) throw new Error(`no client #${id}`);
  return c;
}

/**
 * Creates a CometD client, forces `transport` (unregisters the other two; omit it to keep
 * all three, websocket first), handshakes, and resolves once a successful handshake was
 * followed by a successful /meta/connect. Returns {id, ...state}.
 */
async function connect({ url, transport, config = {}, name, ms = DEFAULT_WAIT }) {
  const id = clients.length;
  const cometd = new CometD(name || `client${id}`);
  const c = new Client(name || `client${id}`, cometd);
  clients.push(c);

  if (transport) {
    for (const other of ALL_TRANSPORTS) {
      if (other !== transport) cometd.unregisterTransport(other);
    }
    const types = cometd.getTransportTypes();
    if (types.length !== 1 || types[0] !== transport) {
      throw new Error(`could not force ${transport}: registered transports are ${JSON.stringify(types)}`);
    }
  }

  cometd.registerExtension('tap', {
    incoming(message) {
      c.tapIn.push({ at: now(), message: plain(message) });
      c.changed();
      return message;
    },
    outgoing(message) {
      c.tapOut.push({ at: now(), message: plain(message) });
      c.changed();
      return message;
    },
  });
  cometd.addListener('/meta/handshake', (m) => { c.handshakes.push({ at: now(), message: plain(m) }); c.changed(); });
  cometd.addListener('/meta/connect', (m) => { c.connects.push({ at: now(), message: plain(m) }); c.changed(); });
  cometd.addListener('/meta/unsuccessful', (m) => { c.unsuccessful.push({ at: now(), message: plain(m) }); c.changed(); });

  cometd.configure({ url, logLevel: 'warn', ...config });
  cometd.handshake();

  await c.waitUntil(() => {
    const ok = c.handshakes.findIndex((h) => h.message.successful === true);
    if (ok < 0) return false;
    const at = c.handshakes[ok].at;
    return c.connects.some((e) => e.at >= at && e.message.successful === true);
  }, ms, 'a successful handshake followed by a successful /meta/connect');

  return { id, ...c.state() };
}

async function subscribe({ id, channel, ms = DEFAULT_WAIT }) {
  const c = client(id);
  c.received[channel] = c.received[channel] || [];
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${c.name}: no subscribe reply for ${channel} within ${ms} ms`)), ms);
    c.cometd.subscribe(channel, (m) => {
      c.received[channel].push({ at: now(), message: plain(m) });
      c.changed();
    }, (reply) => {
      clearTimeout(timer);
      resolve(plain(reply));
    });
  });
}

async function publish({ id, channel, data, ms = DEFAULT_WAIT }) {
  const c = client(id);
  const start = now();
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${c.name}: no publish reply on ${channel} within ${ms} ms`)), ms);
    c.cometd.publish(channel, data, (reply) => {
      clearTimeout(timer);
      resolve({ reply: plain(reply), start, elapsed: now() - start });
    });
  });
}

/** Publishes every element of `datas` on `channel` inside one cometd.batch(). */
async function batchPublish({ id, channel, datas, ms = DEFAULT_WAIT }) {
  const c = client(id);
  const replies = new Array(datas.length);
  let pending = datas.length;
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(
      `${c.name}: ${pending} of ${datas.length} batched publish replies missing after ${ms} ms`)), ms);
    c.cometd.batch(() => {
      datas.forEach((data, i) => {
        c.cometd.publish(channel, data, (reply) => {
          replies[i] = plain(reply);
          if (--pending === 0) {
            clearTimeout(timer);
            resolve({ replies });
          }
        });
      });
    });
  });
}

/**
 * Publishes strings holding lone UTF-16 surrogates (built here: they cannot cross the test's
 * JSON boundary intact) on `channel`, which the client subscribes to first, and compares what
 * comes back with what was sent, code unit by code unit. Resolves {reply, same, sent, got}.
 */
async function loneSurrogates({ id, channel, ms = DEFAULT_WAIT }) {
  const c = client(id);
  const high = String.fromCharCode(0xd83d);
  const low = String.fromCharCode(0xde00);
  const data = { text: `half: ${high}, other half: ${low}, pair: ${high}${low}`, list: [String.fromCharCode(0xdbff)] };
  const ext = { note: String.fromCharCode(0xdfff) };
  await subscribe({ id, channel, ms });
  const reply = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${c.name}: no publish reply on ${channel}`)), ms);
    c.cometd.publish(channel, data, { ext }, (r) => {
      clearTimeout(timer);
      resolve(plain(r));
    });
  });
  const [got] = await waitForData({ id, channel, count: 1, ms });
  const units = (s) => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i));
  const sent = [units(data.text), units(data.list[0]), units(ext.note)];
  const received = [units(got.message.data.text), units(got.message.data.list[0]), units(got.message.ext?.note ?? '')];
  return { reply, same: JSON.stringify(sent) === JSON.stringify(received), sent, got: received };
}

/** Resolves with the deliveries on `channel` once there are at least `count`. */
async function waitForData({ id, channel, count, ms = DEFAULT_WAIT }) {
  const c = client(id);
  await c.waitUntil(() => (c.received[channel] || []).length >= count, ms,
    `${count} deliveries on ${channel} (have ${(c.received[channel] || []).length})`);
  return c.received[channel];
}

function received({ id, channel }) {
  return client(id).received[channel] || [];
}

/** First incoming message (index >= from) matching `match`: {index, at, message}. */
async function waitForIncoming({ id, match, from = 0, ms = DEFAULT_WAIT }) {
  const c = client(id);
  return await c.waitUntil(() => {
    for (let i = from; i < c.tapIn.length; i++) {
      if (matches(c.tapIn[i].message, match)) return { index: i, ...c.tapIn[i] };
    }
    return false;
  }, ms, `an incoming message matching ${JSON.stringify(match)}`);
}

/** First outgoing message (index >= from) matching `match`: {index, at, message}. */
async function waitForOutgoing({ id, match, from = 0, ms = DEFAULT_WAIT }) {
  const c = client(id);
  return await c.waitUntil(() => {
    for (let i = from; i < c.tapOut.length; i++) {
      if (matches(c.tapOut[i].message, match)) return { index: i, ...c.tapOut[i] };
    }
    return false;
  }, ms, `an outgoing message matching ${JSON.stringify(match)}`);
}

/** Disconnects; resolves {reply, statusInCallback, status, at}. */
async function disconnect({ id, ms = DEFAULT_WAIT }) {
  const c = client(id);
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${c.name}: no disconnect reply within ${ms} ms`)), ms);
    c.cometd.disconnect((reply) => {
      clearTimeout(timer);
      const statusInCallback = c.cometd.getStatus();
      resolve({ reply: plain(reply), statusInCallback, at: now() });
    });
  }).then((r) => ({ ...r, status: c.cometd.getStatus() }));
}

function state({ id }) {
  return client(id).state();
}

window.harness = {
  ready: true,
  connect,
  subscribe,
  publish,
  batchPublish,
  loneSurrogates,
  waitForData,
  received,
  waitForIncoming,
  waitForOutgoing,
  disconnect,
  state,
};
