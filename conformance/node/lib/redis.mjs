// Real Redis for the cluster tests: Debian's `redis-server` (or $REDIS_SERVER), started by each
// test on a free loopback port, in a directory of its own, durable (append-only file), so that
// stop() and start() act like an outage of the same server: same port, same data. A Redis
// Cluster of N masters is N such processes joined by `redis-cli --cluster create`.
//
// Tests talk to Redis with command(), a raw RESP connection and a tiny parser, not with
// redis-cli: a test may poll Redis hundreds of times, and one process per poll would be slow
// and noisy. Every process is killed when its test ends (t.after) or, at the latest, when the
// test process exits (also on SIGINT/SIGTERM, and, where util-linux's `setpriv` exists, even
// when the test process is SIGKILLed: the kernel sends the child SIGKILL when its parent dies).

import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';

const START_DEADLINE_MS = 10000;
const STOP_GRACE_MS = 5000;
const COMMAND_TIMEOUT_MS = 5000;
const CLUSTER_DEADLINE_MS = 30000;
const LOG_TAIL_BYTES = 16 * 1024;
/** Redis Cluster nodes talk to each other on port + 10000 (the cluster bus). */
const BUS_OFFSET = 10000;
const SLOTS = 16384;

export const REDIS_MISSING =
  'redis-server not found: install Debian\'s redis-server (apt-get install redis-server)';

// ---------------------------------------------------------------------------
// Cleanup of everything started here, whatever way the test process ends.

/** Every process started here, so that none survives the test process. */
const live = new Set();
/** Every temporary directory made here, removed at exit. */
const dirs = new Set();

function killAll() {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
  for (const dir of dirs) {
    try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
  }
}
process.on('exit', killAll);
// A signal ends the process without 'exit'. Kill the children, then, when nobody else handles
// the signal (node:test's runner does, and exits, which runs killAll again), die of it as before.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, function onSignal() {
    killAll();
    if (process.listenerCount(signal) === 1) {
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    }
  });
}

// ---------------------------------------------------------------------------
// Binaries

/** `name` on $PATH (or `name` itself when it is a path), or null. */
function which(name) {
  const candidates = name.includes('/')
    ? [name]
    : (process.env.PATH || '').split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch { /* next */ }
  }
  return null;
}

/** Path of redis-server: $REDIS_SERVER, else on $PATH; a clear error when there is none. */
export function redisServerBinary() {
  const wanted = process.env.REDIS_SERVER || 'redis-server';
  const found = which(wanted);
  if (!found) throw new Error(`${REDIS_MISSING} (looked for ${wanted})`);
  return found;
}

/** Path of redis-cli: $REDIS_CLI, else next to $REDIS_SERVER, else on $PATH. */
export function redisCliBinary() {
  if (process.env.REDIS_CLI) {
    const found = which(process.env.REDIS_CLI);
    if (found) return found;
  }
  if (process.env.REDIS_SERVER?.includes('/')) {
    const found = which(join(dirname(process.env.REDIS_SERVER), 'redis-cli'));
    if (found) return found;
  }
  const found = which('redis-cli');
  if (!found) throw new Error(`redis-cli not found: ${REDIS_MISSING}, which brings redis-cli (or set REDIS_CLI)`);
  return found;
}

let pdeathsig;
/** ['setpriv', '--pdeathsig', 'KILL', '--'] when this machine's setpriv can do it, else []. */
function deathSignalPrefix() {
  if (pdeathsig === undefined) {
    const setpriv = which('setpriv');
    const probe = setpriv && spawnSync(setpriv, ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' });
    pdeathsig = probe && probe.status === 0 ? [setpriv, '--pdeathsig', 'KILL', '--'] : [];
  }
  return pdeathsig;
}

// ---------------------------------------------------------------------------
// Ports

/** Tries to listen on `port` (0: any) on loopback; resolves the port bound, or null if busy. */
function probePort(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(null));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      const { port: bound } = server.address();
      server.close(() => resolve(bound));
    });
  });
}

/**
 * A loopback port free now, not in `avoid` (then added to it, so that successive calls sharing
 * one `avoid` never answer the same port). With `bus: true` (a Cluster node) port + 10000 must
 * be free too, and a valid port: below 55536. Free "now" only: a port can still be taken before
 * redis-server binds it; startRedis() then retries with another one.
 */
