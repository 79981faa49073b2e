// Clients of the OFFICIAL CometD JavaScript client (npm `cometd` 9.x, ES modules only)
// running in Node through `cometd-nodejs-client` 2.x, forced onto long-polling.
//
// What this module adds around the official client, and why:
//
// * Cookie jars per simulated browser. cometd-nodejs-client's adapt() installs ONE
//   global `window.XMLHttpRequest` whose Set-Cookie store (`options.globalCookies`)
//   is shared by every XHR of the process, so every CometD object looks like a tab
//   of the same browser (same BAYEUX_BROWSER cookie). Calling adapt() again does not
//   help: it replaces the global class (and the jar) for every client at once. The
//   shim does read cookies from `xhr.context.cookieStore` (the long-polling transport
//   copies its `context` property into each XHR), but it always STORES into the
//   global jar, so that hook alone cannot separate browsers. adapt() however accepts
//   `options.cookies = {storeCookie(uri, header, cb), retrieveCookies(context, uri, cb)}`.
//   retrieveCookies gets the transport context; storeCookie only gets the request's
//   URL object, so we hand the shim our own URL object in open() and remember which
//   context it belongs to. Result: a Browser (jar) per transport context.
//
// * A wire tap. The XHR class is subclassed to record every HTTP exchange of a
//   client (request body, status, response body, in arrival order), which is what
//   the server really sent, before the client fans messages out to its listeners.
//
// * Promise wrappers with bounded deadlines and waiters that are woken by events
//   (never sleeps).
//
// * For clients created with `websocket: true` (the official default transport
//   order: websocket first), a frame tap. adapt() installs `window.WebSocket` =
//   the `ws` package's class, shared by every client; we subclass it to record every
//   frame sent and received, the upgrade response headers and the close code of each
//   socket. Which client a socket belongs to is known because the websocket transport
//   creates its socket synchronously inside its send(): the client's transport.send is
//   wrapped to name the owner while it runs. The recorded socket objects are the real
//   `ws` sockets, so a test can also break one from outside (ws.terminate()).

import { adapt } from 'cometd-nodejs-client';
import { CometD } from 'cometd';
import { EventEmitter } from 'node:events';

// ---------------------------------------------------------------------------
// Event-driven waiting

const changes = new EventEmitter();
changes.setMaxListeners(0);

/** Wakes every pending `until()` so it re-evaluates its predicate. */
export function notifyChange() {
  changes.emit('change');
}

/**
 * Resolves with the first truthy value of `predicate()`, evaluated now and after
 * every client event; rejects after `timeout` ms with `what` (and `describe()` output).
 */
