// A small fault-injecting proxy (HTTP + websocket) between an official CometD client and
// bayeuxd, on 127.0.0.1. It forwards everything unchanged, except that it can be armed to
// DROP the next /meta/connect reply that carries deliveries, after the server has sent it
// (so the server believes that batch was delivered):
//
// * HTTP (long-polling): the request is forwarded, the whole response is read from the
//   server, and if it answers a /meta/connect and holds at least one delivery, the client's
//   socket is destroyed instead of answering (the client's XHR fails).
// * websocket: every frame is forwarded in both directions; a server->client frame holding a
//   /meta/connect reply and at least one delivery is not forwarded, and both sockets (client
//   side and server side) are terminated, like a network cut.
//
// Every drop is recorded in `drops` ({transport, at, request?, messages}) so a test can prove
// that something really was lost on the way.

import http from 'node:http';
import { once } from 'node:events';
import { WebSocket, WebSocketServer } from 'ws';
import { isDelivery, notifyChange } from './client.mjs';

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

/** True if `messages` (a parsed reply batch) answers a /meta/connect and holds a delivery. */
export function isConnectReplyWithDeliveries(messages) {
  return messages.some((m) => m && m.channel === '/meta/connect' && 'successful' in m) &&
    messages.some((m) => isDelivery(m));
}

export class FaultProxy {
  target;
  url = null;
  port = null;
  /** Recorded drops, oldest first. */
  drops = [];
  /** Number of HTTP exchanges and websocket frames forwarded (for diagnostics). */
  forwarded = { http: 0, wsIn: 0, wsOut: 0 };
  #armed = 0;
  #server = null;
  #wss = null;
  #agent = new http.Agent({ keepAlive: true });
  #sockets = new Set();
  #wsPairs = new Set();

  /** `target`: the bayeuxd endpoint URL (http://127.0.0.1:PORT/cometd). */
  constructor(target) {
    this.target = new URL(target);
  }

  /** Arms the proxy to drop the next `count` /meta/connect replies that carry deliveries. */
  dropNextConnectsWithDeliveries(count = 1) {
    this.#armed += count;
  }

  /** Drops still armed. */
  get armed() {
    return this.#armed;
  }

  async start() {
    const server = http.createServer((req, res) => this.#onRequest(req, res));
    // The official client's agent keeps connections alive; never close one under it.
    server.keepAliveTimeout = 120000;
    server.headersTimeout = 125000;
    server.requestTimeout = 0;
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    this.#wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket, head) => {
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onWebSocket(ws, req));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    this.#server = server;
    this.port = server.address().port;
    this.url = `http://127.0.0.1:${this.port}${this.target.pathname}`;
    return this;
  }

  // -------------------------------------------------------------------------
  // HTTP

  #onRequest(req, res) {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const headers = { ...req.headers, host: this.target.host };
      const upstream = http.request({
        host: this.target.hostname,
        port: this.target.port,
        method: req.method,
        path: req.url,
        headers,
        agent: this.#agent,
      }, (response) => {
        const parts = [];
        response.on('data', (chunk) => parts.push(chunk));
        response.on('end', () => this.#onResponse(req, res, body, response, Buffer.concat(parts)));
        response.on('error', () => req.socket.destroy());
      });
      upstream.on('error', () => req.socket.destroy());
      upstream.end(body);
    });
  }

  #onResponse(req, res, requestBody, response, responseBody) {
    const request = asArray(parseJson(requestBody.toString('utf8')));
    const messages = asArray(parseJson(responseBody.toString('utf8')));
    const isConnect = request.some((m) => m && m.channel === '/meta/connect');
    if (this.#armed > 0 && isConnect && isConnectReplyWithDeliveries(messages)) {
      this.#armed -= 1;
      this.drops.push({ transport: 'http', at: Date.now(), path: req.url, request, messages });
      req.socket.destroy();
      notifyChange();
      return;
    }
    const headers = { ...response.headers };
    delete headers['transfer-encoding'];
    delete headers.connection;
    delete headers['keep-alive'];
    headers['content-length'] = String(responseBody.length);
    res.writeHead(response.statusCode, response.statusMessage, headers);
    res.end(responseBody);
    this.forwarded.http += 1;
  }

  // -------------------------------------------------------------------------
  // websocket

  #onWebSocket(client, req) {
    const url = `ws://${this.target.host}${req.url}`;
    const protocol = req.headers['sec-websocket-protocol'];
    const upstream = protocol ? new WebSocket(url, protocol.split(',').map((p) => p.trim())) : new WebSocket(url);
    const pair = { client, upstream, pending: [] };
    this.#wsPairs.add(pair);
    let cut = false;
    const cutBoth = () => {
      cut = true;
      client.terminate();
      upstream.terminate();
    };
    upstream.on('open', () => {
      for (const [data, isBinary] of pair.pending) upstream.send(data, { binary: isBinary });
      pair.pending = [];
    });
    client.on('message', (data, isBinary) => {
      if (cut) return;
      this.forwarded.wsOut += 1;
      if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary });
      else pair.pending.push([data, isBinary]);
    });
    upstream.on('message', (data, isBinary) => {
      if (cut) return;
      if (!isBinary && this.#armed > 0) {
        const messages = asArray(parseJson(data.toString('utf8')));
        if (isConnectReplyWithDeliveries(messages)) {
          this.#armed -= 1;
          this.drops.push({ transport: 'websocket', at: Date.now(), path: req.url, messages });
          cutBoth();
          notifyChange();
          return;
        }
      }
      this.forwarded.wsIn += 1;
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    });
    const validCode = (code) => code === 1000 || (code >= 3000 && code <= 4999) || (code >= 1001 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006);
    client.on('close', (code, reason) => {
      this.#wsPairs.delete(pair);
      if (cut) return;
      if (upstream.readyState === WebSocket.OPEN) upstream.close(validCode(code) ? code : 1000, reason);
      else upstream.terminate();
    });
    upstream.on('close', (code, reason) => {
      if (cut) return;
      if (client.readyState === WebSocket.OPEN) client.close(validCode(code) ? code : 1000, reason);
      else client.terminate();
    });
    client.on('error', () => upstream.terminate());
    upstream.on('error', () => client.terminate());
  }

  async close() {
    for (const pair of this.#wsPairs) {
      pair.client.terminate();
      pair.upstream.terminate();
    }
    this.#wsPairs.clear();
    if (this.#server) {
      const closed = once(this.#server, 'close');
      this.#server.close();
      this.#server.closeAllConnections?.();
      for (const socket of this.#sockets) socket.destroy();
      await closed;
      this.#server = null;
    }
    this.#wss?.close();
    this.#agent.destroy();
  }
}

/** Starts a proxy in front of `target` and registers its teardown on the node:test context `t`. */
export async function startProxy(t, target) {
  const proxy = await new FaultProxy(target).start();
  t.after(() => proxy.close());
  return proxy;
}