export async function freePort({ bus = false, avoid = new Set() } = {}) {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = await probePort(0);
    if (port === null || avoid.has(port)) continue;
    if (!bus) {
      avoid.add(port);
      return port;
    }
    const busPort = port + BUS_OFFSET;
    if (busPort > 65535 || avoid.has(busPort)) continue;
    if ((await probePort(busPort)) === null) continue;
    avoid.add(port).add(busPort);
    return port;
  }
  throw new Error('no free loopback port found');
}

// ---------------------------------------------------------------------------
// RESP

/** An error reply (`-ERR ...`, `-MOVED 3999 127.0.0.1:6381`): `code` is its first word. */
export class RedisError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RedisError';
    this.code = message.split(' ', 1)[0];
  }
}

/** Encodes one command as a RESP array of bulk strings (strings, numbers or Buffers). */
function encode(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg), 'utf8');
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * One RESP value at byte `at`: {value, end}, or null while the buffer is incomplete. RESP2
 * (what Redis speaks unless HELLO 3): simple string -> string, error -> RedisError (a value:
 * inside an array, e.g. EXEC's, it stays there), integer -> number (BigInt past 2^53), bulk
 * string -> string (utf8) or null, array -> array or null. The few RESP3 types, should a test
 * send HELLO 3, map to the obvious JavaScript values (map -> Map).
 */
export function parseReply(buffer, at = 0) {
  const lineEnd = buffer.indexOf('\r\n', at);
  if (lineEnd < 0) return null;
  const line = buffer.toString('utf8', at + 1, lineEnd);
  const next = lineEnd + 2;
  const bulk = () => {
    const length = Number(line);
    if (length < 0) return { value: null, end: next };
    if (buffer.length < next + length + 2) return null;
    return { value: buffer.toString('utf8', next, next + length), end: next + length + 2 };
  };
  const aggregate = (count) => {
    if (count < 0) return { value: null, end: next };
    const items = [];
    let cursor = next;
    for (let i = 0; i < count; i++) {
      const item = parseReply(buffer, cursor);
      if (!item) return null;
      items.push(item.value);
      cursor = item.end;
    }
    return { value: items, end: cursor };
  };
  switch (String.fromCharCode(buffer[at])) {
    case '+': return { value: line, end: next };
    case '-': return { value: new RedisError(line), end: next };
    case ':': case '(': {
      const big = BigInt(line);
      const safe = big <= BigInt(Number.MAX_SAFE_INTEGER) && big >= BigInt(Number.MIN_SAFE_INTEGER);
      return { value: safe ? Number(big) : big, end: next };
    }
    case '$': return bulk();
    case '*': case '~': case '>': return aggregate(Number(line));
    // RESP3
    case '_': return { value: null, end: next };
    case '#': return { value: line === 't', end: next };
    case ',': return { value: Number(line.replace('inf', 'Infinity')), end: next };
    case '!': { const r = bulk(); return r && { value: new RedisError(r.value), end: r.end }; }
    case '=': { const r = bulk(); return r && { value: r.value.slice(4), end: r.end }; } // "txt:"
    case '%': {
      const r = aggregate(Number(line) * 2);
      if (!r) return null;
      const map = new Map();
      for (let i = 0; i < r.value.length; i += 2) map.set(r.value[i], r.value[i + 1]);
      return { value: map, end: r.end };
    }
    default:
      return { value: new RedisError(`unexpected RESP type ${JSON.stringify(String.fromCharCode(buffer[at]))}`), end: buffer.length };
  }
}

/**
 * Sends `commands` (arrays of arguments) to 127.0.0.1:`port` on one fresh connection, all at
 * once, and resolves their parsed replies in order (see parseReply), an error reply as a
 * RedisError value: what MULTI ... EXEC, or ASKING before a command, need. Rejects with the
 * socket error (ECONNREFUSED...) when Redis is not there, and after `timeout` ms without every
 * reply (blocking commands: pass a longer one). A fresh connection each time keeps this
 * stateless: it works the same across a stop()/start(), and nothing is left open at the end.
 */
export function pipeline(port, commands, { timeout = COMMAND_TIMEOUT_MS } = {}) {
  const what = commands.map((args) => args[0]).join(' ');
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buffer = Buffer.alloc(0);
    let cursor = 0;
    const replies = [];
    let settled = false;
    const finish = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      fn(value);
    };
    const timer = setTimeout(() => finish(reject,
      new Error(`redis :${port} ${what}: no whole reply within ${timeout} ms`)), timeout);
    socket.setNoDelay(true);
    socket.on('connect', () => socket.write(Buffer.concat(commands.map(encode))));
    socket.on('data', (chunk) => {
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
      for (;;) {
        const parsed = parseReply(buffer, cursor);
        if (!parsed) return;
        replies.push(parsed.value);
        cursor = parsed.end;
        if (replies.length === commands.length) {
          finish(resolve, replies);
          return;
        }
      }
    });
    socket.on('error', (err) => finish(reject, err));
    socket.on('close', () => finish(reject, new Error(`redis :${port} ${what}: connection closed before a reply`)));
  });
}

