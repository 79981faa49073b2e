// Headless Chromium (the Debian package, never a Playwright download) driven by
// playwright-core, plus a wire recorder that sees every request the page makes to
// the Bayeux mount (XHR POSTs, JSONP script GETs) and every websocket frame.

import { accessSync, constants as fsConstants } from 'node:fs';
import { EventEmitter } from 'node:events';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Throws (never skips) when the browser is missing: in CI this suite must not pass silently. */
export function requireChromium() {
  try {
    accessSync(CHROMIUM, fsConstants.X_OK);
  } catch {
    throw new Error(
      `Chromium not found or not executable at ${CHROMIUM}. The browser suite needs it and ` +
      'refuses to skip: install it with `apt-get install -y chromium` (Debian) or set CHROMIUM_BIN. ' +
      'Do not use `npx playwright install`.');
  }
}

export async function launchBrowser() {
  requireChromium();
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30000,
  });
}

/** Rejects after `ms` with a message naming `what` (page.evaluate itself is unbounded). */
export async function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function parseJsonArray(text) {
  const value = JSON.parse(text);
  return Array.isArray(value) ? value : [value];
}

/** Server-to-client payloads must be JSON arrays (never a bare object). */
function parseReplyArray(text, where, problems) {
  const value = JSON.parse(text);
  if (!Array.isArray(value)) {
    problems.push(`${where}: not a JSON array: ${text.slice(0, 200)}`);
    return [value];
  }
  return value;
}

const JSONP_BODY_RE = /^([A-Za-z0-9._-]+)\(([\s\S]*)\)$/;

/**
 * Everything the page exchanged with the Bayeux mount path.
 * http: [{seq, method, path, jsonp, messages, status, contentType, body, replies, failed, done}]
 *   (`messages` parsed from the POST body or from the JSONP `message` parameters,
 *    `replies` parsed from the JSON body or from inside the JSONP callback call)
 * sockets: [{url, sent: [[msg...]...], received: [[msg...]...], closed, errors}]
 * problems: unparsable payloads, server payloads that are not JSON arrays, binary frames
 */
export class Wire extends EventEmitter {
  http = [];
  sockets = [];
  problems = [];
  #seq = 0;
  #byRequest = new Map();

  constructor(page, mountPath = '/cometd') {
    super();
    this.setMaxListeners(0);
    const underMount = (pathname) => pathname === mountPath || pathname.startsWith(mountPath + '/');

    page.on('request', (req) => {
      const url = new URL(req.url());
      if (!underMount(url.pathname)) return;
      const entry = {
        seq: this.#seq++,
        method: req.method(),
        path: url.pathname,
        url: req.url(),
        jsonp: url.searchParams.get('jsonp'),
        messages: [],
        status: null,
        contentType: null,
        body: null,
        replies: null,
        failed: null,
        done: false,
      };
      try {
        if (entry.method === 'POST') {
          entry.messages = parseJsonArray(req.postData() ?? '');
        } else {
          for (const m of url.searchParams.getAll('message')) entry.messages.push(...parseJsonArray(m));
        }
      } catch (err) {
        this.problems.push(`unparsable request ${entry.method} ${entry.url}: ${err.message}`);
      }
      this.http.push(entry);
      this.#byRequest.set(req, entry);
      this.emit('change');
    });

    page.on('requestfinished', async (req) => {
      const entry = this.#byRequest.get(req);
      if (!entry) return;
      try {
        const res = await req.response();
        entry.status = res.status();
        entry.contentType = res.headers()['content-type'] ?? null;
        entry.body = await res.text();
        if (entry.status === 200) {
          if (entry.jsonp !== null && entry.method === 'GET') {
            const m = JSONP_BODY_RE.exec(entry.body);
            if (m && m[1] === entry.jsonp) entry.replies = parseReplyArray(m[2], `${entry.method} ${entry.url}`, this.problems);
          } else {
            entry.replies = parseReplyArray(entry.body, `${entry.method} ${entry.url}`, this.problems);
          }
        }
      } catch (err) {
        this.problems.push(`response of ${entry.method} ${entry.url}: ${err.message}`);
      }
      entry.done = true;
      this.emit('change');
    });

    page.on('requestfailed', (req) => {
      const entry = this.#byRequest.get(req);
      if (!entry) return;
      entry.failed = req.failure()?.errorText ?? 'failed';
      entry.done = true;
      this.emit('change');
    });

    page.on('websocket', (ws) => {
      const socket = { url: ws.url(), sent: [], received: [], closed: false, errors: [] };
      const frame = (list, incoming) => ({ payload }) => {
        try {
          if (typeof payload !== 'string') {
            this.problems.push(`binary websocket frame (${incoming ? 'from' : 'to'} the server) on ${socket.url}`);
            payload = payload.toString('utf8');
          }
          list.push(incoming
            ? parseReplyArray(payload, `websocket frame from ${socket.url}`, this.problems)
            : parseJsonArray(payload));
        } catch (err) {
          this.problems.push(`unparsable websocket frame on ${socket.url}: ${err.message}`);
        }
        this.emit('change');
      };
      ws.on('framesent', frame(socket.sent, false));
      ws.on('framereceived', frame(socket.received, true));
      ws.on('socketerror', (error) => { socket.errors.push(String(error)); this.emit('change'); });
      ws.on('close', () => { socket.closed = true; this.emit('change'); });
      this.sockets.push(socket);
      this.emit('change');
    });
  }

