//! Slow consumer over a real websocket on 127.0.0.1: a subscriber that stops reading its socket
//! must not delay the publisher or the other subscribers, and its queue stays bounded by
//! `maxQueue` with the documented policy, drop oldest (`QueueFullPolicy::DropOldest`).
//!
//! An actix-web app embeds the server (so the test can look at the stalled session through the
//! Rust API) with `max_queue` = [`MAX_QUEUE`], and three raw tokio-tungstenite clients talk to it:
//! - the *stalled* subscriber handshakes, subscribes to `/slow`, sends a held `/meta/connect` and
//!   never reads its socket again (the stream is kept open, just never polled). Its receive
//!   buffer is made small (`SO_RCVBUF`), so the server's writes to it block after a few MB of
//!   kernel buffers rather than tens;
//! - the *live* subscriber, subscribed to `/slow`, reads everything in a task of its own;
//! - the *publisher* sends [`MESSAGES`] publishes of ~1 KB, [`PER_FRAME`] per frame, and waits
//!   for each frame's replies before sending the next one.
//!
//! Asserted: the live subscriber receives every message once, in order; every publish succeeds;
//! the stalled session's queue never exceeds `maxQueue` while the publisher runs, it is still
//! there at the end with messages dropped, and what it holds is exactly the newest messages
//! (seen by resuming the session on a new socket once the stalled socket is closed); the server
//! then still serves new clients. Every wait is bounded and the whole scenario must end within
//! [`OVERALL`]. Latencies are printed, never asserted: performance belongs to the benchmarks.

mod support;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use bayeux_server::{EngineConfig, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use support::assert_messages;
use support::ws::{try_upgrade, ws_url, WsClient};

/// Mount path of the endpoint.
const PATH: &str = "/cometd";
/// `maxQueue` of every session.
const MAX_QUEUE: usize = 100;
/// Messages published on `/slow` (about 20 MB in all).
const MESSAGES: u64 = 20_000;
/// Publishes per publisher frame. Half of `maxQueue`, so that the live subscriber loses nothing
/// even if its socket task happens not to run between two publisher frames.
const PER_FRAME: u64 = 50;
/// Bytes of padding in each message's data.
const PAD: usize = 1_000;
/// Receive buffer of the stalled client's socket (the kernel may double it).
const STALLED_RCVBUF: u32 = 64 * 1024;
/// Bound of the whole scenario.
const OVERALL: Duration = Duration::from_secs(60);
/// Bound of any single step (a handshake, the replies to one publisher frame, ...).
const STEP: Duration = Duration::from_secs(10);

/// Starts an actix-web app embedding the server on its own thread; returns the server handle
/// and its address.
fn embedded_app() -> (Server, SocketAddr) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = Server::builder()
                .config(EngineConfig {
                    max_queue: MAX_QUEUE,
                    // Longer than the run: no held connect is answered by its timeout, and the
                    // stalled session (whose held connect can never be answered) cannot expire
                    // before the test has looked at it.
                    timeout: Duration::from_secs(120),
                    ..Default::default()
                })
                .build();
            let mounted = server.clone();
            let http = HttpServer::new(move || {
                App::new().service(bayeux_actix::scope(PATH, mounted.clone()))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .expect("bind loopback");
            tx.send((server, http.addrs()[0])).expect("test is waiting");
            http.run().await
        })
    });
    rx.recv_timeout(STEP).expect("app starts")
}

/// Sends `batch` (a JSON array of messages) as one text frame.
async fn send_frame<S>(ws: &mut WebSocketStream<S>, batch: &Value)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text(batch.to_string()))
        .await
        .unwrap_or_else(|e| panic!("sending a frame failed: {e}"));
}

/// The messages of the next text frame (ping/pong skipped), or why there is none before
/// `deadline`.
async fn next_messages<S>(
    ws: &mut WebSocketStream<S>,
    deadline: Instant,
) -> Result<Vec<Value>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let item = tokio::time::timeout(left, ws.next())
            .await
            .map_err(|_| "no frame before the deadline".to_string())?;
        match item {
            None => return Err("end of stream".into()),
            Some(Err(e)) => return Err(format!("socket error: {e}")),
            Some(Ok(Message::Text(text))) => {
                return match serde_json::from_str::<Value>(text.as_str()) {
                    Ok(Value::Array(items))
                        if !items.is_empty() && items.iter().all(Value::is_object) =>
                    {
                        Ok(items)
                    }
                    _ => Err(format!("a text frame that is not a message array: {text}")),
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(other)) => return Err(format!("unexpected frame {other:?}")),
        }
    }
}