/**
 * Sends one command (strings, numbers, Buffers) to 127.0.0.1:`port`; resolves the parsed reply,
 * rejects with a RedisError on an error reply (`err.code`: 'WRONGTYPE', 'MOVED'...).
 */
export async function command(port, args, options) {
  const [reply] = await pipeline(port, [args], options);
  if (reply instanceof RedisError) throw reply;
  return reply;
}

/** INFO / CLUSTER INFO text -> {field: 'value'} (values stay strings, as Redis sends them). */
export function parseInfo(text) {
  const fields = {};
  for (const line of String(text).split('\r\n')) {
    if (!line || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// One redis-server process

/** One redis-server process on a fixed port and directory, restartable with the same data. */
export class RedisProcess {
  port;
  dir;
  /** Exit information of every process this handle saw end, oldest first: {code, signal}. */
  exits = [];
  #child = null;
  #exited = null;
  #log = '';
  #args;

  constructor(port, dir, args = []) {
    this.port = port;
    this.dir = dir;
    this.#args = args;
  }

  get url() { return `redis://127.0.0.1:${this.port}`; }
  get running() { return this.#child !== null; }
  get pid() { return this.#child?.pid ?? null; }
  /** The last 16 KiB of what redis-server printed (its log goes to stdout), across restarts. */
  get log() { return this.#log; }

  /** Starts it (again, on the same port and directory) and resolves `this` once it answers PING. */
  async start() {
    if (this.#child) throw new Error(`redis :${this.port} already running`);
    const bin = redisServerBinary();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--protected-mode', 'no',
      '--daemonize', 'no', '--dir', this.dir, '--save', '', '--appendonly', 'yes', ...this.#args];
    const [wrapper, ...prefix] = deathSignalPrefix();
    const child = wrapper
      ? spawn(wrapper, [...prefix, bin, ...args], { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(bin, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    this.#child = child;
    // A Redis someone forgot to stop must not keep the test process alive (it is killed at exit).
    child.unref();
    child.stdout.unref();
    child.stderr.unref();
    this.#log += `--- redis-server :${this.port} started (pid ${child.pid})\n`;
    const keep = (chunk) => { this.#log = (this.#log + chunk).slice(-LOG_TAIL_BYTES); };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    this.#exited = new Promise((resolve) => {
      let ended = false;
      const done = (code, signal) => {
        if (ended) return;
        ended = true;
        live.delete(child);
        if (this.#child === child) this.#child = null;
        const info = { code, signal };
        this.exits.push(info);
        resolve(info);
      };
      child.once('exit', done);
      // A spawn that failed emits 'error' and maybe no 'exit'.
      child.once('error', (err) => { keep(`spawn: ${err.message}\n`); done(null, null); });
    });
    const deadline = Date.now() + START_DEADLINE_MS;
    let exitInfo = null;
    this.#exited.then((info) => { exitInfo = info; });
    for (;;) {
      if (exitInfo) {
        throw new Error(`redis-server on :${this.port} exited (code ${exitInfo.code}, signal ` +
          `${exitInfo.signal}) before answering PING; log tail:\n${this.#log.slice(-4000)}`);
      }
      let pong = false;
      try {
        pong = (await command(this.port, ['PING'], { timeout: 1000 })) === 'PONG';
      } catch { /* not listening yet, or still loading its append-only file */ }
      if (pong) {
        // Ours, not another Redis that took the port (ours then fails to bind, a moment later).
        const pid = Number(parseInfo(await command(this.port, ['INFO', 'server'])).process_id);
        if (pid === child.pid) return this;
        await this.kill();
        throw new Error(`redis-server on :${this.port}: the port is held by another Redis (pid ${pid}): ` +
          'Address already in use');
      }
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`redis-server on :${this.port} did not answer PING within ${START_DEADLINE_MS} ms; ` +
          `log tail:\n${this.#log.slice(-4000)}`);
      }
      await sleep(exitInfo ? 0 : 20);
    }
  }

  /**
   * SIGTERM: Redis fsyncs its append-only file and exits, so everything acknowledged before is
   * there on start(). SIGKILL if it has not exited after `graceMs`. Resolves {code, signal,
   * forced}, or null if it was not running.
   */
  async stop(graceMs = STOP_GRACE_MS) {
    const child = this.#child;
    if (!child) return null;
    const exited = this.#exited;
    child.ref(); // so that a script awaiting only this lives until the exit
    child.kill('SIGTERM');
    let timer;
    const forced = await Promise.race([
      exited.then(() => false),
      new Promise((resolve) => { timer = setTimeout(() => resolve(true), graceMs); }),
    ]);
    clearTimeout(timer);
    if (forced) child.kill('SIGKILL');
    return { ...(await exited), forced };
  }

  /**
   * SIGKILL (a crash of the process). Every acknowledged write is still there on start(): Redis
   * write()s its append-only file before it replies, only the fsync waits (appendfsync
   * everysec), and the kernel keeps what was written. Resolves {code, signal}, or null if it
   * was not running.
   */
  async kill() {
    const child = this.#child;
    if (!child) return null;
    const exited = this.#exited;
    child.ref();
    child.kill('SIGKILL');
    return await exited;
  }

  /** One command (strings, numbers, Buffers); resolves the parsed reply, rejects on an error reply. */
  command(...args) {
    return command(this.port, args);
  }

  /** Several commands on one connection, e.g. pipeline(['MULTI'], ['INCR', 'n'], ['EXEC']); see pipeline(). */
  pipeline(...commands) {
    return pipeline(this.port, commands);
  }

  /** INFO [section] as {field: 'value'}, e.g. (await redis.info('persistence')).aof_enabled === '1'. */
  async info(section) {
    return parseInfo(await command(this.port, section ? ['INFO', section] : ['INFO']));
  }
}

function freshDir(label) {
  const dir = mkdtempSync(join(tmpdir(), `bayeux-redis-${label}-`));
  dirs.add(dir);
  return dir;
}

function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** Starts `make(port)` on a free port; on "Address already in use" (the port was taken between
 * the probe and the bind) tries another port, a few times. */
async function startOnFreePort(make, { bus = false, avoid = new Set() } = {}) {
  for (let attempt = 1; ; attempt++) {
    const redis = make(await freePort({ bus, avoid }));
    try {
      return await redis.start();
    } catch (err) {
      if (attempt >= 5 || !/Address already in use/.test(err.message)) throw err;
    }
  }
}

/**
 * A standalone Redis on a free loopback port, in a fresh temporary directory, durable
 * (--appendonly yes --save ""). `options.args`: more redis-server arguments (e.g.
 * ['--appendfsync', 'always']). Resolves a RedisProcess:
 *   {port, url: 'redis://127.0.0.1:PORT', dir, running, pid, log, exits,
 *    start(), stop(graceMs), kill(), command(...args), pipeline(...commands), info(section)}
 * stop() then start() is an outage of the same server (same port, same data). With `t`
 * (node:test), it is killed and its directory removed when the test ends.
 */
export async function startRedis(t, { args = [] } = {}) {
  redisServerBinary(); // the clear error before anything else
  const dir = freshDir('standalone');
  let redis = null;
  t?.after(async () => {
    await redis?.kill();
    removeDir(dir);
  });
  await startOnFreePort((port) => { redis = new RedisProcess(port, dir, args); return redis; });
  return redis;
}

// ---------------------------------------------------------------------------
// Redis Cluster

async function clusterReady(node, masters) {
  const info = parseInfo(await node.command('CLUSTER', 'INFO').catch(() => ''));
  return info.cluster_state === 'ok' && Number(info.cluster_known_nodes) === masters &&
    Number(info.cluster_slots_ok) === SLOTS;
}

/** Waits until every node says cluster_state:ok, knows every node and serves all 16384 slots. */
async function waitClusterOk(nodes, deadlineMs = CLUSTER_DEADLINE_MS) {
  const deadline = Date.now() + deadlineMs;
  for (const node of nodes) {
    while (!(await clusterReady(node, nodes.length))) {
      if (Date.now() > deadline) {
        const info = await node.command('CLUSTER', 'INFO').catch((err) => err.message);
        throw new Error(`Redis Cluster not ok on :${node.port} after ${deadlineMs} ms:\n${info}\n` +
          `log tail:\n${node.log.slice(-3000)}`);
      }
      await sleep(50);
    }
  }
}

function run(bin, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk) => { output += chunk; });
    child.stderr.on('data', (chunk) => { output += chunk; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); live.delete(child); reject(err); });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, output });
    });
  });
}

