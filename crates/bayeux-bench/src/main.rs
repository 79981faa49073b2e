//! `bayeux-bench`: a load generator speaking raw Bayeux over long-polling or websocket, for
//! benchmarking bayeuxd against other Bayeux servers on the same machine.
//!
//! Each run is one scenario against one server, bounded in time and limited to loopback
//! addresses. It prints one JSON line of results on stdout (for `bench/compare.sh` to tabulate)
//! and a human summary on stderr. It is not a client library and not a conformance test: it
//! speaks just enough of the protocol, the way the official clients do, to load a server.
//!
//! # Layout
//! - `http`: keep-alive HTTP/1.1 connections and per-session cookie jars.
//! - `wire`: writing request batches and visiting response batches without copying.
//! - `client`: a Bayeux session over either transport (handshake, connects, batches).
//! - `stats`: latency histograms, sequence tracking, `/proc` CPU and memory samples.
//! - `fanout`, `idle`, `echo`: the three scenarios.
//! - `report`: the markdown comparison table from the JSON lines of many runs.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

mod client;
mod echo;
mod fanout;
mod http;
mod idle;
mod report;
mod stats;
mod wire;

use client::Transport;
use http::Target;
use stats::{Epoch, ProcSample};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load generator speaking raw Bayeux (long-polling, websocket)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    #[command(flatten)]
    common: Common,
}

/// Options every scenario takes.
#[derive(Debug, clap::Args)]
struct Common {
    /// The Bayeux endpoint, e.g. http://127.0.0.1:8080/cometd (loopback only).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080/cometd")]
    url: String,
    /// Transport every session uses.
    #[arg(long, global = true, value_enum, default_value_t = Transport::LongPolling)]
    transport: Transport,
    /// PID of the server process, for its CPU time and resident memory; several,
    /// comma-separated, for the nodes of a cluster (their CPU and memory are summed).
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// A name for the server, copied into the JSON line.
    #[arg(long, global = true, default_value = "")]
    label: String,
    /// A name for the scenario, copied into the JSON line (the rows of `report`).
    #[arg(long, global = true, default_value = "")]
    scenario: String,
    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Seconds allowed for setting up all sessions before the run is abandoned.
    #[arg(long, global = true, default_value_t = 60.0)]
    setup_timeout: f64,
}

/// The scenario to run.
#[derive(Debug, Subcommand)]
enum Mode {
    /// S subscribers over C channels, P publishers at a fixed total rate.
    Fanout(fanout::FanoutArgs),
    /// N idle sessions with held connects or open websockets.
    Idle(idle::IdleArgs),
    /// Closed-loop publish and receive.
    Echo(echo::EchoArgs),
    /// Prints a markdown table comparing servers from JSON lines of earlier runs.
    Report(report::ReportArgs),
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Echo(_) => "echo",
            Mode::Fanout(_) => "fanout",
            Mode::Idle(_) => "idle",
            Mode::Report(_) => "report",
        }
    }

    /// Longest the scenario itself can run once set up, so the whole run is bounded.
    fn bound(&self) -> Duration {
        let secs = match self {
            Mode::Echo(a) => a.duration + 5.0,
            Mode::Fanout(a) => a.duration + a.drain + 10.0,
            Mode::Idle(a) => a.duration + 10.0,
            Mode::Report(_) => 0.0,
        };
        Duration::from_secs_f64(secs)
    }
}

/// What every scenario needs to know about the run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The server's endpoint.
    pub target: Target,
    /// Transport for every session.
    pub transport: Transport,
    /// Time origin for message timestamps.
    pub epoch: Epoch,
    /// The server processes, if known (several: the nodes of a cluster).
    pub server_pids: Vec<u32>,
    /// Longest wait for all sessions to be set up.
    pub setup_timeout: Duration,
}

impl Run {
    /// Samples the server processes (summed), if their PIDs were given and are readable.
    pub fn server_sample(&self) -> Option<ProcSample> {
        ProcSample::take_all(&self.server_pids)
    }

    /// The same run against another endpoint (another node of a cluster).
    pub fn at(&self, url: &str) -> Result<Run, String> {
        Ok(Run {
            target: Target::parse(url)?,
            ..self.clone()
        })
    }
}