  /** Resolves with the first truthy value of `predicate()`; rejects after `ms`. */
  waitFor(predicate, ms, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        let value;
        try { value = predicate(); } catch (err) { cleanup(); reject(err); return; }
        if (value) { cleanup(); resolve(value); }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${ms} ms waiting for ${what} on the wire`));
      }, ms);
      const cleanup = () => { clearTimeout(timer); this.off('change', check); };
      this.on('change', check);
      check();
    });
  }

  /** Requests whose messages include one matching `pred`. */
  requestsWith(pred) {
    return this.http.filter((e) => e.messages.some(pred));
  }

  /** Sent websocket frames (across sockets) that include a message matching `pred`. */
  framesSentWith(pred) {
    return this.sockets.flatMap((s) => s.sent).filter((f) => f.some(pred));
  }

  /** Received websocket frames (across sockets) that include a message matching `pred`. */
  framesReceivedWith(pred) {
    return this.sockets.flatMap((s) => s.received).filter((f) => f.some(pred));
  }

  /** Compact dump for assertion messages. */
  dump(limit = 6000) {
    const text = JSON.stringify({
      http: this.http.map(({ seq, method, path, jsonp, messages, status, contentType, body, failed }) =>
        ({ seq, method, path, jsonp, messages, status, contentType, body: body && body.slice(0, 400), failed })),
      sockets: this.sockets,
      problems: this.problems,
    });
    return text.length > limit ? text.slice(0, limit) + '...' : text;
  }
}

/**
 * Opens the test page of `server` in `context` (a Playwright BrowserContext) and
 * returns {page, wire, call, logs}. `call(fn, arg)` runs `window.harness[fn](arg)`
 * in the page, bounded on the Node side as well.
 */
export async function openPage(context, server, { ready = 15000 } = {}) {
  const page = await context.newPage();
  const logs = [];
  page.on('console', (msg) => logs.push(`[console.${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => logs.push(`[pageerror] ${err.message}`));
  const mount = new URL(server.url).pathname;
  const wire = new Wire(page, mount);
  const origin = new URL(server.url).origin;
  const pageUrl = `${origin}/www/index.html`;
  const response = await page.goto(pageUrl, { timeout: ready });
  if (!response || response.status() !== 200) {
    throw new Error(`GET ${pageUrl} answered ${response && response.status()} (is --static-dir served?)`);
  }
  try {
    await page.waitForFunction(() => window.harness && window.harness.ready === true, null, { timeout: ready });
  } catch (err) {
    throw new Error(`test page did not become ready (cometd modules not loaded?): ${err.message}\n` +
      `page log:\n${logs.join('\n')}`);
  }
  const call = async (fn, arg, ms = 20000) => {
    try {
      return await bounded(page.evaluate(([f, a]) => window.harness[f](a), [fn, arg]), ms,
        `harness.${fn}(${JSON.stringify(arg).slice(0, 200)})`);
    } catch (err) {
      err.message += `\npage log (last 30):\n${logs.slice(-30).join('\n')}`;
      throw err;
    }
  };
  return { page, wire, call, logs, url: server.url };
}
