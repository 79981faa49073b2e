// A tiny readiness-aware load balancer (HTTP + websocket) in front of several bayeuxd nodes,
// on 127.0.0.1, for the rolling-restart (drain) tests.
//
// Routing rule (what an L7 balancer with health checks and session affinity does, made
// Bayeux-aware so that it needs no cookie of its own):
//
// * Readiness: every node's `GET /readyz` is polled every `pollMs` (50 ms); 200 = ready,
//   anything else (503 `draining`, connection refused once the process is gone) = not ready.
// * NEW work goes to the first ready node in the configured order (A before B): every
//   websocket upgrade (a new connection), and every HTTP request that does not belong to a
//   session the balancer knows (a /meta/handshake, or a clientId it never saw).
// * Affinity: the clientId of each successful /meta/handshake reply is pinned to the node that
//   answered it. An HTTP request carrying a pinned clientId goes to that node even when it is
//   no longer ready: a draining node must keep receiving the connects of its own sessions, so
//   that it can hand over what is queued for them and send them away itself (sending them to
//   another node early would lose that queue, and a clientId unknown there only earns a
//   402). A websocket stays on the node it was opened to until one side closes it.
// * A pinned node that refuses the connection (the process has exited) is forgotten for that
//   request, which is re-dispatched to the first ready node (which will answer 402, and the
//   client handshakes again): the "redispatch" of real balancers.
//
// With `{policy: 'round-robin'}` there is no affinity at all: every HTTP request and every new
// websocket goes to the next ready node in turn (what a plain L4/L7 balancer does), so the
// requests of one session land on every node; the cluster tests use it. A node that refuses
// the connection (killed, and not yet seen unready by the poll) costs one retry on the next
// ready node, for a websocket too (its first frames wait for the upstream to open).
//
// Everything routed is recorded in `routes` ({at, policy, transport, node, reason, channels,
// clientId, status}: status is the HTTP status, 101 for a websocket that opened, the socket
// error code (ECONNREFUSED) for one that did not reach its node, null while in flight; the
// reason is 'new', 'pinned' or 'redispatched' under 'first-ready', 'round-robin' or
// 'round-robin (redispatched)' under 'round-robin'; a websocket's route takes the clientId of
// the first message that carries one); `routesOf(clientId)` counts them per node. Every
// handshake answer seen, with the node that gave it, in `handshakes` ({at, transport, node,
// clientId, successful, error}); every websocket in `sockets` ({n, node, openedAt, closedAt,
// upstreamClose: {code, reason}, clientClose}).

import http from 'node:http';
import { once } from 'node:events';
import { WebSocket, WebSocketServer } from 'ws';
import { notifyChange } from './client.mjs';

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function asArray(parsed) {
  if (Array.isArray(parsed)) return parsed;
  return parsed && typeof parsed === 'object' ? [parsed] : [];
}

const validCloseCode = (code) => code === 1000 || (code >= 3000 && code <= 4999) ||
  (code >= 1001 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006);

export class Balancer {
  /** [{name, url (Bayeux endpoint), origin, ready, readyzStatus, agent}] */
  nodes;
  pollMs;
  url = null;
  port = null;
  /** clientId -> node name, learned from successful handshake replies (first-ready only). */
  pins = new Map();
  routes = [];
  handshakes = [];
  sockets = [];
  /** Readiness transitions: {at, node, ready, status}. */
  readiness = [];
  #server = null;
  #wss = null;
  #timer = null;
  #polling = false;
  #clientSockets = new Set();
  #wsPairs = new Set();
  #path;

  /** 'first-ready' (affinity, as above) or 'round-robin' (no affinity). */
  policy;
  #turn = 0;

  /** `nodes`: [{name, url}] in order of preference; `url` is the node's Bayeux endpoint. */
  constructor(nodes, { pollMs = 50, policy = 'first-ready' } = {}) {
    if (!['first-ready', 'round-robin'].includes(policy)) throw new Error(`unknown policy ${policy}`);
    this.policy = policy;
    if (nodes.length === 0) throw new Error('a balancer needs nodes');
    this.nodes = nodes.map(({ name, url }) => ({
      name,
      url: new URL(url),
      origin: new URL(url).origin,
      ready: false,
      readyzStatus: null,
      agent: new http.Agent({ keepAlive: true }),
    }));
    this.#path = this.nodes[0].url.pathname;
    this.pollMs = pollMs;
  }

