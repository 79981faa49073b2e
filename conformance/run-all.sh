#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: formatting and lints, Rust unit and wire
# tests, then the official CometD JavaScript client against bayeuxd in Node and in headless
# Chromium. Installs what it needs: the npm packages of conformance/node and conformance/browser,
# and, when missing and running as root on Debian, Node.js, Chromium and Redis (the cluster
# tests start their own redis-server processes on free ports; no system service is used).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing Node.js and npm (Debian packages)"
    apt-get update -qq && apt-get install -y -qq nodejs npm
  else
    echo "Node.js and npm are needed for the official-client suite: install them (e.g. apt-get install nodejs npm)" >&2
    exit 1
  fi
fi

if ! command -v chromium >/dev/null 2>&1 && [ -z "${CHROMIUM_BIN:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing Chromium (Debian package) for the browser suite"
    apt-get update -qq && apt-get install -y -qq chromium
  else
    echo "Chromium is needed for the browser suite: install it (e.g. apt-get install chromium) or set CHROMIUM_BIN" >&2
    exit 1
  fi
fi

# redis-cli (Debian's redis-tools, which redis-server depends on) joins the Redis Cluster nodes.
if { ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; } && [ -z "${REDIS_SERVER:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing Redis (Debian package, with redis-cli) for the cluster tests"
    apt-get update -qq && apt-get install -y -qq redis-server
  else
    echo "Redis is needed for the cluster tests: install it (e.g. apt-get install redis-server) or set REDIS_SERVER" >&2
    exit 1
  fi
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "building bayeuxd, the examples and self-signed-cert (the wire tests and the JS suites run the real binaries)"
cargo build -p bayeuxd -p bayeux-examples -p bayeux-conformance --examples --bins --quiet
export BAYEUXD_BIN="$PWD/target/debug/bayeuxd"

step "the reference peers (bench/peers: Faye, cometd-nodejs-server) the Rust client is tested against"
(
  cd bench/peers
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
)

step "cargo test (unit, engine scenarios, wire conformance over HTTP)"
cargo test --workspace

step "official CometD client in Node (conformance/node)"
(
  cd conformance/node
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  npm test
)

step "the chat example's page dependencies (examples/chat)"
npm install --prefix examples/chat --no-audit --no-fund

step "official CometD client in headless Chromium (conformance/browser)"
(
  cd conformance/browser
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  npm test
)
