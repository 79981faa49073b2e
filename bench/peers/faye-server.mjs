// Faye 1.4 as a Bayeux server on 127.0.0.1 for bench/compare.sh.
// Usage: node faye-server.mjs [PORT] [TIMEOUT_MS]; prints "faye listening on http://ADDR/cometd".
// Same connect hold as bayeuxd (--timeout, default 20000 ms); Faye's default queueing.
import http from 'node:http';
import faye from 'faye';

const port = Number(process.argv[2] ?? 0);
const timeoutMs = Number(process.argv[3] ?? 20000);

const bayeux = new faye.NodeAdapter({ mount: '/cometd', timeout: timeoutMs / 1000 });
const server = http.createServer((req, res) => {
  res.statusCode = 404;
  res.end();
});
bayeux.attach(server);
server.listen(port, '127.0.0.1', () => {
  const { address, port: bound } = server.address();
  console.log(`faye listening on http://${address}:${bound}/cometd`);
});
process.on('SIGTERM', () => process.exit(0));