/**
 * A Redis Cluster of `masters` masters (no replicas) on loopback, each a RedisProcess (own
 * port, bus port + 10000, own directory, durable, --cluster-node-timeout 2000) joined by
 * `redis-cli --cluster create`, resolved once every node says cluster_state:ok, knows every
 * other and serves all 16384 slots. Resolves:
 *   {nodes, ports, url: 'redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...',
 *    command(...args)  (sent to the first node, following MOVED/ASK redirects),
 *    nodeOf(key)       (the node serving `key`'s slot),
 *    stopAll()         (SIGTERM every node; directories kept: node.start() or startAll() again),
 *    startAll()        (starts the stopped nodes, resolves when the cluster is ok again)}
 * `options.args`: more redis-server arguments for every node.
 */
export async function startRedisCluster(t, { masters = 3, args = [] } = {}) {
  redisServerBinary();
  const cli = redisCliBinary();
  const nodes = [];
  const nodeDirs = [];
  const cleanUp = async () => {
    await Promise.all(nodes.map((node) => node.kill()));
    for (const dir of nodeDirs) removeDir(dir);
  };
  t?.after(cleanUp);
  try {
    return await createCluster(nodes, nodeDirs, masters, args, cli);
  } catch (err) {
    await cleanUp(); // a half-made cluster is of no use to anyone
    throw err;
  }
}