  node(name) {
    return this.nodes.find((n) => n.name === name);
  }

  /**
   * The node new work goes to now (first ready, or the next ready in turn), or undefined;
   * never `exclude` (the node that just refused a connection).
   */
  pick(exclude = undefined) {
    if (this.policy === 'round-robin') {
      for (let i = 0; i < this.nodes.length; i++) {
        const node = this.nodes[this.#turn++ % this.nodes.length];
        if (node.ready && node !== exclude) return node;
      }
      return undefined;
    }
    return this.nodes.find((n) => n.ready && n !== exclude);
  }

  /**
   * How many routes of `clientId` reached each node: {name: count}. HTTP requests, and
   * websockets (one per socket, however many messages it carried); a route refused by its node
   * (status ECONNREFUSED...) does not count, its retry does. E.g. {a: 4, b: 3, c: 4}.
   */
  routesOf(clientId) {
    const counts = {};
    for (const r of this.routes) {
      if (r.clientId !== clientId || typeof r.status === 'string') continue;
      counts[r.node] = (counts[r.node] ?? 0) + 1;
    }
    return counts;
  }

  /** The names of the nodes the routes of `clientId` reached, sorted. */
  nodesOf(clientId) {
    return Object.keys(this.routesOf(clientId)).sort();
  }

  async start() {
    await this.#pollOnce();
    this.#timer = setInterval(() => { this.#pollOnce(); }, this.pollMs);
    const server = http.createServer((req, res) => this.#onRequest(req, res));
    server.keepAliveTimeout = 120000;
    server.headersTimeout = 125000;
    server.requestTimeout = 0;
    server.on('connection', (socket) => {
      this.#clientSockets.add(socket);
      socket.once('close', () => this.#clientSockets.delete(socket));
    });
    this.#wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket, head) => this.#onUpgrade(req, socket, head));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    this.#server = server;
    this.port = server.address().port;
    this.url = `http://127.0.0.1:${this.port}${this.#path}`;
    return this;
  }

  // -------------------------------------------------------------------------
  // Health checks

  async #pollOnce() {
    if (this.#polling) return;
    this.#polling = true;
    try {
      await Promise.all(this.nodes.map(async (node) => {
        let status;
        try {
          const res = await fetch(`${node.origin}/readyz`, { signal: AbortSignal.timeout(1000) });
          await res.arrayBuffer();
          status = res.status;
        } catch (err) {
          status = err.cause?.code || err.name || 'error';
        }
        const ready = status === 200;
        node.readyzStatus = status;
        if (ready !== node.ready) {
          node.ready = ready;
          this.readiness.push({ at: Date.now(), node: node.name, ready, status });
          notifyChange();
        }
      }));
    } finally {
      this.#polling = false;
    }
  }

  // -------------------------------------------------------------------------
  // HTTP

  #learn(transport, node, messages) {
    for (const m of messages) {
      if (!m || m.channel !== '/meta/handshake' || !('successful' in m)) continue;
      this.handshakes.push({
        at: Date.now(), transport, node: node.name, clientId: m.clientId, successful: m.successful, error: m.error,
      });
      // Round-robin has no affinity: it pins nothing.
      if (m.successful && m.clientId && this.policy !== 'round-robin') this.pins.set(m.clientId, node.name);
      notifyChange();
    }
  }

  #route(messages) {
    const clientId = messages.find((m) => m && typeof m.clientId === 'string')?.clientId;
    if (this.policy === 'round-robin') return { node: this.pick(), reason: 'round-robin', clientId };
    const pinned = clientId !== undefined ? this.pins.get(clientId) : undefined;
    if (pinned !== undefined) return { node: this.node(pinned), reason: 'pinned', clientId };
    return { node: this.pick(), reason: 'new', clientId };
  }

  #onRequest(req, res) {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const messages = asArray(parseJson(body.toString('utf8')));
      const { node, reason, clientId } = this.#route(messages);
      this.#forward(req, res, body, messages, node, reason, clientId, false);
    });
  }

  #forward(req, res, body, messages, node, reason, clientId, redispatched) {
    if (!node) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('no node ready\n');
      return;
    }
    const route = {
      at: Date.now(), policy: this.policy, transport: 'http', node: node.name, reason, clientId,
      channels: messages.map((m) => m?.channel), status: null,
    };
    this.routes.push(route);
    const upstream = http.request({
      host: node.url.hostname,
      port: node.url.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: node.url.host },
      agent: node.agent,
    }, (response) => {
      const parts = [];
      response.on('data', (chunk) => parts.push(chunk));
      response.on('end', () => {
        const responseBody = Buffer.concat(parts);
        route.status = response.statusCode;
        const replies = asArray(parseJson(responseBody.toString('utf8')));
        this.#learn('http', node, replies);
        // A handshake request has no clientId yet: its route takes the one it was given.
        route.clientId = route.clientId ?? replies.find((m) => m?.channel === '/meta/handshake' && m.successful)?.clientId;
        const headers = { ...response.headers };
        delete headers['transfer-encoding'];
        delete headers.connection;
        delete headers['keep-alive'];
        headers['content-length'] = String(responseBody.length);
        res.writeHead(response.statusCode, response.statusMessage, headers);
        res.end(responseBody);
      });
      response.on('error', () => req.socket.destroy());
    });
    upstream.on('error', (err) => {
      route.status = err.code || 'error';
      // The node is gone: re-dispatch once to the node new work goes to (under round-robin,
      // the next ready one in turn other than this one; under first-ready, as always, the
      // first ready node, unless it is this one still seen ready).
      if (err.code === 'ECONNREFUSED' && !redispatched) {
        if (clientId !== undefined && this.pins.get(clientId) === node.name) this.pins.delete(clientId);
        const other = this.policy === 'round-robin' ? this.pick(node) : this.pick();
        if (other && other !== node) {
          const why = this.policy === 'round-robin' ? 'round-robin (redispatched)' : 'redispatched';
          this.#forward(req, res, body, messages, other, why, clientId, true);
          return;
        }
      }
      req.socket.destroy();
    });
    upstream.end(body);
  }

  // -------------------------------------------------------------------------
  // websocket

  #onUpgrade(req, socket, head) {
    const node = this.pick();
    if (!node) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (client) => this.#onWebSocket(client, req, node));
  }

  #onWebSocket(client, req, node) {
    const record = {
      n: this.sockets.length + 1, node: node.name, openedAt: Date.now(), closedAt: null,
      upstreamClose: null, clientClose: null,
    };
    this.sockets.push(record);
    const pair = { client, upstream: null, pending: [], route: null };
    this.#wsPairs.add(pair);
    // The client side is open already; its frames wait in `pending` until the upstream opens.
    client.on('message', (data, isBinary) => {
      if (!isBinary && pair.route.clientId === undefined) {
        pair.route.clientId = asArray(parseJson(data.toString('utf8'))).find((m) => typeof m?.clientId === 'string')?.clientId;
      }
      if (pair.upstream?.readyState === WebSocket.OPEN) pair.upstream.send(data, { binary: isBinary });
      else pair.pending.push([data, isBinary]);
    });
    client.on('close', (code, reason) => {
      this.#wsPairs.delete(pair);
      record.clientClose = record.clientClose ?? { code, reason: reason.toString('utf8') };
      record.closedAt = record.closedAt ?? Date.now();
      notifyChange();
      const upstream = pair.upstream;
      if (upstream?.readyState === WebSocket.OPEN) upstream.close(validCloseCode(code) ? code : 1000, reason);
      else upstream?.terminate();
    });
    client.on('error', () => pair.upstream?.terminate());
    const reason = this.policy === 'round-robin' ? 'round-robin' : 'new';
    this.#connectUpstream(pair, record, req, node, reason, false);
  }

  /** Opens the upstream half of `pair` to `node` (under round-robin, retried once if refused). */
  #connectUpstream(pair, record, req, node, reason, redispatched) {
    const { client } = pair;
    const route = {
      at: Date.now(), policy: this.policy, transport: 'websocket', node: node.name, reason,
      clientId: pair.route?.clientId, channels: [], status: null,
    };
    this.routes.push(route);
    pair.route = route;
    record.node = node.name;
    notifyChange();
    const url = `ws://${node.url.host}${req.url}`;
    const protocol = req.headers['sec-websocket-protocol'];
    const headers = req.headers.cookie ? { cookie: req.headers.cookie } : {};
    const upstream = protocol
      ? new WebSocket(url, protocol.split(',').map((p) => p.trim()), { headers })
      : new WebSocket(url, { headers });
    pair.upstream = upstream;
    let opened = false;
    upstream.on('open', () => {
      opened = true;
      route.status = 101;
      for (const [data, isBinary] of pair.pending) upstream.send(data, { binary: isBinary });
      pair.pending = [];
    });
    upstream.on('message', (data, isBinary) => {
      if (!isBinary) {
        const replies = asArray(parseJson(data.toString('utf8')));
        this.#learn('websocket', node, replies);
        route.clientId = route.clientId ?? replies.find((m) => m?.channel === '/meta/handshake' && m.successful)?.clientId;
      }
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    });
    upstream.on('error', (err) => {
      if (opened) {
        client.terminate();
        return;
      }
      route.status = err.code || 'error';
      // Under round-robin, as for HTTP, a node that refuses the connection (gone) costs one
      // retry on the next ready node. (Under first-ready a refused websocket is closed, as it
      // always was: the client reconnects and the poll has noticed by then.)
      if (this.policy === 'round-robin' && err.code === 'ECONNREFUSED' && !redispatched &&
          client.readyState === WebSocket.OPEN) {
        const other = this.pick(node);
        if (other) {
          this.#connectUpstream(pair, record, req, other, 'round-robin (redispatched)', true);
          return;
        }
      }
      client.terminate();
    });
    upstream.on('close', (code, reason) => {
      if (pair.upstream !== upstream) return; // replaced by a retry
      if (!opened && route.status === null) route.status = 'closed';
      record.upstreamClose = { code, reason: reason.toString('utf8') };
      record.closedAt = record.closedAt ?? Date.now();
      notifyChange();
      if (client.readyState === WebSocket.OPEN) client.close(validCloseCode(code) ? code : 1000, reason);
      else client.terminate();
    });
  }

  /** Routes, handshakes and sockets in one line each, for failure messages. */
  summary(last = 30) {
    const routes = this.routes.slice(-last).map((r) =>
      `${r.transport} -> ${r.node} (${r.reason}${r.clientId ? ` ${r.clientId}` : ''}) ${JSON.stringify(r.channels)} ${r.status ?? ''}`);
    const handshakes = this.handshakes.map((h) => `handshake on ${h.node} over ${h.transport}: ${h.successful ? h.clientId : h.error}`);
    const sockets = this.sockets.map((s) => `socket ${s.n} on ${s.node}: upstream close ${JSON.stringify(s.upstreamClose)}`);
    const readiness = this.readiness.map((r) => `${r.node} ${r.ready ? 'ready' : `not ready (${r.status})`}`);
    return [...readiness, ...handshakes, ...sockets, ...routes].join('\n    ');
  }

  async close() {
    clearInterval(this.#timer);
    for (const pair of this.#wsPairs) {
      pair.client.terminate();
      pair.upstream.terminate();
    }
    this.#wsPairs.clear();
    if (this.#server) {
      const closed = once(this.#server, 'close');
      this.#server.close();
      this.#server.closeAllConnections?.();
      for (const socket of this.#clientSockets) socket.destroy();
      await closed;
      this.#server = null;
    }
    this.#wss?.close();
    for (const node of this.nodes) node.agent.destroy();
  }
}

/** Starts a balancer over `nodes` ([{name, url}]) and registers its teardown on `t`. */
export async function startBalancer(t, nodes, options) {
  const balancer = await new Balancer(nodes, options).start();
  t.after(() => balancer.close());
  return balancer;
}
