// Harness that runs one of the example servers of examples/ (built by
// `cargo build -p bayeux-examples --examples` into target/debug/examples/<name>).
//
// Every example listens on $BIND and prints `listening on http://ADDR/cometd` once ready.
// startExample(name, {env}) spawns it with BIND=127.0.0.1:0 (any free port on loopback),
// waits for that line and returns a handle with the endpoint URL, the origin (for the
// example's own routes and pages), and stop() (SIGINT, SIGKILL after a grace period).
// Every line the example prints after the listening line is kept in `stdout` (the
// `embedded` example logs session events there); stderr is kept too, for failure messages.

import { spawn } from 'node:child_process';
import { accessSync, statSync, constants as fsConstants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

/** Where the example binaries are: $EXAMPLES_DIR, else <repo>/target/debug/examples. */
export const EXAMPLES_DIR = process.env.EXAMPLES_DIR ||
  fileURLToPath(new URL('../../../target/debug/examples', import.meta.url));

const LISTENING_RE = /^listening on (http:\/\/127\.0\.0\.1:(\d+)(\/cometd))\s*$/;
const START_DEADLINE_MS = 10000;
const STOP_GRACE_MS = 3000;
const TAIL_BYTES = 64 * 1024;

/** Every example process started by this module, so that none survives the test process. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/** Absolute path of the example binary `name`. */
export function exampleBinary(name) {
  return join(EXAMPLES_DIR, name);
}

/** Path, size and mtime of the example binary, for the test log. */
export function exampleIdentity(name) {
  const bin = exampleBinary(name);
  try {
    const st = statSync(bin);
    return `${bin} (${st.size} bytes, modified ${st.mtime.toISOString()})`;
  } catch {
    return `${bin} (missing)`;
  }
}

/** A running example server. */
export class ExampleServer {
  name;
  bin;
  /** The Bayeux endpoint: http://127.0.0.1:PORT/cometd */
  url = null;
  /** http://127.0.0.1:PORT */
  origin = null;
  port = null;
  /** Lines printed on stdout after the listening line. */
  lines = [];
  exitInfo = null;
  #child = null;
  #stderr = '';
  #exited = null;

  constructor(name) {
    this.name = name;
    this.bin = exampleBinary(name);
  }

  get stderr() { return this.#stderr; }
  get running() { return this.#child !== null && this.exitInfo === null; }

  async start(env = {}) {
    try {
      accessSync(this.bin, fsConstants.X_OK);
    } catch {
      throw new Error(`example binary not found or not executable at ${this.bin}. ` +
        'Build the examples first with `cargo build -p bayeux-examples --examples` ' +
        '(from the repository root), or point EXAMPLES_DIR at the built binaries.');
    }
    const child = spawn(this.bin, [], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, BIND: '127.0.0.1:0', ...env },
    });
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
      this.#stderr = (this.#stderr + chunk).slice(-TAIL_BYTES);
    });
    child.stdout.setEncoding('utf8');

    const where = await new Promise((resolve, reject) => {
      let buffer = '';
      let found = null;
      const finish = (fn, value) => {
        if (found !== null) return;
        found = value ?? false;
        clearTimeout(timer);
        fn(value);
      };
      const timer = setTimeout(() => {
        finish(reject, new Error(`example ${this.name} printed no listening line within ` +
          `${START_DEADLINE_MS} ms; stdout so far: ${JSON.stringify(buffer)}; stderr:\n${this.#stderr}`));
        child.kill('SIGKILL');
      }, START_DEADLINE_MS);
      child.stdout.on('data', (chunk) => {
        buffer += chunk;
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (found !== null) {
            this.lines.push(line);
            continue;
          }
          const m = LISTENING_RE.exec(line);
          if (m) {
            finish(resolve, { url: m[1], port: Number(m[2]) });
          } else {
            finish(reject, new Error(`unexpected first stdout line from example ${this.name}: ` +
              `${JSON.stringify(line)}; expected "listening on http://127.0.0.1:PORT/cometd"`));
            child.kill('SIGKILL');
          }
        }
      });
      this.#exited.then(({ code, signal }) => finish(reject, new Error(
        `example ${this.name} exited (code ${code}, signal ${signal}) before listening; stderr:\n${this.#stderr}`)));
      child.once('error', (err) => finish(reject, err));
    });
    this.url = where.url;
    this.port = where.port;
    this.origin = `http://127.0.0.1:${where.port}`;
    return this;
  }

  /** SIGKILL at once: a crash. Resolves {code, signal}. */
  async kill() {
    if (!this.#child) return null;
    if (!this.exitInfo) this.#child.kill('SIGKILL');
    return this.#exited;
  }

  /** SIGINT, then SIGKILL after the grace period. Resolves {code, signal, forced}. */
  async stop(graceMs = STOP_GRACE_MS) {
    if (!this.#child) return null;
    if (this.exitInfo) return { ...this.exitInfo, forced: false };
    this.#child.kill('SIGINT');
    let timer;
    const timedOut = new Promise((resolve) => { timer = setTimeout(() => resolve(null), graceMs); });
    const info = await Promise.race([this.#exited, timedOut]);
    clearTimeout(timer);
    if (info) return { ...info, forced: false };
    this.#child.kill('SIGKILL');
    return { ...(await this.#exited), forced: true };
  }
}

/** Starts the example `name` with extra environment variables; resolves its handle. */
export async function startExample(name, { env = {} } = {}) {
  const server = new ExampleServer(name);
  await server.start(env);
  return server;
}
