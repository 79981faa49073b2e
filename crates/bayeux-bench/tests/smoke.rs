//! Smoke run of the load generator against a real `bayeuxd`: every mode on both transports for
//! about a second with small numbers, asserting no loss, no duplicates and sane result fields.
//!
//! This is not the benchmark (see `bench/compare.sh` and `docs/performance.md`); it only keeps
//! the generator working. The server binary comes from `BAYEUXD_BIN`, else the workspace's
//! `target/debug/bayeuxd` (built by `cargo test --workspace` as a workspace member).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A `bayeuxd` on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start() -> Server {
        let bin = std::env::var_os("BAYEUXD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/bayeuxd")
            });
        assert!(
            bin.exists(),
            "bayeuxd binary not found at {}: build it (cargo build -p bayeuxd) or set BAYEUXD_BIN",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["--bind", "127.0.0.1:0", "--timeout", "20000"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("bayeuxd prints its address");
        let url = line
            .trim()
            .strip_prefix("bayeuxd listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from bayeuxd: {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// Runs the generator with `args` and returns its JSON line.
    fn bench(&self, args: &[&str]) -> Value {
        let pid = self.child.id().to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_bayeux-bench"))
            .args(args)
            .args([
                "--url",
                &self.url,
                "--server-pid",
                &pid,
                "--setup-timeout",
                "10",
            ])
            .output()
            .expect("bayeux-bench runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "bayeux-bench {args:?} failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("bad JSON line {stdout:?}: {e}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

const TRANSPORTS: [&str; 2] = ["long-polling", "websocket"];

#[test]
fn fanout_delivers_everything_once() {
    let server = Server::start();
    for transport in TRANSPORTS {
        let v = server.bench(&[
            "fanout",
            "--transport",
            transport,
            "--subscribers",
            "20",
            "--channels",
            "4",
            "--rooms",
            "2",
            "--publishers",
            "2",
            "--rate",
            "200",
            "--batch",
            "2",
            "--duration",
            "1",
            "--drain",
            "3",
        ]);
        assert_eq!(num(&v, "errors"), 0.0, "{v}");
        assert_eq!(num(&v, "loss"), 0.0, "{v}");
        assert_eq!(num(&v, "duplicates"), 0.0, "{v}");
        // 200 msg/s for 1 s, each to the 10 subscribers of its room.
        assert!(num(&v, "expected") >= 1500.0, "{v}");
        assert!(num(&v, "lat_p50_ms") > 0.0 && num(&v, "lat_p50_ms") <= num(&v, "lat_max_ms"));
        assert!(
            num(&v, "server_cpu_pct") >= 0.0 && num(&v, "server_rss_kib") > 0.0,
            "{v}"
        );
    }
}

#[test]
fn idle_sessions_are_all_set_up() {
    let server = Server::start();
    for transport in TRANSPORTS {
        let v = server.bench(&[
            "idle",
            "--transport",
            transport,
            "--sessions",
            "100",
            "--duration",
            "0.5",
        ]);
        assert_eq!(num(&v, "set_up"), 100.0, "{v}");
        assert_eq!(num(&v, "errors"), 0.0, "{v}");
        assert!(
            num(&v, "setup_per_s") > 0.0 && num(&v, "hs_p50_ms") > 0.0,
            "{v}"
        );
        assert!(v["rss_per_session_b"].is_number(), "{v}");
    }
}

#[test]
fn echo_round_trips_without_loss() {
    let server = Server::start();
    for transport in TRANSPORTS {
        let v = server.bench(&[
            "echo",
            "--transport",
            transport,
            "--clients",
            "2",
            "--duration",
            "1",
        ]);
        assert_eq!(num(&v, "errors"), 0.0, "{v}");
        assert_eq!(num(&v, "loss"), 0.0, "{v}");
        assert_eq!(num(&v, "duplicates"), 0.0, "{v}");
        assert!(num(&v, "round_trips") > 10.0, "{v}");
        assert!(num(&v, "rtt_p50_us") > 0.0, "{v}");
    }
}

#[test]
fn non_loopback_targets_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_bayeux-bench"))
        .args([
            "echo",
            "--url",
            "http://192.0.2.1:80/cometd",
            "--duration",
            "0.1",
        ])
        .output()
        .expect("bayeux-bench runs");
    assert!(!out.status.success());
}
