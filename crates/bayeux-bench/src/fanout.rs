//! Fan-out: S subscribers over C channels, P publishers at a fixed total rate for D seconds.
//!
//! Subscriber `i` joins `rooms` channels, `(i * rooms + j) % C` for `j < rooms`, so every
//! channel gets the same number of subscribers when `S * rooms` is a multiple of `C`. Publisher
//! `p` sends batches of `batch` messages on a fixed schedule (its share of `rate`), each message
//! to a channel picked by a hash of `(p, seq)`, so any party can tell where message `seq` went.
//! Expected deliveries are the publishes the server acknowledged times the subscribers of
//! their channel; what is not delivered once publishing stops and the drain period ends is
//! loss. This covers both the plain fan-out scenario (`rooms = C = 1`) and CometD's benchmark
//! topology (many rooms, several per client, batched publishes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::client::Client;
use crate::stats::{ProcSample, Recorder, Seen};
use crate::wire::{padding_for, Incoming, Stamp};
use crate::{cpu, ms, r1, r3, us, Run};

/// Fan-out parameters.
#[derive(Clone, Debug, clap::Args)]
pub struct FanoutArgs {
    /// Subscribing sessions.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Channels (rooms).
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Channels each subscriber joins.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Publishing sessions (not subscribed to anything).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Messages published per second, all publishers together.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Messages per publish request (one HTTP POST or websocket frame).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Approximate size of each message's `data`, in bytes.
    #[arg(long, default_value_t = 50)]
    pub size: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Longest wait, in seconds, for deliveries still in flight after publishing stops.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Sessions being set up at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Extra subscribers of the first channel that stop reading once subscribed (a stalled
    /// consumer); they are not counted in the results, which show whether they slow the others.
    #[arg(long, default_value_t = 0)]
    pub stalled: usize,
    /// Endpoint of the publishers, when not `--url` (another node of a cluster).
    #[arg(long)]
    pub publish_url: Option<String>,
    /// Endpoints of the subscribers, comma-separated, taken in turn (nodes of a cluster);
    /// default `--url`.
    #[arg(long, value_delimiter = ',')]
    pub subscriber_urls: Vec<String>,
}

/// What a publisher task reports.
struct PublisherReport {
    rec: Recorder,
    published: u64,
    /// Acknowledged publishes per channel.
    acked: Vec<u64>,
}

/// Runs the scenario and returns its result fields.
pub async fn run(run: &Run, args: &FanoutArgs) -> Result<Value, String> {
    let channels = args.channels.max(1);
    let rooms = args.rooms.clamp(1, channels);
    let names: Arc<Vec<String>> = Arc::new((0..channels).map(|c| format!("/bench/{c}")).collect());
    let mut members = vec![0u64; channels];
    for i in 0..args.subscribers {
        for j in 0..rooms {
            members[(i * rooms + j) % channels] += 1;
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    // The publishing window, in epoch ns; set when everyone is ready.
    let (go_tx, go_rx) = watch::channel(None::<(u64, u64)>);
    let progress = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), String>>(1024);

    let subscriber_runs: Vec<Run> = if args.subscriber_urls.is_empty() {
        vec![run.clone()]
    } else {
        args.subscriber_urls
            .iter()
            .map(|url| run.at(url))
            .collect::<Result<_, _>>()?
    };
    let publisher_run = match &args.publish_url {
        Some(url) => run.at(url)?,
        None => run.clone(),
    };
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        let mine: Vec<String> = (0..rooms)
            .map(|j| names[(i * rooms + j) % channels].clone())
            .collect();
        subscribers.push(tokio::spawn(subscriber(
            subscriber_runs[i % subscriber_runs.len()].clone(),
            mine,
            gate.clone(),
            ready_tx.clone(),
            go_rx.clone(),
            stop_rx.clone(),
            progress.clone(),
        )));
    }
    let mut publishers: Vec<JoinHandle<PublisherReport>> = Vec::with_capacity(args.publishers);
    let per_publisher_rate = args.rate / args.publishers.max(1) as f64;
    for p in 0..args.publishers {
        publishers.push(tokio::spawn(publisher(
            publisher_run.clone(),
            p as u32,
            args.clone(),
            per_publisher_rate,
            names.clone(),
            gate.clone(),
            ready_tx.clone(),
            go_rx.clone(),
            stop_rx.clone(),
        )));
    }
    let mut stalled = Vec::with_capacity(args.stalled);
    for _ in 0..args.stalled {
        stalled.push(tokio::spawn(stalled_subscriber(
            run.clone(),
            names[0].clone(),
            gate.clone(),
            ready_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(ready_tx);

    let setup_started = Instant::now();
    let expected_ready = args.subscribers + args.publishers + args.stalled;
    for _ in 0..expected_ready {
        match tokio::time::timeout(run.setup_timeout, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(why))) => {
                let _ = stop_tx.send(true);
                return Err(format!("session setup failed: {why}"));
            }
            Ok(None) | Err(_) => {
                let _ = stop_tx.send(true);
                return Err(format!(
                    "sessions not set up within {:?}",
                    run.setup_timeout
                ));
            }
        }
    }
    let setup = setup_started.elapsed();

    let server_before = run.server_sample();
    let self_before = ProcSample::take(None);
    let start_ns = run.epoch.now_ns();
    let end_ns = start_ns + (args.duration * 1e9) as u64;
    let _ = go_tx.send(Some((start_ns, end_ns)));

    let mut published = 0;
    let mut acked = vec![0u64; channels];
    let mut total = Recorder::default();
    for handle in publishers {
        let report = handle.await.map_err(|e| format!("publisher task: {e}"))?;
        published += report.published;
        for (a, b) in acked.iter_mut().zip(&report.acked) {
            *a += b;
        }
        total.merge(&report.rec);
    }
    let window = Duration::from_nanos(run.epoch.now_ns().saturating_sub(start_ns));
    let server_after = run.server_sample();
    let self_after = ProcSample::take(None);

    let expected: u64 = acked.iter().zip(&members).map(|(a, m)| a * m).sum();
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while progress.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    for handle in stalled {
        let _ = handle.await;
    }
    let mut in_window = 0;
    for handle in subscribers {
        let (rec, inside) = handle.await.map_err(|e| format!("subscriber task: {e}"))?;
        total.merge(&rec);
        in_window += inside;
    }

    let secs = args.duration;
    let lat = &total.latency;
    let loss = expected.saturating_sub(total.delivered);
    Ok(json!({
        "subscribers": args.subscribers,
        "stalled": args.stalled,
        "channels": channels,
        "rooms": rooms,
        "publishers": args.publishers,
        "batch": args.batch,
        "size": args.size,
        "duration_s": secs,
        "setup_s": r3(setup.as_secs_f64()),
        "rate_target": args.rate,
        "published": published,
        "published_per_s": r1(published as f64 / window.as_secs_f64()),
        "expected": expected,
        "delivered": total.delivered,
        "delivered_per_s": r1(in_window as f64 / secs),
        "offered_per_s": r1(expected as f64 / secs),
        "loss": loss,
        "loss_pct": if expected == 0 { 0.0 } else { r3(100.0 * loss as f64 / expected as f64) },
        "duplicates": total.duplicates,
        "lat_p50_ms": ms(lat.quantile(0.5)),
        "lat_p99_ms": ms(lat.quantile(0.99)),
        "lat_p999_ms": ms(lat.quantile(0.999)),
        "lat_max_ms": ms(lat.max()),
        "lat_p50_us": us(lat.quantile(0.5)),
        "server_cpu_pct": cpu(server_before, server_after),
        "server_rss_kib": server_after.map(|s| s.rss_kib),
        "gen_cpu_pct": cpu(self_before, self_after),
        "errors": total.errors,
        "first_error": total.first_error,
    }))
}

/// A subscriber: set up, then keep a connect held until told to stop. Returns what it saw and
/// how many deliveries arrived inside the publishing window.
/// Subscribes to `channel`, then never reads again until told to stop: the server's writes to
/// it block (websocket) or its queue fills (long-polling), and it must slow nobody else.
async fn stalled_subscriber(
    run: Run,
    channel: String,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) {
    let setup = async {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let mut client = Client::open(&run.target, run.transport)
            .await
            .map_err(|e| e.to_string())?;
        client.establish().await.map_err(|e| e.to_string())?;
        client
            .subscribe(&[channel], &mut |_| {})
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(client)
    };
    match setup.await {
        Ok(client) => {
            let _ = ready.send(Ok(())).await;
            drop(ready);
            // Hold the connection open, unread, until the run ends.
            let _ = stop.wait_for(|stopped| *stopped).await;
            drop(client);
        }
        Err(why) => {
            let _ = ready.send(Err(why)).await;
        }
    }
}

async fn subscriber(
    run: Run,
    channels: Vec<String>,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(), String>>,
    mut go: watch::Receiver<Option<(u64, u64)>>,
    mut stop: watch::Receiver<bool>,
    progress: Arc<AtomicU64>,
) -> (Recorder, u64) {
    let mut rec = Recorder::default();
    let mut seen = Seen::default();
    let setup = async {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let mut client = Client::open(&run.target, run.transport)
            .await
            .map_err(|e| e.to_string())?;
        client.establish().await.map_err(|e| e.to_string())?;
        client
            .subscribe(&channels, &mut |_| {})
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(client)
    };
    let mut client = match setup.await {
        Ok(client) => {
            let _ = ready.send(Ok(())).await;
            client
        }
        Err(why) => {
            let _ = ready.send(Err(why.clone())).await;
            rec.error(why);
            return (rec, 0);
        }
    };
    drop(ready);
    let window_end = match go.wait_for(Option::is_some).await {
        Ok(window) => window.map_or(0, |(_, end)| end),
        Err(_) => return (rec, 0),
    };
    let epoch = run.epoch;
    let mut in_window = 0;
    loop {
        let mut got = 0;
        let mut on = |m: &Incoming<'_>| {
            if let (Some(stamp), false) = (m.data, m.is_reply()) {
                let now = epoch.now_ns();
                rec.delivery(&mut seen, stamp.p, stamp.s, stamp.t, now);
                got += 1;
                if now <= window_end {
                    in_window += 1;
                }
            }
        };
        let step = client.hold(&mut on);
        tokio::select! {
            result = step => {
                if let Err(e) = result {
                    rec.error(format!("subscriber: {e}"));
                    break;
                }
            }
            _ = stop.wait_for(|s| *s) => break,
        }
        progress.fetch_add(got, Ordering::Relaxed);
    }
    (rec, in_window)
}

/// A publisher: set up (its session kept alive by held connects on a connection of its own
/// when long-polling), then publish on schedule until the window ends.
#[allow(clippy::too_many_arguments)]
async fn publisher(
    run: Run,
    index: u32,
    args: FanoutArgs,
    rate: f64,
    names: Arc<Vec<String>>,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(), String>>,
    mut go: watch::Receiver<Option<(u64, u64)>>,
    stop: watch::Receiver<bool>,
) -> PublisherReport {
    let mut report = PublisherReport {
        rec: Recorder::default(),
        published: 0,
        acked: vec![0; names.len()],
    };
    let setup = async {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let mut client = Client::open(&run.target, run.transport)
            .await
            .map_err(|e| e.to_string())?;
        client.establish().await.map_err(|e| e.to_string())?;
        let sender = match client.transport() {
            crate::client::Transport::LongPolling => {
                let twin = client.twin(&run.target).await.map_err(|e| e.to_string())?;
                tokio::spawn(keep_connected(client, stop.clone()));
                twin
            }
            crate::client::Transport::Websocket => client,
        };
        Ok::<_, String>(sender)
    };
    let mut client = match setup.await {
        Ok(client) => {
            let _ = ready.send(Ok(())).await;
            client
        }
        Err(why) => {
            let _ = ready.send(Err(why.clone())).await;
            report.rec.error(why);
            return report;
        }
    };
    drop(ready);
    let Ok(window) = go.wait_for(Option::is_some).await.map(|w| *w) else {
        return report;
    };
    let (_, end_ns) = window.expect("waited for the window");
    let batch = args.batch.max(1);
    let period = Duration::from_secs_f64(batch as f64 / rate.max(1e-3));
    let pad = padding_for(args.size);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let epoch = run.epoch;
    let mut seq = 0u64;
    loop {
        ticker.tick().await;
        if epoch.now_ns() >= end_ns {
            break;
        }
        let (mut out, cid) = client.batch();
        for _ in 0..batch {
            let channel = &names[room_of(index, seq, names.len())];
            let stamp = Stamp {
                p: index,
                s: seq,
                t: epoch.now_ns(),
            };
            out.publish(cid, channel, stamp, pad);
            seq += 1;
        }
        out.finish();
        report.published += batch as u64;
        let acked = &mut report.acked;
        let mut on = |m: &Incoming<'_>| {
            if m.successful == Some(true) && !m.channel.starts_with("/meta/") {
                let room = m
                    .channel
                    .strip_prefix("/bench/")
                    .and_then(|c| c.parse().ok());
                if let Some(slot) = room.and_then(|c: usize| acked.get_mut(c)) {
                    *slot += 1;
                }
            }
        };
        let result = client.exchange(&mut on).await;
        if let Err(e) = result {
            report.rec.error(format!("publisher: {e}"));
            break;
        }
    }
    let (failures, last) = client.publish_failures();
    if failures > 0 {
        report.rec.errors += failures;
        report.rec.first_error = last.map(str::to_string);
    }
    // Over websocket the publisher's own session holds connects on the same socket; keep
    // answering them until the run stops so the session stays alive for the drain.
    if matches!(client.transport(), crate::client::Transport::Websocket) {
        tokio::spawn(keep_connected(client, stop));
    }
    report
}

/// Keeps a session's connects held until the run stops, ignoring anything delivered.
async fn keep_connected(mut client: Client, mut stop: watch::Receiver<bool>) {
    let mut ignore = |_: &Incoming<'_>| {};
    loop {
        tokio::select! {
            result = client.hold(&mut ignore) => if result.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// The channel index message `seq` of publisher `p` goes to: a hash, so rooms are hit evenly
/// in a scattered order, as in CometD's benchmark.
pub fn room_of(p: u32, seq: u64, channels: usize) -> usize {
    let mut z = (u64::from(p) << 40) ^ seq;
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % channels as u64) as usize
}
