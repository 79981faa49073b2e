//! Real Redis servers for the cluster tests: Debian's `redis-server`, started by each test on
//! a free loopback port in a directory of its own, durable (AOF), killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    cluster: bool,
}

fn binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// A loopback port nobody listens on now (and, for a Cluster node, whose bus port + 10000
/// is free too).
fn free_port(cluster: bool) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        if !cluster || (port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()) {
            return port;
        }
    }
}

fn fresh_dir(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bayeux-redis-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl RedisServer {
    /// A standalone server with AOF persistence.
    pub async fn start() -> Self {
        let port = free_port(false);
        Self::launch(port, fresh_dir(port), false).await
    }

    async fn launch(port: u16, dir: PathBuf, cluster: bool) -> Self {
        let child = spawn(port, &dir, cluster);
        let server = Self {
            child: Some(child),
            port,
            dir,
            cluster,
        };
        server.wait_until_up().await;
        server
    }
}

fn spawn(port: u16, dir: &std::path::Path, cluster: bool) -> Child {
    let mut command = Command::new(binary());
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--protected-mode",
            "no",
        ])
        .args(["--dir", dir.to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if cluster {
        command.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ]);
    }
    command.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {}: {e}; install Debian's redis-server (apt-get install redis-server)",
            binary()
        )
    })
}

impl RedisServer {
    async fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(reply) = self.command(&["PING"]).await {
                if reply.starts_with("+PONG") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis on {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one command and returns the raw reply (RESP text, one read).
    pub async fn command(&self, args: &[&str]) -> std::io::Result<String> {
        command(self.port, args).await
    }

    /// How many times each command ran since the start (from `INFO commandstats`).
    pub async fn command_counts(&self) -> Vec<(String, u64)> {
        let info = self.command(&["INFO", "commandstats"]).await.expect("INFO");
        info.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }

    /// Stops it (SIGTERM: it finishes writing its append-only file).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again after [`RedisServer::stop`], on the same port with the same data.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.child = Some(spawn(self.port, &self.dir, self.cluster));
        self.wait_until_up().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one command to the Redis (or Sentinel) on `port`; returns the raw reply (RESP text,
/// one read).
pub async fn command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0; 1 << 16];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await??;
    Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
}

/// A master and one Sentinel watching it (named `main`).
pub struct RedisSentinel {
    /// The master.
    pub master: RedisServer,
    sentinel: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisSentinel {
    /// Starts a master and a Sentinel that knows it.
    pub async fn start() -> Self {
        let master = RedisServer::start().await;
        let port = free_port(false);
        let dir = fresh_dir(port);
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor main 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds main 2000\n",
                dir.display(),
                master.port()
            ),
        )
        .expect("sentinel config");
        let sentinel = Command::new(binary())
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel starts");
        let this = Self {
            master,
            sentinel: Some(sentinel),
            port,
            dir,
        };
        // Up once it names the master.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = command(port, &["SENTINEL", "get-master-addr-by-name", "main"])
                .await
                .unwrap_or_default();
            if reply.contains(&this.master.port().to_string()) {
                break;
            }
            assert!(Instant::now() < deadline, "sentinel not ready: {reply:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        this
    }

    /// `redis+sentinel://127.0.0.1:PORT/main`.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/main", self.port)
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.sentinel.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of masters only, on loopback.
pub struct RedisCluster {
    /// Its nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `masters` nodes, slots spread over all of them, ready (`cluster_state:ok`).
    pub async fn start(masters: usize) -> Self {
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            let port = free_port(true);
            nodes.push(RedisServer::launch(port, fresh_dir(port), true).await);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = node.command(&["CLUSTER", "INFO"]).await.unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster not ok: {info}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Self { nodes }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}
