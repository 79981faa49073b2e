//! Echo: closed-loop publish and receive. Each client subscribes to a channel of its own,
//! publishes one message, waits until the message comes back to it, and publishes the next.
//!
//! Over websocket everything travels on the one socket. Over long-polling the client publishes
//! on a second connection while a connect is held on the first (as a browser does), and the
//! message comes back either piggy-backed on the publish response or in the held connect's
//! response, whichever the server chooses. The round-trip time is send to receipt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::client::{Client, Transport};
use crate::stats::{ProcSample, Recorder, Seen};
use crate::wire::{padding_for, Incoming, Stamp};
use crate::{cpu, ms, r1, us, Run};

/// Echo parameters.
#[derive(Clone, Debug, clap::Args)]
pub struct EchoArgs {
    /// Concurrent echo clients, each with its own channel.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Approximate size of each message's `data`, in bytes.
    #[arg(long, default_value_t = 50)]
    pub size: usize,
    /// Seconds of echoing.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
}

/// How long one round trip may take before the message counts as lost.
const LOST_AFTER: Duration = Duration::from_secs(2);

/// What an echo client saw: receipts (with dedup state) and the number of round trips sent.
#[derive(Default)]
struct Tally {
    rec: Recorder,
    seen: Seen,
    sent: u64,
    /// Highest sequence number received back.
    last: Option<u64>,
}

impl Tally {
    fn receive(&mut self, m: &Incoming<'_>, now: u64) {
        if let (Some(stamp), false) = (m.data, m.is_reply()) {
            self.rec
                .delivery(&mut self.seen, stamp.p, stamp.s, stamp.t, now);
            self.last = self.last.max(Some(stamp.s));
        }
    }
}

/// Runs the scenario and returns its result fields.
pub async fn run(run: &Run, args: &EchoArgs) -> Result<Value, String> {
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let mut client = Client::open(&run.target, run.transport)
            .await
            .map_err(|e| format!("open: {e}"))?;
        client
            .establish()
            .await
            .map_err(|e| format!("setup: {e}"))?;
        client
            .subscribe(&[format!("/echo/{i}")], &mut |_: &Incoming<'_>| {})
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        clients.push(client);
    }
    let server_before = run.server_sample();
    let self_before = ProcSample::take(None);
    let end_ns = run.epoch.now_ns() + (args.duration * 1e9) as u64;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| tokio::spawn(echo(run.clone(), client, i as u32, args.size, end_ns)))
        .collect();
    let mut total = Recorder::default();
    let mut sent = 0;
    for task in tasks {
        let tally = task.await.map_err(|e| format!("echo task: {e}"))?;
        total.merge(&tally.rec);
        sent += tally.sent;
    }
    let server_after = run.server_sample();
    let self_after = ProcSample::take(None);
    let lat = &total.latency;
    let loss = sent.saturating_sub(total.delivered);
    Ok(json!({
        "clients": args.clients,
        "size": args.size,
        "duration_s": args.duration,
        "round_trips": total.delivered,
        "rtt_per_s": r1(total.delivered as f64 / args.duration),
        "loss": loss,
        "duplicates": total.duplicates,
        "rtt_p50_us": us(lat.quantile(0.5)),
        "rtt_p99_us": us(lat.quantile(0.99)),
        "rtt_p999_us": us(lat.quantile(0.999)),
        "rtt_max_ms": ms(lat.max()),
        "server_cpu_pct": cpu(server_before, server_after),
        "gen_cpu_pct": cpu(self_before, self_after),
        "errors": total.errors,
        "first_error": total.first_error,
    }))
}

/// One closed-loop echo client until `end_ns`.
async fn echo(run: Run, client: Client, index: u32, size: usize, end_ns: u64) -> Tally {
    let channel = format!("/echo/{index}");
    let pad = padding_for(size);
    match client.transport() {
        Transport::Websocket => echo_socket(run, client, &channel, pad, end_ns).await,
        Transport::LongPolling => echo_polling(run, client, &channel, pad, end_ns).await,
    }
}

async fn echo_socket(
    run: Run,
    mut client: Client,
    channel: &str,
    pad: usize,
    end_ns: u64,
) -> Tally {
    let epoch = run.epoch;
    let mut tally = Tally::default();
    while epoch.now_ns() < end_ns {
        let seq = tally.sent;
        publish(&mut client, channel, seq, epoch.now_ns(), pad);
        tally.sent += 1;
        let round = async {
            {
                let mut on = |m: &Incoming<'_>| tally.receive(m, epoch.now_ns());
                client.exchange(&mut on).await?;
            }
            while tally.last < Some(seq) {
                let mut on = |m: &Incoming<'_>| tally.receive(m, epoch.now_ns());
                client.hold(&mut on).await?;
            }
            Ok::<_, std::io::Error>(())
        };
        match tokio::time::timeout(LOST_AFTER, round).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tally.rec.error(format!("echo: {e}"));
                break;
            }
            Err(_) => {
                tally.rec.error(format!(
                    "echo: message {seq} not back within {LOST_AFTER:?}"
                ));
                break;
            }
        }
    }
    tally
}

async fn echo_polling(run: Run, client: Client, channel: &str, pad: usize, end_ns: u64) -> Tally {
    let epoch = run.epoch;
    let shared = Arc::new(Mutex::new(Tally::default()));
    let (last_tx, mut last_rx) = watch::channel(None::<u64>);
    let last_tx = Arc::new(last_tx);
    let mut sender = match client.twin(&run.target).await {
        Ok(twin) => twin,
        Err(e) => {
            let mut tally = Tally::default();
            tally.rec.error(format!("echo: second connection: {e}"));
            return tally;
        }
    };
    let receive = {
        let (shared, last_tx) = (shared.clone(), last_tx.clone());
        move |m: &Incoming<'_>| {
            let now = epoch.now_ns();
            let mut tally = shared.lock().expect("tally lock is never poisoned");
            tally.receive(m, now);
            last_tx.send_replace(tally.last);
        }
    };
    let holder = {
        let mut receive = receive.clone();
        let mut client = client;
        tokio::spawn(async move { while client.hold(&mut receive).await.is_ok() {} })
    };
    let mut receive = receive;
    let mut failure = None;
    while epoch.now_ns() < end_ns {
        let seq = {
            let mut tally = shared.lock().expect("tally lock is never poisoned");
            tally.sent += 1;
            tally.sent - 1
        };
        publish(&mut sender, channel, seq, epoch.now_ns(), pad);
        let round = async {
            sender.exchange(&mut receive).await?;
            last_rx
                .wait_for(|last| *last >= Some(seq))
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(())
        };
        match tokio::time::timeout(LOST_AFTER, round).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure = Some(format!("echo: {e}"));
                break;
            }
            Err(_) => {
                failure = Some(format!(
                    "echo: message {seq} not back within {LOST_AFTER:?}"
                ));
                break;
            }
        }
    }
    holder.abort();
    let mut tally = std::mem::take(&mut *shared.lock().expect("tally lock is never poisoned"));
    if let Some(why) = failure {
        tally.rec.error(why);
    }
    tally
}

/// Writes the publish of message `seq` (sent at `t`) into `client`'s next batch.
fn publish(client: &mut Client, channel: &str, seq: u64, t: u64, pad: usize) {
    let (mut batch, cid) = client.batch();
    batch.publish(cid, channel, Stamp { p: 0, s: seq, t }, pad);
    batch.finish();
}