/// Receives until the reply to message `id` (which must come last in its frame and be
/// successful); returns everything received on the way, reply last.
async fn until_reply<S>(ws: &mut WebSocketStream<S>, id: &str, what: &str) -> Vec<Value>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + STEP;
    let mut got = Vec::new();
    loop {
        let msgs = next_messages(ws, deadline).await.unwrap_or_else(|e| {
            panic!(
                "{what}: no reply to {id:?} ({e}); received on the way: {}",
                Value::Array(got.clone())
            )
        });
        got.extend(msgs);
        let last = got.last().expect("frames are not empty");
        if last["id"] == json!(id) && last.get("successful").is_some() {
            assert_eq!(last["successful"], json!(true), "{what}: {last}");
            return got;
        }
    }
}

/// Handshakes a websocket client; returns its clientId.
async fn handshake<S>(ws: &mut WebSocketStream<S>, what: &str) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send_frame(
        ws,
        &json!([{"channel": "/meta/handshake", "id": "1", "version": "1.0",
                 "supportedConnectionTypes": ["websocket"]}]),
    )
    .await;
    let reply = until_reply(ws, "1", what).await;
    reply[reply.len() - 1]["clientId"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: handshake reply without clientId: {reply:?}"))
        .to_string()
}

/// The first `/meta/connect` (answered at once).
async fn first_connect<S>(ws: &mut WebSocketStream<S>, cid: &str, id: &str, what: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send_frame(
        ws,
        &json!([{"channel": "/meta/connect", "id": id, "clientId": cid,
                 "connectionType": "websocket", "advice": {"timeout": 0}}]),
    )
    .await;
    let msgs = until_reply(ws, id, what).await;
    assert_eq!(msgs.len(), 1, "{what}: first connect: {msgs:?}");
}

/// Handshakes, subscribes to `/slow`, connects, then sends a held connect; returns the clientId.
async fn subscriber<S>(ws: &mut WebSocketStream<S>, what: &str) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cid = handshake(ws, what).await;
    send_frame(
        ws,
        &json!([{"channel": "/meta/subscribe", "id": "2", "clientId": cid,
                 "subscription": "/slow"}]),
    )
    .await;
    let msgs = until_reply(ws, "2", what).await;
    assert_eq!(msgs.len(), 1, "{what}: subscribe: {msgs:?}");
    first_connect(ws, &cid, "3", what).await;
    send_frame(
        ws,
        &json!([{"channel": "/meta/connect", "id": "4", "clientId": cid,
                 "connectionType": "websocket"}]),
    )
    .await;
    cid
}

/// The stalled subscriber's socket: a small receive buffer, then a websocket upgrade.
async fn open_stalled(addr: SocketAddr) -> WebSocketStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().expect("tcp socket");
    socket
        .set_recv_buffer_size(STALLED_RCVBUF)
        .expect("SO_RCVBUF");
    let tcp = tokio::time::timeout(STEP, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let (ws, _) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::client_async(ws_url(addr, PATH, ""), tcp),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade");
    ws
}

/// The `seq` of a `/slow` delivery.
fn seq_of(msg: &Value) -> Option<u64> {
    if msg["channel"] == json!("/slow") {
        msg["data"]["seq"].as_u64()
    } else {
        None
    }
}

/// What the live subscriber saw.
struct Live {
    /// `seq` of every `/slow` delivery, in arrival order.
    seqs: Vec<u64>,
    /// Any other message.
    others: Vec<Value>,
    /// Why reading stopped before the last message, if it did.
    error: Option<String>,
    /// When the last message arrived.
    done: Instant,
}

/// Reads `/slow` deliveries until the one with the last `seq`, or until `deadline`.
async fn read_deliveries<S>(
    mut ws: WebSocketStream<S>,
    deadline: Instant,
) -> (WebSocketStream<S>, Live)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut live = Live {
        seqs: Vec::with_capacity(MESSAGES as usize),
        others: Vec::new(),
        error: None,
        done: Instant::now(),
    };
    loop {
        match next_messages(&mut ws, deadline).await {
            Ok(msgs) => {
                for msg in msgs {
                    match seq_of(&msg) {
                        Some(seq) => live.seqs.push(seq),
                        None => live.others.push(msg),
                    }
                }
                if live.seqs.last() == Some(&(MESSAGES - 1)) {
                    live.done = Instant::now();
                    return (ws, live);
                }
            }
            Err(e) => {
                live.error = Some(e);
                return (ws, live);
            }
        }
    }
}

