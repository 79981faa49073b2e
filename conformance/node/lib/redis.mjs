// Real Redis for the cluster tests: Debian's `redis-server` (or $REDIS_SERVER), started by each
// test on a free loopback port, in a directory of its own, durable (append-only file), so that
// stop() and start() act like an outage of the same server. A Redis Cluster of N masters is N
// such processes joined by `redis-cli --cluster create`. Everything is killed when the test
// ends (t.after) or, at the latest, when the test process exits.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const START_DEADLINE_MS = 10000;
const STOP_GRACE_MS = 5000;

/** Every process started here, so that none survives the test process. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

function binary() {
  return process.env.REDIS_SERVER || 'redis-server';
}

/** A loopback port free now (for a Cluster node, its bus port, +10000, free too). */
async function freePort({ cluster = false } = {}) {
  const probe = (port) => new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(null));
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address();
      server.close(() => resolve(bound));
    });
  });
  for (;;) {
    const port = await probe(0);
    if (port === null) continue;
    if (!cluster) return port;
    if (port < 55000 && (await probe(port + 10000)) !== null) return port;
  }
}

/** Sends one command over a fresh connection; resolves the parsed RESP reply. */
export function command(port, args) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis :${port} ${args[0]}: no answer`));
    }, 3000);
    socket.on('connect', () => {
      let request = `*${args.length}\r\n`;
      for (const arg of args) {
        const text = String(arg);
        request += `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
      }
      socket.write(request);
    });
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const parsed = parse(buffer, 0);
      if (parsed) {
        clearTimeout(timer);
        socket.end();
        if (parsed.value instanceof Error) reject(parsed.value);
        else resolve(parsed.value);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** One RESP2 value at `at`: {value, end}, or null while incomplete. */
function parse(buffer, at) {
  const lineEnd = buffer.indexOf('\r\n', at);
  if (lineEnd < 0) return null;
  const line = buffer.toString('utf8', at + 1, lineEnd);
  const next = lineEnd + 2;
  switch (String.fromCharCode(buffer[at])) {
    case '+': return { value: line, end: next };
    case '-': return { value: new Error(line), end: next };
    case ':': return { value: Number(line), end: next };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buffer.length < next + length + 2) return null;
      return { value: buffer.toString('utf8', next, next + length), end: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items = [];
      let cursor = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buffer, cursor);
        if (!item) return null;
        items.push(item.value);
        cursor = item.end;
      }
      return { value: items, end: cursor };
    }
    default: return { value: new Error(`unexpected RESP type ${buffer[at]}`), end: buffer.length };
  }
}

/** One redis-server process, restartable on the same port with the same data. */
class RedisProcess {
  port;
  dir;
  #child = null;
  #stderr = '';
  #extra;

  constructor(port, dir, extra) {
    this.port = port;
    this.dir = dir;
    this.#extra = extra;
  }

  get url() { return `redis://127.0.0.1:${this.port}`; }
  get running() { return this.#child !== null; }

  /** Starts it (again) and resolves once it answers PING. */
  async start() {
    if (this.#child) throw new Error(`redis :${this.port} already running`);
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'yes', '--protected-mode', 'no', '--dir', this.dir, ...this.#extra];
    const child = spawn(binary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const failed = new Promise((_, reject) => {
      child.once('error', (err) => reject(new Error(err.code === 'ENOENT'
        ? 'redis-server not found: install Debian\'s redis-server (apt-get install redis-server)'
        : `redis-server: ${err.message}`)));
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => { this.#stderr = (this.#stderr + chunk).slice(-8192); });
    child.once('exit', () => {
      live.delete(child);
      if (this.#child === child) this.#child = null;
    });
    live.add(child);
    this.#child = child;
    const deadline = Date.now() + START_DEADLINE_MS;
    for (;;) {
      try {
        const pong = await Promise.race([command(this.port, ['PING']), failed]);
        if (pong === 'PONG') return this;
      } catch (err) {
        if (/not found|redis-server:/.test(err.message)) throw err;
      }
      if (Date.now() > deadline) {
        throw new Error(`redis on :${this.port} did not answer within ${START_DEADLINE_MS} ms\n${this.#stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** SIGTERM (it finishes writing its append-only file), SIGKILL after a grace. */
  async stop() {
    const child = this.#child;
    if (!child) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  /** SIGKILL. */
  async kill() {
    const child = this.#child;
    if (!child) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** One command; resolves the parsed reply. */
  command(...args) {
    return command(this.port, args);
  }
}

function freshDir() {
  return mkdtempSync(join(tmpdir(), 'bayeux-redis-'));
}

/**
 * A standalone Redis on a free port. Resolves {port, url, stop(), start(), kill(), command()}:
 * stop() then start() is an outage of the same server (same port, same data).
 */
export async function startRedis(t) {
  const port = await freePort();
  const dir = freshDir();
  const redis = new RedisProcess(port, dir, []);
  t?.after(async () => {
    await redis.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  return await redis.start();
}

/**
 * A Redis Cluster of `masters` masters (no replicas) on loopback, ready (cluster_state:ok).
 * Resolves {nodes, ports, url: 'redis+cluster://127.0.0.1:P1,...', stopAll()}.
 */
export async function startRedisCluster(t, { masters = 3 } = {}) {
  const nodes = [];
  const dirs = [];
  const stopAll = async () => {
    for (const node of nodes) await node.kill();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  };
  t?.after(stopAll);
  for (let i = 0; i < masters; i++) {
    const port = await freePort({ cluster: true });
    const dir = freshDir();
    dirs.push(dir);
    const node = new RedisProcess(port, dir, ['--cluster-enabled', 'yes',
      '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000']);
    nodes.push(node);
    await node.start();
  }
  const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...addresses,
    '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 20000 });
  if (created.status !== 0) {
    throw new Error(`redis-cli --cluster create failed: ${created.stdout}\n${created.stderr}`);
  }
  const deadline = Date.now() + 20000;
  for (const node of nodes) {
    for (;;) {
      const info = await node.command('CLUSTER', 'INFO').catch(() => '');
      if (String(info).includes('cluster_state:ok')) break;
      if (Date.now() > deadline) throw new Error(`cluster not ok on :${node.port}: ${info}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return {
    nodes,
    ports: nodes.map((n) => n.port),
    url: `redis+cluster://${addresses.join(',')}`,
    stopAll,
  };
}
