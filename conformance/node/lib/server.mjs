// Harness that runs the bayeuxd binary for the conformance tests.
//
// startServer() spawns `bayeuxd --bind 127.0.0.1:<port> <options>`, waits for the
// single `bayeuxd listening on http://127.0.0.1:PORT/cometd` line on stdout and
// returns a handle with the URL. stop() sends SIGINT (SIGKILL after a grace
// period); restart() starts a new process on the same port, so a test can make
// the server "forget" every session while clients keep the same URL.

import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';

const DEFAULT_BIN = fileURLToPath(new URL('../../../target/debug/bayeuxd', import.meta.url));

/** Options every test server gets unless the test overrides them (milliseconds). */
export const DEFAULT_OPTIONS = Object.freeze({
  timeout: 2000,
  'max-interval': 3000,
  'sweep-period': 100,
});

const LISTENING_RE = /^bayeuxd listening on (https?:\/\/127\.0\.0\.1:(\d+)(\/\S*))\s*$/;
const START_DEADLINE_MS = 10000;
const STOP_GRACE_MS = 3000;
const STDERR_TAIL_BYTES = 64 * 1024;

/** Every process started by this module, so that none survives the test process. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/** Path of the server binary: $BAYEUXD_BIN, else <repo>/target/debug/bayeuxd. */
export function serverBinary() {
  return process.env.BAYEUXD_BIN || DEFAULT_BIN;
}

function checkBinary(bin) {
  try {
    accessSync(bin, fsConstants.X_OK);
  } catch {
    throw new Error(
      `bayeuxd binary not found or not executable at ${bin}.\n` +
      'Build it first with `cargo build -p bayeuxd` (from the repository root), ' +
      'or point BAYEUXD_BIN at a built binary.');
  }
}

/** Turns {timeout: 2000, 'max-interval': 3000} into ['--timeout', '2000', ...]. */
function toFlags(options) {
  const flags = [];
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined || value === null) continue;
    // An array is a repeated flag (--history A --history B).
    for (const one of Array.isArray(value) ? value : [value]) flags.push(`--${name}`, String(one));
  }
  return flags;
}

class ServerProcess {
  #child;
  #stderr = '';
  #exited;
  exitInfo = null;

