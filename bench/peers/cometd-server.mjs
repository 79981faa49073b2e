// The official CometD Node server (cometd-nodejs-server 1.2) on 127.0.0.1 for bench/compare.sh.
// Usage: node cometd-server.mjs [PORT] [TIMEOUT_MS]; prints "cometd listening on http://ADDR/cometd".
// Same connect hold as bayeuxd (--timeout, default 20000 ms) and CometD's other defaults. It
// serves long-polling only: this server has no websocket transport.
import http from 'node:http';
import cometd from 'cometd-nodejs-server';

const port = Number(process.argv[2] ?? 0);
const timeoutMs = Number(process.argv[3] ?? 20000);

const cometdServer = cometd.createCometDServer({ timeout: timeoutMs });
const server = http.createServer((req, res) => {
  if (req.url === '/cometd' || req.url.startsWith('/cometd/')) {
    cometdServer.handle(req, res);
  } else {
    res.statusCode = 404;
    res.end();
  }
});
server.listen(port, '127.0.0.1', () => {
  const { address, port: bound } = server.address();
  console.log(`cometd listening on http://${address}:${bound}/cometd`);
});
process.on('SIGTERM', () => process.exit(0));
