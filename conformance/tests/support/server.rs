//! Spawning the `bayeuxd` binary under test.
//!
//! Every test starts its own server on `127.0.0.1:0`, so tests never share sessions, channels or
//! configuration and can run in parallel. The child is killed when the [`TestServer`] is dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the binary may take to print its "listening" line.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// Prefix of the single stdout line `bayeuxd` prints once it accepts connections, followed by
/// `http://` or `https://` (with `--tls-cert`).
const LISTENING_PREFIX: &str = "bayeuxd listening on ";

/// Keep at most this much of the child's stderr, to show it when a test fails.
const STDERR_CAP: usize = 256 * 1024;

/// A running `bayeuxd` child process bound to an ephemeral loopback port.
pub struct TestServer {
    child: Child,
    scheme: String,
    addr: SocketAddr,
    path: String,
    args: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl TestServer {
    /// Spawns `bayeuxd --bind 127.0.0.1:0 <args>` and waits for its listening line.
    ///
    /// The binary is `$BAYEUXD_BIN` if set, else `<workspace>/target/debug/bayeuxd`.
    pub async fn start(args: &[&str]) -> TestServer {
        let bin = binary_path();
        let mut child = Command::new(&bin)
            .arg("--bind")
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(drain(
            child.stderr.take().expect("stderr is piped"),
            Some(stderr.clone()),
        ));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();

        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let line = match tokio::time::timeout(STARTUP_DEADLINE, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => {
                // Give the child a moment to flush its last stderr words before we show them.
                let _ = tokio::time::timeout(Duration::from_millis(300), child.wait()).await;
                panic!(
                    "bayeuxd {args:?} did not print its listening line ({other:?}); stderr:\n{}",
                    String::from_utf8_lossy(&stderr.lock().expect("stderr buffer lock"))
                );
            }
        };
        // Keep reading stdout so the child can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (scheme, addr, path) = parse_listening_line(&line)
            .unwrap_or_else(|| panic!("unexpected listening line from bayeuxd: {line:?}"));
        TestServer {
            child,
            scheme,
            addr,
            path,
            args,
            stderr,
        }
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint's URL, e.g. `https://127.0.0.1:4443/cometd`.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.addr, self.path)
    }

    /// The process id of the child, while it runs (e.g. to read `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The mount path printed by the server, e.g. `/cometd`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("bayeuxd already exited");
        let kill = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("bayeuxd did not exit within 10 s of SIGTERM")
            .expect("wait for bayeuxd")
    }

    /// Sends `signal` (`KILL`, `USR1`, ...) and returns at once.
    pub async fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("bayeuxd already exited");
        let kill = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await
            .expect("run kill");
        assert!(kill.success(), "kill -{signal} {pid} failed");
    }

    /// Sends SIGTERM and returns at once (see [`TestServer::wait_exit`]).
    pub async fn send_sigterm(&self) {
        let pid = self.child.id().expect("bayeuxd already exited");
        let kill = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {pid} failed");
    }

    /// Waits up to `within` for the process to exit; `None` if it is still running then.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("wait for bayeuxd"))
    }

    /// Everything the server wrote to stderr so far (capped).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr buffer lock")).into_owned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- bayeuxd {:?} on {} stderr ---\n{}--- end of bayeuxd stderr ---",
                self.args,
                self.addr,
                self.stderr()
            );
        }
        let _ = self.child.start_kill();
    }
}

/// Where the binary under test lives.
fn binary_path() -> PathBuf {
    let path = match std::env::var_os("BAYEUXD_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/debug/bayeuxd"
        )),
    };
    if !path.is_file() {
        panic!(
            "bayeuxd binary not found at {}: run `cargo build -p bayeuxd` first \
             (or point BAYEUXD_BIN at it)",
            path.display()
        );
    }
    path
}

/// Parses `bayeuxd listening on http://127.0.0.1:PORT/cometd` into address and mount path.
fn parse_listening_line(line: &str) -> Option<(String, SocketAddr, String)> {
    let url = line.trim().strip_prefix(LISTENING_PREFIX)?;
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], rest[slash..].to_string()),
        None => (rest, "/".to_string()),
    };
    Some((scheme.to_owned(), authority.parse().ok()?, path))
}

/// Reads a child pipe to its end, keeping the first [`STDERR_CAP`] bytes in `keep`.
async fn drain(mut pipe: impl AsyncRead + Unpin, keep: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Some(keep) = &keep {
            let mut keep = keep.lock().expect("stderr buffer lock");
            let room = STDERR_CAP.saturating_sub(keep.len());
            keep.extend_from_slice(&buf[..n.min(room)]);
        }
    }
}