/// Describes how `seqs` differs from `0..MESSAGES`.
fn describe_gaps(seqs: &[u64]) -> String {
    let first_bad = seqs
        .iter()
        .enumerate()
        .find(|&(i, &s)| s != i as u64)
        .map(|(i, &s)| format!("position {i} holds seq {s}"));
    let mut seen = vec![0u32; MESSAGES as usize];
    for &s in seqs {
        if let Some(n) = seen.get_mut(s as usize) {
            *n += 1;
        }
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let duplicated = seen.iter().filter(|&&n| n > 1).count();
    format!(
        "{} received, {missing} missing, {duplicated} duplicated, first out of place: {first_bad:?}",
        seqs.len()
    )
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_delays_nobody_and_its_queue_drops_the_oldest() {
    tokio::time::timeout(OVERALL, scenario())
        .await
        .unwrap_or_else(|_| panic!("the scenario did not finish within {OVERALL:?}"));
}

async fn scenario() {
    let (server, addr) = embedded_app();
    let url = ws_url(addr, PATH, "");

    // The stalled subscriber: after its held connect, its socket is never read again.
    let mut stalled = open_stalled(addr).await;
    let stalled_cid = subscriber(&mut stalled, "stalled subscriber").await;
    let stalled_session = server
        .engine()
        .session(&stalled_cid)
        .expect("the stalled session exists");

    // The live subscriber, read by a task of its own.
    let (mut live_ws, _) = try_upgrade(&url, &[]).await.expect("live upgrade");
    subscriber(&mut live_ws, "live subscriber").await;
    let run_deadline = Instant::now() + OVERALL;
    let reader = tokio::spawn(read_deliveries(live_ws, run_deadline));

    // The publisher.
    let (mut publisher, _) = try_upgrade(&url, &[]).await.expect("publisher upgrade");
    let publisher_cid = handshake(&mut publisher, "publisher").await;
    first_connect(&mut publisher, &publisher_cid, "2", "publisher").await;

    let pad = "x".repeat(PAD);
    let mut latencies = Vec::with_capacity((MESSAGES / PER_FRAME) as usize);
    let mut largest_stalled_queue = 0;
    let publishing = Instant::now();
    for first in (0..MESSAGES).step_by(PER_FRAME as usize) {
        let seqs = first..(first + PER_FRAME).min(MESSAGES);
        let batch: Vec<Value> = seqs
            .clone()
            .map(|seq| {
                json!({"channel": "/slow", "id": format!("p{seq}"), "clientId": publisher_cid,
                       "data": {"seq": seq, "pad": pad}})
            })
            .collect();
        let sent = Instant::now();
        send_frame(&mut publisher, &Value::Array(batch)).await;
        let mut replies = Vec::new();
        let deadline = sent + STEP;
        while replies.len() < seqs.clone().count() {
            let msgs = next_messages(&mut publisher, deadline)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "publisher blocked: {} of the replies to the frame of seq {seqs:?} \
                         within {STEP:?} ({e})",
                        replies.len()
                    )
                });
            replies.extend(msgs);
        }
        latencies.push(sent.elapsed());
        let want: Vec<Value> = seqs
            .map(|seq| json!({"id": format!("p{seq}"), "channel": "/slow", "successful": true}))
            .collect();
        assert_messages(&replies, &want);

        let queued = stalled_session.queue_len();
        assert!(
            queued <= MAX_QUEUE,
            "the stalled session queues {queued} messages after seq {} (maxQueue {MAX_QUEUE})",
            first + PER_FRAME - 1
        );
        largest_stalled_queue = largest_stalled_queue.max(queued);
    }
    let published = publishing.elapsed();

    // The live subscriber got everything, once, in order.
    let left = run_deadline.saturating_duration_since(Instant::now());
    let (live_ws, live) = tokio::time::timeout(left, reader)
        .await
        .expect("the live reader is bounded by the run deadline")
        .expect("the live reader did not panic");
    let expected: Vec<u64> = (0..MESSAGES).collect();
    assert!(
        live.error.is_none() && live.seqs == expected,
        "live subscriber starved or lost messages: {} (stopped because: {:?})",
        describe_gaps(&live.seqs),
        live.error
    );
    assert!(
        live.others.is_empty(),
        "live subscriber: unexpected messages {:?}",
        live.others
    );

    // The stalled session is still there, its queue bounded, the oldest messages dropped.
    let session = server
        .engine()
        .session(&stalled_cid)
        .expect("the stalled session still exists");
    let queued = session.queue_len();
    let dropped = session.dropped();
    assert!(
        queued <= MAX_QUEUE,
        "stalled session queues {queued} > maxQueue {MAX_QUEUE}"
    );
    assert!(
        dropped > 0,
        "the stalled session dropped nothing (queue {queued}): the server's writes to the \
         stalled socket never blocked, or its messages pile up somewhere unbounded"
    );

    let mut sorted = latencies.clone();
    sorted.sort();
    println!(
        "published {MESSAGES} messages of ~{PAD} B in {} frames of {PER_FRAME} in {published:?}; \
         publisher reply time p50 {:?}, p99 {:?}, max {:?}; live subscriber had the last \
         message {:?} after the first publish",
        latencies.len(),
        percentile(&sorted, 50),
        percentile(&sorted, 99),
        sorted[sorted.len() - 1],
        live.done - publishing,
    );
    println!(
        "stalled session: {queued} queued (largest seen {largest_stalled_queue}), {dropped} \
         dropped, {} taken by its socket before the writes blocked",
        MESSAGES - dropped - queued as u64
    );

    // Close the stalled socket (unread data: the kernel resets the connection).
    drop(stalled);

    // Resuming the session on a new socket hands over what the queue kept: the newest
    // messages, in order.
    let (mut resumed, _) = try_upgrade(&url, &[]).await.expect("resume upgrade");
    send_frame(
        &mut resumed,
        &json!([{"channel": "/meta/connect", "id": "10", "clientId": stalled_cid,
                 "connectionType": "websocket", "advice": {"timeout": 0}}]),
    )
    .await;
    let msgs = until_reply(&mut resumed, "10", "resumed stalled session").await;
    let kept: Vec<u64> = msgs.iter().filter_map(seq_of).collect();
    let newest: Vec<u64> = (MESSAGES - queued as u64..MESSAGES).collect();
    assert!(
        kept == newest && msgs.len() == kept.len() + 1,
        "drop oldest: the resumed session should get exactly seq {:?}, got {} messages with seq \
         {:?}..",
        MESSAGES - queued as u64..MESSAGES,
        msgs.len(),
        kept.iter().take(5).collect::<Vec<_>>()
    );

    // The server still serves a fresh client, and the live subscriber still receives.
    let mut fresh = WsClient::open_at(addr, PATH, "", &[]).await;
    fresh.handshake().await;
    fresh.first_connect().await;
    fresh.subscribe_ok(json!("/slow")).await;
    fresh.send_connect(None).await;
    send_frame(
        &mut publisher,
        &json!([{"channel": "/slow", "id": "after", "clientId": publisher_cid,
                 "data": {"seq": MESSAGES}}]),
    )
    .await;
    let reply = until_reply(&mut publisher, "after", "publish after the close").await;
    assert_eq!(reply.len(), 1, "publish after the close: {reply:?}");
    let delivery = json!([{"channel": "/slow", "data": {"seq": MESSAGES}}]);
    assert_eq!(
        Value::Array(fresh.recv(STEP).await),
        delivery,
        "fresh subscriber"
    );
    let (_, live) = read_until_seq(live_ws, MESSAGES).await;
    assert_eq!(
        live,
        delivery.as_array().unwrap().clone(),
        "live subscriber"
    );
}

/// Reads deliveries until one with `seq` arrives (bounded by [`STEP`]); returns all of them.
async fn read_until_seq<S>(mut ws: WebSocketStream<S>, seq: u64) -> (WebSocketStream<S>, Vec<Value>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + STEP;
    let mut got = Vec::new();
    loop {
        let msgs = next_messages(&mut ws, deadline).await.unwrap_or_else(|e| {
            panic!(
                "no delivery of seq {seq} ({e}); received: {}",
                Value::Array(got.clone())
            )
        });
        got.extend(msgs);
        if got.iter().any(|m| seq_of(m) == Some(seq)) {
            return (ws, got);
        }
    }
}