export function until(predicate, { timeout = 5000, what = 'condition', describe } = {}) {
  return new Promise((resolve, reject) => {
    let timer = null;
    const check = () => {
      let value;
      try {
        value = predicate();
      } catch (err) {
        cleanup();
        reject(err);
        return;
      }
      if (value) {
        cleanup();
        resolve(value);
      }
    };
    const cleanup = () => {
      changes.off('change', check);
      if (timer !== null) clearTimeout(timer);
    };
    timer = setTimeout(() => {
      cleanup();
      let detail = '';
      if (describe) {
        try { detail = `\n  state: ${describe()}`; } catch (err) { detail = `\n  (describe failed: ${err})`; }
      }
      reject(new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`));
    }, timeout);
    changes.on('change', check);
    check();
  });
}

/** Races `promise` against a deadline. */
export function withDeadline(promise, timeout, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// Cookie jars ("browsers")

/** One simulated browser: a cookie jar. Clients sharing a Browser look like tabs of it. */
export class Browser {
  static #count = 0;
  name;
  /** cookie name -> "name=value" */
  cookies = new Map();
  /** Every raw Set-Cookie header this browser received, in order. */
  setCookieHeaders = [];

  constructor(name) {
    this.name = name || `browser-${++Browser.#count}`;
  }

  store(header) {
    this.setCookieHeaders.push(header);
    const nameValue = header.split(';')[0].trim();
    const equal = nameValue.indexOf('=');
    if (equal > 0) this.cookies.set(nameValue.slice(0, equal), nameValue);
    notifyChange();
  }

  /** Value of the cookie `name`, or undefined. */
  cookie(name = 'BAYEUX_BROWSER') {
    const pair = this.cookies.get(name);
    return pair === undefined ? undefined : pair.slice(name.length + 1);
  }

  /** The Cookie request header this browser would send ('' if none). */
  cookieHeader() {
    return [...this.cookies.values()].join('; ');
  }
}

/**
 * The jar used by clients created without their own Browser: the equivalent of
 * cometd-nodejs-client's single process-wide jar.
 */
export const processBrowser = new Browser('process-default');

const urlContexts = new WeakMap();

adapt({
  cookies: {
    // The shim passes the URL object of the request (ours, see open() below).
    storeCookie(uri, header, callback) {
      const context = urlContexts.get(uri);
      (context?.browser ?? processBrowser).store(header);
      callback(null);
    },
    retrieveCookies(context, uri, callback) {
      const browser = context?.browser ?? processBrowser;
      callback(null, [...browser.cookies.values()]);
    },
  },
});

const ShimXMLHttpRequest = globalThis.window.XMLHttpRequest;

class TappedXMLHttpRequest extends ShimXMLHttpRequest {
  open(method, uri) {
    const url = uri instanceof URL ? uri : new URL(uri);
    urlContexts.set(url, this.context);
    this.tapUrl = url.href;
    return super.open(method, url);
  }

  send(body) {
    const tap = this.context?.tap;
    if (tap) {
      const exchange = tap.request(this.tapUrl, body);
      const onload = this.onload;
      const onerror = this.onerror;
      this.onload = (...args) => {
        tap.response(exchange, this.status, this.responseText);
        return onload?.apply(this, args);
      };
      this.onerror = (...args) => {
        tap.failure(exchange, this.statusText);
        return onerror?.apply(this, args);
      };
    }
    return super.send(body);
  }
}

globalThis.window.XMLHttpRequest = TappedXMLHttpRequest;

const ShimWebSocket = globalThis.window.WebSocket;
/** The FrameTap of the client whose websocket transport is running send() right now. */
let socketOwner = null;

class TappedWebSocket extends ShimWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    const tap = socketOwner;
    if (!tap) return;
    const record = tap.opened(this, url);
    this.on('upgrade', (response) => {
      record.status = response.statusCode;
      record.headers = { ...response.headers };
    });
    this.on('open', () => {
      record.openedAt = Date.now();
      notifyChange();
    });
    // Registered before the transport's onmessage, so the frame is recorded before
    // the client processes it.
    this.on('message', (data, isBinary) => tap.frame(record, 'in', isBinary ? data : data.toString('utf8'), isBinary));
    this.on('error', (err) => {
      record.error = err.message;
      notifyChange();
    });
    this.on('close', (code, reason) => {
      record.closedAt = Date.now();
      record.close = { code, reason: reason.toString('utf8') };
      notifyChange();
    });
  }

  send(data, ...rest) {
    const record = this.tapRecord;
    if (record) record.tap.frame(record, 'out', String(data), false);
    return super.send(data, ...rest);
  }
}

globalThis.window.WebSocket = TappedWebSocket;

// ---------------------------------------------------------------------------
// Wire tap

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** True for a server-to-client delivery (a message published on a channel), not a reply. */
export function isDelivery(message) {
  return message && typeof message === 'object' && !('successful' in message) &&
    typeof message.channel === 'string' && !message.channel.startsWith('/meta/');
}

/** Records every HTTP exchange of one client. */
export class WireTap {
  name;
  /** {seq, url, path, sentAt, requestText, request, status, responseText, response, error, doneAt} */
  exchanges = [];
  /** Exchanges in the order their responses (or failures) arrived. */
  completed = [];
  #seq = 0;

  constructor(name) {
    this.name = name;
  }

  request(url, body) {
    const exchange = {
      seq: ++this.#seq,
      url,
      path: new URL(url).pathname,
      sentAt: Date.now(),
      requestText: body,
      request: parseJson(body),
      status: null,
      responseText: null,
      response: undefined,
      error: null,
      doneAt: null,
    };
    this.exchanges.push(exchange);
    notifyChange();
    return exchange;
  }

  response(exchange, status, text) {
    exchange.status = status;
    exchange.responseText = text;
    exchange.response = parseJson(text);
    exchange.doneAt = Date.now();
    this.completed.push(exchange);
    notifyChange();
  }

  failure(exchange, reason) {
    exchange.error = reason || 'error';
    exchange.doneAt = Date.now();
    this.completed.push(exchange);
    notifyChange();
  }

  /** Every message the client sent, in send order. */
  sent() {
    return this.exchanges.flatMap((e) => (Array.isArray(e.request) ? e.request : []));
  }

  /** Every message the server sent back, in arrival order. */
  received() {
    return this.completed.flatMap((e) => (Array.isArray(e.response) ? e.response : []));
  }

  /** Deliveries (not replies) received, optionally only those on `channel`. */
  deliveries(channel) {
    return this.received().filter((m) => isDelivery(m) && (channel === undefined || m.channel === channel));
  }

  /** Replies received on `channel` (e.g. '/meta/connect'). */
  replies(channel) {
    return this.received().filter((m) => m && m.channel === channel && 'successful' in m);
  }

  /** Exchanges whose request contains a message on `channel`. */
  exchangesWith(channel) {
    return this.exchanges.filter((e) => Array.isArray(e.request) && e.request.some((m) => m.channel === channel));
  }

  /** Connect requests sent and not yet answered. */
  pendingConnects() {
    return this.exchanges.filter((e) => e.doneAt === null && Array.isArray(e.request) &&
      e.request.some((m) => m.channel === '/meta/connect'));
  }

  summary(last = 12) {
    return this.exchanges.slice(-last).map((e) =>
      `#${e.seq} ${e.path} -> ${e.error ? `error ${e.error}` : e.status ?? 'pending'} ` +
      `req=${truncate(e.requestText)} res=${truncate(e.responseText)}`).join('\n    ');
  }
}

function truncate(text, max = 300) {
  if (text === null || text === undefined) return String(text);
  return text.length > max ? `${text.slice(0, max)}...(${text.length} chars)` : text;
}

// ---------------------------------------------------------------------------
// WebSocket frame tap

/** Records every websocket (socket, frame, close) of one client. */
export class FrameTap {
  name;
  /** {n, tap, ws, url, status, headers, openedAt, closedAt, close: {code, reason}, error} */
  sockets = [];
  /** {seq, socket (n), dir: 'in'|'out', at, text, messages (parsed array) | undefined, binary} */
  frames = [];

  constructor(name) {
    this.name = name;
  }

  opened(ws, url) {
    const record = {
      n: this.sockets.length + 1, tap: this, ws, url: String(url), status: null, headers: null,
      openedAt: null, closedAt: null, close: null, error: null,
    };
    ws.tapRecord = record;
    this.sockets.push(record);
    notifyChange();
    return record;
  }

  frame(record, dir, text, binary) {
    let messages;
    if (!binary) {
      const parsed = parseJson(text);
      messages = Array.isArray(parsed) ? parsed : (parsed && typeof parsed === 'object' ? [parsed] : undefined);
    }
    this.frames.push({ seq: this.frames.length + 1, socket: record.n, dir, at: Date.now(), text, messages, binary });
    notifyChange();
  }

  /** The socket currently (last) opened. */
  get current() {
    return this.sockets.at(-1);
  }

  framesIn() {
    return this.frames.filter((f) => f.dir === 'in');
  }

  framesOut() {
    return this.frames.filter((f) => f.dir === 'out');
  }

  /** Every message the client sent, in send order. */
  sent() {
    return this.framesOut().flatMap((f) => f.messages ?? []);
  }

  /** Every message the server sent, in arrival order. */
  received() {
    return this.framesIn().flatMap((f) => f.messages ?? []);
  }

  /** Deliveries (not replies) received, optionally only those on `channel`. */
  deliveries(channel) {
    return this.received().filter((m) => isDelivery(m) && (channel === undefined || m.channel === channel));
  }

  /** Replies received on `channel`. */
  replies(channel) {
    return this.received().filter((m) => m && m.channel === channel && 'successful' in m);
  }

  /** The reply (received) to the message with `id`, or undefined. */
  replyTo(id) {
    return this.received().find((m) => m && m.id === id && 'successful' in m);
  }

  /** Outgoing frames holding a message on `channel`. */
  framesWith(channel) {
    return this.framesOut().filter((f) => (f.messages ?? []).some((m) => m.channel === channel));
  }

  /** /meta/connect messages sent and not answered yet. */
  pendingConnects() {
    return this.sent().filter((m) => m.channel === '/meta/connect' && !this.replyTo(m.id));
  }

  summary(last = 16) {
    const sockets = this.sockets.map((s) => `socket ${s.n}: status=${s.status} close=${JSON.stringify(s.close)} error=${s.error}`);
    const frames = this.frames.slice(-last).map((f) => `#${f.seq} s${f.socket} ${f.dir === 'in' ? '<-' : '->'} ${truncate(f.text)}`);
    return [...sockets, ...frames].join('\n    ');
  }
}

// ---------------------------------------------------------------------------
// Message collectors

/** Records the messages a listener receives; await `waitFor(n)` or `waitUntil(pred)`. */
export class Collector {
  name;
  messages = [];
  listener = (message) => {
    this.messages.push(message);
    notifyChange();
  };

  constructor(name) {
    this.name = name;
  }

  waitFor(count, timeout = 5000) {
    return until(() => this.messages.length >= count && this.messages, {
      timeout,
      what: `${count} message(s) on ${this.name}`,
      describe: () => `${this.messages.length} received: ${truncate(JSON.stringify(this.messages))}`,
    });
  }

  waitUntil(predicate, timeout = 5000, what = `condition on ${this.name}`) {
    return until(() => predicate(this.messages) && this.messages, {
      timeout,
      what,
      describe: () => `${this.messages.length} received: ${truncate(JSON.stringify(this.messages))}`,
    });
  }

  /** Resolves when some received message's `data` satisfies `predicate` (e.g. a fence). */
  waitForData(predicate, timeout = 5000, what = `a matching message on ${this.name}`) {
    return this.waitUntil((messages) => messages.some((m) => predicate(m.data)), timeout, what);
  }
}

// ---------------------------------------------------------------------------
// Test client

const DEFAULT_DEADLINE = 5000;

/**
 * One CometD client of the official library, on long-polling only (or, with
 * `websocket: true`, websocket first as the library defaults), with its own
 * cookie jar (unless `browser` is given) and a wire tap (plus a frame tap for websocket).
 */
export class TestClient {
  static #count = 0;
  name;
  cometd;
  browser;
  tap;
  /** Every message the /meta/handshake listener saw (including client-made failures). */
  handshakes = [];
  /** Every message the /meta/connect listener saw. */
  connects = [];

  /**
   * `browser`: a Browser (jar) to share with other clients; omitted = a new jar of its own;
   * null = the process-wide jar (what stock cometd-nodejs-client gives every client).
   * `config`: extra CometD configure() options.
   * `websocket`: keep the websocket transport (first) and record frames in `this.frames`.
   */
  constructor({ url, name, browser, config = {}, websocket = false } = {}) {
    if (!url) throw new Error('TestClient needs a url');
    this.name = name || `client-${++TestClient.#count}`;
    this.browser = browser === undefined ? new Browser(`${this.name}-browser`) : browser;
    this.tap = new WireTap(this.name);
    this.cometd = new CometD(this.name);
    if (websocket) {
      // Keep the official order (websocket first, long-polling as fallback) and tap frames.
      this.frames = new FrameTap(this.name);
      const transport = this.cometd.findTransport('websocket');
      if (!transport) throw new Error('websocket transport missing from the CometD client');
      const send = transport.send.bind(transport);
      const frames = this.frames;
      transport.send = (envelope, metaConnect) => {
        const previous = socketOwner;
        socketOwner = frames;
        try {
          return send(envelope, metaConnect);
        } finally {
          socketOwner = previous;
        }
      };
    } else {
      // Long-polling only: the websocket transport is registered because the shim
      // installs window.WebSocket; drop it so the handshake negotiates long-polling.
      this.cometd.unregisterTransport('websocket');
    }
    const longPolling = this.cometd.findTransport('long-polling');
    if (!longPolling) throw new Error('long-polling transport missing from the CometD client');
    // Copied by the transport into every XHR it creates (see TappedXMLHttpRequest).
    longPolling.context = { browser: this.browser ?? undefined, tap: this.tap };
    this.cometd.configure({
      url,
      logLevel: process.env.COMETD_LOG_LEVEL || 'warn',
      maxNetworkDelay: 5000,
      ...config,
    });
    this.cometd.addListener('/meta/handshake', (message) => {
      this.handshakes.push(message);
      notifyChange();
    });
    this.cometd.addListener('/meta/connect', (message) => {
      this.connects.push(message);
      notifyChange();
    });
  }

  get clientId() {
    return this.cometd.getClientId();
  }

  get status() {
    return this.cometd.getStatus();
  }

  /** The BAYEUX_BROWSER cookie value of this client's browser (jar). */
  browserCookie(name = 'BAYEUX_BROWSER') {
    return (this.browser ?? processBrowser).cookie(name);
  }

  /** Resolves with the handshake reply (successful or not). */
  handshake(props) {
    return withDeadline(new Promise((resolve) => {
      if (props === undefined) this.cometd.handshake(resolve);
      else this.cometd.handshake(props, resolve);
    }), DEFAULT_DEADLINE, `${this.name} handshake reply`);
  }

  /** Handshakes and waits until the first /meta/connect reply was processed (status connected). */
  async connect(props) {
    const reply = await this.handshake(props);
    if (!reply.successful) {
      throw new Error(`${this.name} handshake failed: ${JSON.stringify(reply)}`);
    }
    await until(() => this.connects.some((m) => m.successful), {
      timeout: DEFAULT_DEADLINE,
      what: `${this.name} first successful /meta/connect`,
      describe: () => this.tap.summary(),
    });
    return reply;
  }

  /**
   * Subscribes `listener` (or a new Collector) to `channel`.
   * Resolves {subscription, reply, collector}.
   */
  async subscribe(channel, listener) {
    const collector = listener ? null : new Collector(`${this.name} ${channel}`);
    const callback = listener ?? collector.listener;
    let subscription;
    const reply = await withDeadline(new Promise((resolve) => {
      subscription = this.cometd.subscribe(channel, callback, resolve);
    }), DEFAULT_DEADLINE, `${this.name} subscribe reply for ${channel}`);
    return { subscription, reply, collector };
  }

  /** Subscribes and fails unless the reply is successful. Resolves the Collector. */
  async collect(channel) {
    const { reply, collector, subscription } = await this.subscribe(channel);
    if (!reply.successful) {
      throw new Error(`${this.name} subscribe to ${channel} failed: ${JSON.stringify(reply)}`);
    }
    collector.subscription = subscription;
    return collector;
  }

  unsubscribe(subscription) {
    return withDeadline(new Promise((resolve) => {
      this.cometd.unsubscribe(subscription, resolve);
    }), DEFAULT_DEADLINE, `${this.name} unsubscribe reply for ${subscription.channel}`);
  }

  /** Resolves with the publish reply. */
  publish(channel, data, timeout = DEFAULT_DEADLINE) {
    return withDeadline(new Promise((resolve) => {
      this.cometd.publish(channel, data, resolve);
    }), timeout, `${this.name} publish reply on ${channel}`);
  }

  /** Resolves with the disconnect reply. */
  disconnect() {
    return withDeadline(new Promise((resolve) => {
      this.cometd.disconnect(resolve);
    }), DEFAULT_DEADLINE, `${this.name} disconnect reply`);
  }

  /** Disconnects if needed; bounded; never throws. Used by teardown. */
  async close() {
    try {
      if (!this.cometd.isDisconnected()) {
        await this.disconnect();
      }
      await until(() => this.status === 'disconnected', { timeout: 3000, what: `${this.name} disconnected` });
    } catch {
      // The transport abort below is the last resort so that no timer keeps Node alive.
      try { this.cometd.getTransport()?.abort(); } catch { /* ignore */ }
    }
    // The official client may keep its websocket open after /meta/disconnect (it closes it
    // only when the disconnect reply comes after the connect reply); like a closed page,
    // drop it so that it neither keeps Node alive nor delays the server's shutdown.
    for (const socket of this.frames?.sockets ?? []) {
      if (socket.close === null) {
        try { socket.ws.terminate(); } catch { /* ignore */ }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Raw HTTP (bypasses the CometD client)

/**
 * POSTs `body` (an array of messages, or a raw string) to `url`.
 * Resolves {status, headers, text, json}.
 */
export async function rawPost(url, body, { cookie, contentType = 'application/json;charset=UTF-8', timeout = DEFAULT_DEADLINE } = {}) {
  const headers = { 'Content-Type': contentType };
  if (cookie) headers.Cookie = cookie;
  const response = await fetch(url, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(timeout),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, json: parseJson(text) };
}
