//! Idle sessions: N sessions each with a held `/meta/connect` (long-polling) or an open
//! websocket, set up as fast as the server allows.
//!
//! A session counts as set up when its first connect (`timeout: 0`) has been answered; it then
//! holds connects until the run ends. Reported: sessions set up per second, handshake latency
//! (request to reply, on an already open connection), and the server's resident memory per
//! session (RSS after all sessions are idle minus RSS before the first, over N).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::client::Client;
use crate::stats::{Histogram, ProcSample};
use crate::wire::Incoming;
use crate::{cpu, ms, r1, r3, Run};

/// Idle-session parameters.
#[derive(Clone, Debug, clap::Args)]
pub struct IdleArgs {
    /// Sessions to open.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Sessions being set up at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Seconds to keep all sessions idle before measuring memory.
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
}

/// Runs the scenario and returns its result fields.
pub async fn run(run: &Run, args: &IdleArgs) -> Result<Value, String> {
    let rss_before = run.server_sample();
    let self_before = ProcSample::take(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (done_tx, mut done_rx) = mpsc::channel::<Result<u64, String>>(1024);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        tasks.push(tokio::spawn(session(
            run.clone(),
            gate.clone(),
            done_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(done_tx);
    let mut handshakes = Histogram::new();
    let mut failure = None;
    let mut errors = 0u64;
    for _ in 0..args.sessions {
        match tokio::time::timeout(run.setup_timeout, done_rx.recv()).await {
            Ok(Some(Ok(ns))) => handshakes.record(ns),
            Ok(Some(Err(why))) => {
                errors += 1;
                failure.get_or_insert(why);
            }
            Ok(None) | Err(_) => {
                failure.get_or_insert(format!("not set up within {:?}", run.setup_timeout));
                break;
            }
        }
    }
    let setup = started.elapsed();
    let set_up = handshakes.count();
    let server_setup = run.server_sample();
    let self_setup = ProcSample::take(None);
    if set_up == 0 {
        let _ = stop_tx.send(true);
        return Err(failure.unwrap_or_else(|| "no session was set up".into()));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let rss_after = run.server_sample();
    let _ = stop_tx.send(true);
    for task in tasks {
        if let Ok(Err(why)) = task.await {
            errors += 1;
            failure.get_or_insert(why);
        }
    }
    let rss_per_session = match (rss_before, rss_after) {
        (Some(b), Some(a)) => {
            Some(a.rss_kib.saturating_sub(b.rss_kib) as f64 * 1024.0 / set_up as f64)
        }
        _ => None,
    };
    Ok(json!({
        "sessions": args.sessions,
        "set_up": set_up,
        "setup_s": r3(setup.as_secs_f64()),
        "setup_per_s": r1(set_up as f64 / setup.as_secs_f64()),
        "hs_p50_ms": ms(handshakes.quantile(0.5)),
        "hs_p99_ms": ms(handshakes.quantile(0.99)),
        "hs_max_ms": ms(handshakes.max()),
        "server_rss_before_kib": rss_before.map(|s| s.rss_kib),
        "server_rss_after_kib": rss_after.map(|s| s.rss_kib),
        "rss_per_session_b": rss_per_session.map(f64::round),
        "server_cpu_pct": cpu(rss_before, server_setup),
        "gen_cpu_pct": cpu(self_before, self_setup),
        "errors": errors,
        "first_error": failure,
    }))
}

/// One session: set up (reporting the handshake latency), then hold connects until stopped.
/// Returns an error if the session broke while idle.
async fn session(
    run: Run,
    gate: Arc<Semaphore>,
    done: mpsc::Sender<Result<u64, String>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let setup = async {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let mut client = Client::open(&run.target, run.transport)
            .await
            .map_err(|e| e.to_string())?;
        let sent = Instant::now();
        client.handshake().await.map_err(|e| e.to_string())?;
        let handshake = sent.elapsed().as_nanos() as u64;
        client.first_connect().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((client, handshake))
    };
    let mut client = match setup.await {
        Ok((client, ns)) => {
            let _ = done.send(Ok(ns)).await;
            client
        }
        Err(why) => {
            let _ = done.send(Err(why)).await;
            return Ok(());
        }
    };
    drop(done);
    let mut ignore = |_: &Incoming<'_>| {};
    loop {
        tokio::select! {
            result = client.hold(&mut ignore) => {
                if let Err(e) = result {
                    return Err(format!("idle session: {e}"));
                }
            }
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}