  constructor(child) {
    this.#child = child;
    live.add(child);
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      this.#stderr += chunk;
      if (this.#stderr.length > STDERR_TAIL_BYTES) {
        this.#stderr = this.#stderr.slice(-STDERR_TAIL_BYTES);
      }
    });
  }

  get pid() { return this.#child.pid; }
  get stderr() { return this.#stderr; }
  get exited() { return this.#exited; }

  /** Resolves with the URL printed on stdout; rejects if the process dies or is silent. */
  async listening() {
    const child = this.#child;
    child.stdout.setEncoding('utf8');
    let buffer = '';
    return await new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn, value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn(value);
      };
      const timer = setTimeout(() => {
        finish(reject, new Error(
          `bayeuxd printed no listening line within ${START_DEADLINE_MS} ms; stdout so far: ` +
          `${JSON.stringify(buffer)}; stderr tail:\n${this.#stderr}`));
        child.kill('SIGKILL');
      }, START_DEADLINE_MS);
      child.stdout.on('data', (chunk) => {
        if (settled) return; // keep draining the pipe after the first line
        buffer += chunk;
        const newline = buffer.indexOf('\n');
        if (newline < 0) return;
        const line = buffer.slice(0, newline);
        const m = LISTENING_RE.exec(line);
        if (m) {
          finish(resolve, { url: m[1], port: Number(m[2]), path: m[3] });
        } else {
          finish(reject, new Error(
            `unexpected first stdout line from bayeuxd: ${JSON.stringify(line)}; ` +
            'expected "bayeuxd listening on http://127.0.0.1:PORT/cometd"'));
          child.kill('SIGKILL');
        }
      });
      this.#exited.then(({ code, signal }) => finish(reject, new Error(
        `bayeuxd exited (code ${code}, signal ${signal}) before listening; stderr tail:\n${this.#stderr}`)));
      child.once('error', (err) => finish(reject, err));
    });
  }

  /** SIGINT, then SIGKILL after the grace period (0: SIGKILL at once). Resolves {code, signal, forced}. */
  async stop(graceMs = STOP_GRACE_MS) {
    if (this.exitInfo) return { ...this.exitInfo, forced: false };
    if (graceMs === 0) {
      this.#child.kill('SIGKILL');
      return { ...(await this.#exited), forced: true };
    }
    this.#child.kill('SIGINT');
    let timer;
    const timedOut = new Promise((resolve) => { timer = setTimeout(() => resolve(null), graceMs); });
    const info = await Promise.race([this.#exited, timedOut]);
    clearTimeout(timer);
    if (info) return { ...info, forced: false };
    this.#child.kill('SIGKILL');
    const killed = await this.#exited;
    return { ...killed, forced: true };
  }
}

/**
 * A running bayeuxd. `url` is the Bayeux endpoint (http://127.0.0.1:PORT/cometd).
 * `options` are flag names without the leading dashes, merged over DEFAULT_OPTIONS
 * (pass a value of null to drop a default flag).
 */
export class BayeuxServer {
  bin;
  options;
  url = null;
  port = null;
  /** Exit information of every process this handle stopped, oldest first. */
  stops = [];
  #proc = null;

  constructor(options = {}, { bin = serverBinary(), env = {} } = {}) {
    this.bin = bin;
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.env = env;
  }

  get running() { return this.#proc !== null && this.#proc.exitInfo === null; }
  get stderr() { return this.#proc ? this.#proc.stderr : ''; }
  /** Pid of the current process (null before start). */
  get pid() { return this.#proc ? this.#proc.pid : null; }
  /** Origin of the listener (http://127.0.0.1:PORT), where /healthz and /readyz live. */
  get origin() { return this.url ? new URL(this.url).origin : null; }
  /** Resolves {code, signal} when the current process exits (whoever ended it). */
  get exited() {
    if (!this.#proc) return Promise.reject(new Error('server not started'));
    return this.#proc.exited;
  }

  /** Sends `signal` (e.g. 'SIGUSR1': drain) to the current process. */
  signal(signal) {
    if (!this.running) throw new Error(`cannot send ${signal}: bayeuxd is not running`);
    process.kill(this.#proc.pid, signal);
  }

  async #spawnOnce(port) {
    checkBinary(this.bin);
    const args = ['--bind', `127.0.0.1:${port}`, ...toFlags(this.options)];
    const child = spawn(this.bin, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.env },
    });
    const proc = new ServerProcess(child);
    const where = await proc.listening();
    return { proc, where };
  }

  /** Starts the server on `port` (0 = any free port). Retries a busy fixed port briefly. */
  async start(port = 0) {
    if (this.running) throw new Error('server already running');
    const deadline = Date.now() + START_DEADLINE_MS;
    for (let attempt = 0; ; attempt++) {
      let started;
      try {
        started = await this.#spawnOnce(port);
      } catch (err) {
        // A fixed port may still be held by the previous process for a moment.
        if (port === 0 || Date.now() > deadline || /not found or not executable/.test(err.message)) {
          throw err;
        }
        await new Promise((r) => setTimeout(r, Math.min(50 * (attempt + 1), 500)));
        continue;
      }
      const { proc, where } = started;
      this.#proc = proc;
      this.url = where.url;
      this.port = where.port;
      if (port !== 0 && where.port !== port) {
        await proc.stop();
        throw new Error(`asked bayeuxd for port ${port}, it listens on ${where.port}`);
      }
      return this;
    }
  }

  /** Stops the process (SIGINT, SIGKILL after grace). Returns {code, signal, forced}. */
  async stop(graceMs) {
    if (!this.#proc) return null;
    const proc = this.#proc;
    const info = await proc.stop(graceMs);
    this.stops.push({ ...info, stderr: proc.stderr });
    return info;
  }

  /**
   * Stops the server and starts a new process on the same port: every session is forgotten.
   * `crash: true` kills it with SIGKILL instead of a graceful SIGINT.
   */
  async restart({ crash = false } = {}) {
    const port = this.port;
    const info = await this.stop(crash ? 0 : undefined);
    await this.start(port);
    return info;
  }
}

/** Starts a server with the given option overrides and returns its handle. */
export async function startServer(options = {}, extra = {}) {
  const server = new BayeuxServer(options, extra);
  await server.start(extra.port ?? 0);
  return server;
}
