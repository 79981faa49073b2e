// What moving a session costs: a raw long-polling client whose every connect (advice timeout
// 0, answered at once) goes to the other of two bayeuxd nodes on one Redis, as behind a
// round-robin balancer with no affinity, against the same client whose connects all stay on
// one node (sticky). Each connect that lands on the other node moves the session there.
//
// Builds are compared side by side in one run: for each run, each build in turn gets a fresh
// Redis and two fresh nodes. Servers and Redis are pinned to CPU $SERVER_CPU (default 0); pin
// this script to another (`taskset -c 1 node bench/move.mjs ...`).
// Usage: node bench/move.mjs [RUNS] [CONNECTS] label=/path/to/bayeuxd [label=/path ...]
// Prints one JSON line per run and build, then the medians of the runs' p50 and p99 (ms).
import { spawn } from 'node:child_process';
import { startRedis } from '../conformance/node/lib/redis.mjs';
import { post } from './raw-post.mjs';

const [runsArg, connectsArg, ...builds] = process.argv.slice(2);
const RUNS = Number(runsArg || 3);
const CONNECTS = Number(connectsArg || 500);
const SERVER_CPU = process.env.SERVER_CPU || '0';
if (builds.length === 0) {
  console.error('usage: node bench/move.mjs RUNS CONNECTS label=/path/to/bayeuxd ...');
  process.exit(2);
}

function startNode(binary, redisUrl, name) {
  const child = spawn('taskset', ['-c', SERVER_CPU, binary, '--bind', '127.0.0.1:0',
    '--backplane', redisUrl, '--node-name', name], { env: { ...process.env, RUST_LOG: 'warn' } });
  let out = '';
  return new Promise((resolve, reject) => {
    const seen = (chunk) => {
      out += chunk;
      const url = out.match(/listening on (http:\/\/\S+)/)?.[1];
      if (url) resolve({ url, child });
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    child.on('exit', (code) => reject(new Error(`${binary} exited (${code}): ${out}`)));
    setTimeout(() => reject(new Error(`${binary} did not start: ${out}`)), 10000);
  });
}

/** A POST that must be answered 200. */
async function post200(url, messages, cookie) {
  const res = await post(url, messages, cookie);
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
  return res;
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** Milliseconds per immediate connect, `CONNECTS` of them, each to `urls[i % urls.length]`. */
async function connects(urls) {
  const hs = await post200(urls[0], [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] }]);
  const clientId = hs.body[0].clientId;
  const times = [];
  for (let i = 0; i < CONNECTS + 20; i++) {
    const began = process.hrtime.bigint();
    const reply = await post200(urls[i % urls.length], [{ channel: '/meta/connect', clientId, connectionType: 'long-polling', advice: { timeout: 0 } }], hs.cookie);
    const ms = Number(process.hrtime.bigint() - began) / 1e6;
    if (reply.body[0].successful !== true) throw new Error(JSON.stringify(reply.body));
    if (i >= 20) times.push(ms); // the first few warm connections and caches up
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 0.5), p99: percentile(times, 0.99) };
}

const results = {};
for (let run = 1; run <= RUNS; run++) {
  for (const build of builds) {
    const [label, binary] = build.split('=');
    const redis = await startRedis(null);
    const nodes = [];
    try {
      nodes.push(await startNode(binary, redis.url, 'a'), await startNode(binary, redis.url, 'b'));
      await new Promise((resolve) => setTimeout(resolve, 500));
      const sticky = await connects([nodes[0].url]);
      const moving = await connects([nodes[0].url, nodes[1].url]);
      const line = { run, label, connects: CONNECTS, sticky, moving };
      console.log(JSON.stringify(line));
      (results[label] ??= []).push(line);
    } finally {
      for (const node of nodes) node.child.kill('SIGKILL');
      await redis.kill();
    }
  }
}
console.log('\n| build | sticky p50 | sticky p99 | moving p50 | moving p99 |\n|---|---:|---:|---:|---:|');
for (const [label, lines] of Object.entries(results)) {
  const m = (f) => median(lines.map(f)).toFixed(2);
  console.log(`| ${label} | ${m((l) => l.sticky.p50)} | ${m((l) => l.sticky.p99)} | ${m((l) => l.moving.p50)} | ${m((l) => l.moving.p99)} |`);
}