/// Nanoseconds as milliseconds, rounded to microseconds.
pub fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// Nanoseconds as microseconds, rounded to tenths.
pub fn us(ns: u64) -> f64 {
    (ns as f64 / 1e2).round() / 10.0
}

/// Rounded to one decimal.
pub fn r1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Rounded to three decimals.
pub fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// CPU used between two samples of one process, % of a core, rounded; `None` if unknown.
pub fn cpu(before: Option<ProcSample>, after: Option<ProcSample>) -> Option<f64> {
    Some(r1(after?.cpu_percent_since(&before?)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Mode::Report(args) = &cli.mode {
        return match report::run(args) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("bayeux-bench: {why}");
                ExitCode::FAILURE
            }
        };
    }
    let target = match Target::parse(&cli.common.url) {
        Ok(target) => target,
        Err(why) => {
            eprintln!("bayeux-bench: {why}");
            return ExitCode::from(2);
        }
    };
    let threads = cli.common.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("a tokio runtime can be built");
    let run = Run {
        target,
        transport: cli.common.transport,
        epoch: Epoch::start(),
        server_pids: cli.common.server_pid.clone(),
        setup_timeout: Duration::from_secs_f64(cli.common.setup_timeout),
    };
    let bound = run.setup_timeout + cli.mode.bound();
    let outcome = runtime.block_on(async {
        let scenario = async {
            match &cli.mode {
                Mode::Echo(args) => echo::run(&run, args).await,
                Mode::Fanout(args) => fanout::run(&run, args).await,
                Mode::Idle(args) => idle::run(&run, args).await,
                Mode::Report(_) => unreachable!("reports are handled before the runtime starts"),
            }
        };
        match tokio::time::timeout(bound, scenario).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("run did not finish within {bound:?}")),
        }
    });
    // Sessions still held are abandoned, not awaited: the server expires them.
    runtime.shutdown_timeout(Duration::from_millis(100));

    let mut line = json!({
        "mode": cli.mode.name(),
        "transport": cli.common.transport.name(),
        "label": cli.common.label,
        "scenario": cli.common.scenario,
    });
    let ok = outcome.is_ok();
    match outcome {
        Ok(Value::Object(fields)) => {
            line.as_object_mut()
                .expect("line is an object")
                .extend(fields);
        }
        Ok(other) => line["result"] = other,
        Err(why) => line["error"] = Value::String(why),
    }
    println!("{line}");
    eprintln!("{}", summary(&line));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A readable one-paragraph summary of a result line.
fn summary(line: &Value) -> String {
    let get = |k: &str| match &line[k] {
        Value::Null => "-".to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let head = format!("{} {} {}", get("label"), get("mode"), get("transport"));
    if line.get("error").is_some() {
        return format!("{head}: FAILED: {}", get("error"));
    }
    let body = match line["mode"].as_str() {
        Some("fanout") => format!(
            "{} deliveries/s (offered {}), loss {} dup {}, latency p50 {} ms p99 {} ms p99.9 {} ms max {} ms, server CPU {}%, generator CPU {}%",
            get("delivered_per_s"), get("offered_per_s"), get("loss"), get("duplicates"),
            get("lat_p50_ms"), get("lat_p99_ms"), get("lat_p999_ms"), get("lat_max_ms"),
            get("server_cpu_pct"), get("gen_cpu_pct"),
        ),
        Some("idle") => format!(
            "{} sessions in {} s ({} /s), handshake p50 {} ms p99 {} ms, server RSS {} B/session",
            get("set_up"), get("setup_s"), get("setup_per_s"), get("hs_p50_ms"), get("hs_p99_ms"),
            get("rss_per_session_b"),
        ),
        _ => format!(
            "{} round trips/s, RTT p50 {} us p99 {} us, loss {} dup {}, server CPU {}%",
            get("rtt_per_s"), get("rtt_p50_us"), get("rtt_p99_us"), get("loss"), get("duplicates"),
            get("server_cpu_pct"),
        ),
    };
    format!("{head}: {body}, errors {}", get("errors"))
}
