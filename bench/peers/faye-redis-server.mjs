// Faye 1.4 on the faye-redis engine, as one node of a Faye cluster sharing a Redis, for
// bench/cluster.sh. Usage: node faye-redis-server.mjs PORT TIMEOUT_MS REDIS_PORT; prints
// "faye-redis listening on http://ADDR/cometd". faye-redis keeps each client's queue in Redis
// (one list per client) and wakes the node holding the client with Redis pub/sub.
import http from 'node:http';
import faye from 'faye';
import fayeRedis from 'faye-redis';

const port = Number(process.argv[2] ?? 0);
const timeoutMs = Number(process.argv[3] ?? 20000);
const redisPort = Number(process.argv[4] ?? 6379);

const bayeux = new faye.NodeAdapter({
  mount: '/cometd',
  timeout: timeoutMs / 1000,
  engine: { type: fayeRedis, host: '127.0.0.1', port: redisPort },
});
const server = http.createServer((req, res) => {
  res.statusCode = 404;
  res.end();
});
bayeux.attach(server);
server.listen(port, '127.0.0.1', () => {
  const { address, port: bound } = server.address();
  console.log(`faye-redis listening on http://${address}:${bound}/cometd`);
});
process.on('SIGTERM', () => process.exit(0));