async function createCluster(nodes, nodeDirs, masters, args, cli) {
  const clusterArgs = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
    '--cluster-node-timeout', '2000', ...args];
  // One after the other (a start takes a few ms), so that no two nodes probe the same port.
  const taken = new Set();
  for (let i = 0; i < masters; i++) {
    const dir = freshDir(`cluster${i}`);
    nodeDirs.push(dir);
    await startOnFreePort((port) => {
      nodes[i] = new RedisProcess(port, dir, clusterArgs);
      return nodes[i];
    }, { bus: true, avoid: taken });
  }
  const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
  const created = await run(cli, ['--cluster', 'create', ...addresses, '--cluster-replicas', '0',
    '--cluster-yes'], CLUSTER_DEADLINE_MS);
  if (created.code !== 0) {
    throw new Error(`redis-cli --cluster create ${addresses.join(' ')} failed (code ${created.code}, ` +
      `signal ${created.signal}):\n${created.output.replace(/\x1b\[[0-9;]*m/g, '')}`);
  }
  await waitClusterOk(nodes);

  const byAddress = (host, port) => nodes.find((n) => n.port === Number(port) && host === '127.0.0.1');
  /** Follows MOVED and ASK (the latter with ASKING first), a few hops. */
  const clusterCommand = async (...commandArgs) => {
    let node = nodes.find((n) => n.running) ?? nodes[0];
    let asking = false;
    for (let hop = 0; ; hop++) {
      try {
        if (!asking) return await node.command(...commandArgs);
        const [, reply] = await node.pipeline(['ASKING'], commandArgs); // ASKING holds for one connection
        if (reply instanceof RedisError) throw reply;
        return reply;
      } catch (err) {
        const redirect = err instanceof RedisError && /^(MOVED|ASK) \d+ ([\d.]+):(\d+)$/.exec(err.message);
        if (!redirect || hop >= 4) throw err;
        const target = byAddress(redirect[2], redirect[3]);
        if (!target) throw err;
        node = target;
        asking = redirect[1] === 'ASK';
      }
    }
  };
  const nodeOf = async (key) => {
    const node = nodes.find((n) => n.running) ?? nodes[0];
    const slot = await node.command('CLUSTER', 'KEYSLOT', key);
    const ranges = await node.command('CLUSTER', 'SLOTS');
    const range = ranges.find(([from, to]) => slot >= from && slot <= to);
    return range && byAddress(range[2][0], range[2][1]);
  };
  return {
    nodes,
    ports: nodes.map((n) => n.port),
    url: `redis+cluster://${addresses.join(',')}`,
    command: clusterCommand,
    nodeOf,
    async stopAll() {
      return await Promise.all(nodes.map((node) => node.stop()));
    },
    async startAll() {
      await Promise.all(nodes.filter((n) => !n.running).map((n) => n.start()));
      await waitClusterOk(nodes);
    },
  };
}
