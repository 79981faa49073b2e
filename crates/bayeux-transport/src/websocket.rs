//! The `websocket` transport: one task per socket, written against a `Stream` of inbound
//! frames and a `Sink` of outbound ones, so it runs the same over actix-ws or two channels in
//! a test.
//!
//! The task waits for whichever comes first: a frame from the client, deliveries queued for
//! the bound session (pushed at once, in frames of up to `messagesPerFrame`), the end of the
//! held `/meta/connect`, or the idle timeout. Closing the socket detaches the connection but
//! keeps the session: it expires like any other, or a new socket resumes it.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bayeux_message::{encode_batch, parse_batch, BatchError, ClientId, EncodedMessage};
use bayeux_server::{
    Hold, HoldEnd, HttpInfo, Pusher, RequestContext, RequestError, Server, TransportKind,
};
use futures::{Sink, SinkExt, Stream, StreamExt};

use crate::config::TransportConfig;

/// A frame from the client, as the web framework decoded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A binary frame: not Bayeux.
    Binary,
    /// The client closed the socket.
    Close,
    /// The framing was broken.
    Error,
    /// A frame larger than `maxMessageSize`.
    Overflow,
    /// A ping, to be answered with a pong.
    Ping(Vec<u8>),
    /// A text frame.
    Text(String),
}

/// A frame to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// Close the socket with a code and a reason.
    Close(u16, String),
    /// Answer a ping.
    Pong(Vec<u8>),
    /// A JSON array of messages.
    Text(String),
}

/// Close codes this transport uses (RFC 6455 §7.4.1).
pub mod close {
    /// Normal closure (idle timeout, answer to the client's close).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Broken framing.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame: Bayeux frames are text.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A frame larger than `maxMessageSize`.
    pub const TOO_BIG: u16 = 1009;
    /// A frame the server could not process (invalid JSON, protocol violation), as Java CometD.
    pub const SERVER_ERROR: u16 = 1011;
}

type HoldWait = Pin<Box<dyn Future<Output = HoldEnd> + Send>>;

/// What woke the socket task.
enum Event {
    Frame(Option<Inbound>),
    Push(Vec<EncodedMessage>),
    HoldEnded(HoldEnd),
    Idle,
}

/// Serves one websocket until either side closes it.
///
/// `http` is the upgrade request, shown to the security policy at handshake.
pub async fn serve<I, O>(
    server: Server,
    config: &TransportConfig,
    http: Option<Arc<HttpInfo>>,
    mut inbound: I,
    mut outbound: O,
) where
    I: Stream<Item = Inbound> + Unpin,
    O: Sink<Outbound> + Unpin,
{
    let ws = &config.websocket;
    let mut connection = Connection {
        http,
        ..Connection::default()
    };
    let mut held: Option<HoldWait> = None;
    let idle = tokio::time::sleep(ws.idle_timeout);
    tokio::pin!(idle);

    loop {
        let event = poll_fn(|cx| {
            if let Poll::Ready(frame) = inbound.poll_next_unpin(cx) {
                return Poll::Ready(Event::Frame(frame));
            }
            if let Some(pusher) = &connection.pusher {
                if let Poll::Ready(messages) = pusher.poll_deliveries(cx) {
                    return Poll::Ready(Event::Push(messages));
                }
            }
            if let Some(wait) = held.as_mut() {
                if let Poll::Ready(end) = wait.as_mut().poll(cx) {
                    return Poll::Ready(Event::HoldEnded(end));
                }
            }
            if idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Idle);
            }

            Poll::Pending
        })
        .await;

        let outgoing = match event {
            Event::Frame(frame) => {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + ws.idle_timeout);
                match frame {
                    Some(Inbound::Text(text)) => {
                        server.engine().stats().frame_in();
                        match connection.process(&server, config, &text).await {
                            Ok((messages, hold, had_connect)) => {
                                let answered_connect = had_connect && hold.is_none();
                                if let Some(hold) = hold {
                                    // A newer connect supersedes the held one: dropping the old
                                    // wait is all it takes (Java never answers it either).
                                    let server = server.clone();
                                    held =
                                        Some(Box::pin(async move { server.wait_hold(hold).await }));
                                }
                                let mut out = frames(&messages, usize::MAX);
                                out.extend(connection.sent_away(&server));
                                if answered_connect && server.is_shutting_down() {
                                    out.push(stopping_close());
                                }
                                out
                            }
                            Err(why) => vec![Outbound::Close(close::SERVER_ERROR, why)],
                        }
                    }
                    Some(Inbound::Ping(payload)) => vec![Outbound::Pong(payload)],
                    Some(Inbound::Binary) => vec![Outbound::Close(
                        close::UNSUPPORTED_DATA,
                        "binary frames are not Bayeux".into(),
                    )],
                    Some(Inbound::Overflow) => vec![Outbound::Close(
                        close::TOO_BIG,
                        "frame larger than maxMessageSize".into(),
                    )],
                    Some(Inbound::Error) => {
                        vec![Outbound::Close(close::PROTOCOL_ERROR, "bad framing".into())]
                    }
                    // RFC 6455 §5.5.1: answer the client's close frame with one.
                    Some(Inbound::Close) => vec![Outbound::Close(close::NORMAL, String::new())],
                    None => break,
                }
            }
            Event::Push(messages) => frames(&messages, ws.messages_per_frame),
            Event::HoldEnded(end) => {
                held = None;
                match end {
                    HoldEnd::Reply(messages) => {
                        let mut out = frames(&messages, usize::MAX);
                        out.extend(connection.sent_away(&server));
                        if server.is_shutting_down() {
                            out.push(stopping_close());
                        }
                        out
                    }
                    HoldEnd::Superseded => Vec::new(),
                }
            }
            Event::Idle => vec![Outbound::Close(close::NORMAL, "idle timeout".into())],
        };

        let texts = outgoing
            .iter()
            .filter(|f| matches!(f, Outbound::Text(_)))
            .count();
        server.engine().stats().frames_out(texts as u64);
        for frame in outgoing {
            let closing = matches!(frame, Outbound::Close(..));
            // A peer that stops reading must not pin this task forever: bound every write.
            let sent = tokio::time::timeout(ws.idle_timeout, outbound.send(frame)).await;
            if closing || !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
    }
}

/// The session a socket is bound to, and its claim to push that session's deliveries.
#[derive(Default)]
struct Connection {
    bound: Option<ClientId>,
    pusher: Option<Pusher>,
    http: Option<Arc<HttpInfo>>,
}

impl Connection {
    /// A close frame when a draining server has just sent this socket's session elsewhere:
    /// the client handshakes again on a new socket, which the load balancer routes to
    /// another node.
    fn sent_away(&self, server: &Server) -> Option<Outbound> {
        let gone = self
            .bound
            .as_ref()
            .is_some_and(|cid| server.engine().session(cid.as_str()).is_none());
        (gone && server.engine().is_draining())
            .then(|| Outbound::Close(close::GOING_AWAY, "server draining".into()))
    }

    /// Runs one text frame through the engine; binds the socket to the session it handshook
    /// or resumed. An error closes the socket with 1011 and leaves the session alone.
    async fn process(
        &mut self,
        server: &Server,
        config: &TransportConfig,
        text: &str,
    ) -> Result<(Vec<EncodedMessage>, Option<Hold>, bool), String> {
        if text.len() > config.max_message_size {
            return Err("frame larger than maxMessageSize".into());
        }
        let batch = match parse_batch(text.as_bytes()) {
            Ok(batch) => batch,
            // `[]` is the keep-alive of some clients (Faye up to 1.2): nothing to do or answer.
            Err(BatchError::Empty) if !text.trim().is_empty() => {
                return Ok((Vec::new(), None, false))
            }
            Err(BatchError::Malformed(_)) => return Err("invalid JSON".to_owned()),
            Err(other) => return Err(other.to_string()),
        };
        let had_connect = batch.iter().any(|m| m.channel() == Some("/meta/connect"));
        let presented = batch.first().and_then(|m| m.client_id()).map(ClientId::new);
        let ctx = RequestContext {
            bound_session: self.bound.clone(),
            require_bound_session: config.websocket.require_handshake_per_connection,
            http: self.http.clone(),
            ..RequestContext::new(TransportKind::WebSocket)
        };
        let outcome = server.handle(&ctx, batch).await.map_err(|e| match e {
            RequestError::HandshakeNotAlone => "handshake not alone".to_owned(),
            other => format!("{other:?}"),
        })?;
        let claim = outcome.handshaken.clone().or_else(|| {
            // A frame from a session this socket is not bound to yet: a reconnect or a page
            // reload resuming its session on a new socket.
            presented.filter(|cid| Some(cid) != self.bound.as_ref() && !ctx.require_bound_session)
        });
        if let Some(cid) = claim {
            if outcome.handshaken.is_none() {
                tracing::info!(client_id = %cid, "websocket resumed session");
            }
            if let Some(pusher) = server.engine().attach_pusher(cid.as_str()) {
                self.bound = Some(cid);
                self.pusher = Some(pusher);
            }
        }
        Ok((outcome.messages, outcome.hold, had_connect))
    }
}

/// The close frame of a stopping server. Sent right after the socket's next connect reply
/// (the held connect the stop released, or the next one the client sends, carrying whatever
/// was queued for it meanwhile), so nothing queued is lost to the stop.
fn stopping_close() -> Outbound {
    Outbound::Close(close::GOING_AWAY, "server shutting down".into())
}

/// Splits messages into text frames of at most `per_frame` messages each.
fn frames(messages: &[EncodedMessage], per_frame: usize) -> Vec<Outbound> {
    messages
        .chunks(per_frame.max(1))
        .map(|chunk| Outbound::Text(encode_batch(chunk)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bayeux_server::EngineConfig;
    use futures::channel::mpsc;
    use serde_json::{json, Value};

    use super::*;

    /// A socket served over two channels: frames in, frames out.
    struct Socket {
        to_server: mpsc::UnboundedSender<Inbound>,
        from_server: mpsc::UnboundedReceiver<Outbound>,
    }

    impl Socket {
        fn open(server: &Server, config: TransportConfig) -> Self {
            let (to_server, inbound) = mpsc::unbounded();
            let (outbound, from_server) = mpsc::unbounded();
            let server = server.clone();
            tokio::spawn(async move { serve(server, &config, None, inbound, outbound).await });
            Self {
                to_server,
                from_server,
            }
        }

        fn send(&self, frame: Value) {
            self.to_server
                .unbounded_send(Inbound::Text(frame.to_string()))
                .expect("socket task alive");
        }

        async fn next(&mut self) -> Outbound {
            tokio::time::timeout(Duration::from_secs(60), self.from_server.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
        }

        async fn messages(&mut self) -> Value {
            match self.next().await {
                Outbound::Text(text) => serde_json::from_str(&text).expect("JSON array"),
                other => panic!("expected a text frame, got {other:?}"),
            }
        }

        async fn handshake(&mut self) -> String {
            self.send(json!([{"channel": "/meta/handshake", "id": "1", "version": "1.0"}]));
            let reply = self.messages().await;
            reply[0]["clientId"].as_str().expect("clientId").to_owned()
        }
    }

    fn server() -> Server {
        Server::builder()
            .config(EngineConfig {
                timeout: Duration::from_secs(5),
                ..EngineConfig::default()
            })
            .build()
    }

    #[tokio::test(start_paused = true)]
    async fn deliveries_are_pushed_while_the_connect_is_held() {
        let server = server();
        let mut socket = Socket::open(&server, TransportConfig::default());
        let cid = socket.handshake().await;
        socket.send(json!([
            {"channel": "/meta/subscribe", "id": "2", "clientId": cid, "subscription": "/x"},
            {"channel": "/meta/connect", "id": "3", "clientId": cid, "advice": {"timeout": 0}}
        ]));
        assert_eq!(
            socket.messages().await,
            json!([
                {"channel": "/meta/subscribe", "id": "2", "subscription": "/x", "successful": true},
                {"channel": "/meta/connect", "id": "3", "successful": true,
                 "advice": {"reconnect": "retry", "interval": 0, "timeout": 5000}}
            ])
        );
        socket.send(json!([{"channel": "/meta/connect", "id": "4", "clientId": cid}]));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(server.publish("/x", json!("pushed")), Ok(()));
        assert_eq!(
            socket.messages().await,
            json!([{"channel": "/x", "data": "pushed"}])
        );
        let started = tokio::time::Instant::now();
        assert_eq!(
            socket.messages().await,
            json!([{"channel": "/meta/connect", "id": "4", "successful": true}])
        );
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn pushes_are_grouped_up_to_messages_per_frame() {
        let server = server();
        let mut config = TransportConfig::default();
        config.websocket.messages_per_frame = 2;
        let mut socket = Socket::open(&server, config);
        let cid = socket.handshake().await;
        socket.send(json!([{"channel": "/meta/subscribe", "id": "2", "clientId": cid, "subscription": "/n"}]));
        socket.messages().await;
        // Publish five while the task is busy elsewhere, so they are queued together.
        for n in 0..5 {
            server.publish("/n", json!(n)).expect("broadcast");
        }
        let mut sizes = Vec::new();
        let mut data = Vec::new();
        while data.len() < 5 {
            let frame = socket.messages().await;
            let frame = frame.as_array().expect("array").clone();
            sizes.push(frame.len());
            data.extend(frame.into_iter().map(|m| m["data"].clone()));
        }
        assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
        assert_eq!(data, (0..5).map(|n| json!(n)).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_json_closes_with_1011_and_keeps_the_session() {
        let server = server();
        let mut socket = Socket::open(&server, TransportConfig::default());
        let cid = socket.handshake().await;
        socket
            .to_server
            .unbounded_send(Inbound::Text("[{".into()))
            .expect("open");
        assert_eq!(
            socket.next().await,
            Outbound::Close(close::SERVER_ERROR, "invalid JSON".into())
        );
        assert_eq!(server.session_count(), 1);

        // A new socket resumes the session by its clientId.
        let mut again = Socket::open(&server, TransportConfig::default());
        again.send(json!([{"channel": "/meta/connect", "id": "5", "clientId": cid, "advice": {"timeout": 0}}]));
        let reply = again.messages().await;
        assert_eq!(reply[0]["successful"], json!(true));
        assert_eq!(server.publish("/anything", json!(1)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn resumed_socket_receives_pushes() {
        let server = server();
        let mut first = Socket::open(&server, TransportConfig::default());
        let cid = first.handshake().await;
        first.send(json!([{"channel": "/meta/subscribe", "id": "2", "clientId": cid, "subscription": "/r"}]));
        first.messages().await;
        drop(first);
        let mut second = Socket::open(&server, TransportConfig::default());
        second.send(json!([{"channel": "/meta/connect", "id": "3", "clientId": cid, "advice": {"timeout": 0}}]));
        second.messages().await;
        server.publish("/r", json!("again")).expect("broadcast");
        assert_eq!(
            second.messages().await,
            json!([{"channel": "/r", "data": "again"}])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn non_text_frames_close_the_socket() {
        let server = server();
        for (frame, code) in [
            (Inbound::Binary, close::UNSUPPORTED_DATA),
            (Inbound::Overflow, close::TOO_BIG),
        ] {
            let mut socket = Socket::open(&server, TransportConfig::default());
            socket.to_server.unbounded_send(frame).expect("open");
            assert!(matches!(socket.next().await, Outbound::Close(c, _) if c == code));
        }
        let mut socket = Socket::open(&server, TransportConfig::default());
        socket
            .to_server
            .unbounded_send(Inbound::Ping(b"hi".to_vec()))
            .expect("open");
        assert_eq!(socket.next().await, Outbound::Pong(b"hi".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn close_frame_is_answered_and_shutdown_closes_with_1001() {
        let server = server();
        let mut socket = Socket::open(&server, TransportConfig::default());
        socket
            .to_server
            .unbounded_send(Inbound::Close)
            .expect("open");
        assert_eq!(
            socket.next().await,
            Outbound::Close(close::NORMAL, String::new())
        );

        let mut socket = Socket::open(&server, TransportConfig::default());
        let cid = socket.handshake().await;
        socket.send(json!([{"channel": "/meta/connect", "id": "2", "clientId": cid, "advice": {"timeout": 0}}]));
        socket.messages().await;
        socket.send(json!([{"channel": "/meta/connect", "id": "3", "clientId": cid}]));
        tokio::time::sleep(Duration::from_millis(10)).await;
        server.shutdown().await;
        assert_eq!(
            socket.messages().await,
            json!([{"channel": "/meta/connect", "id": "3", "successful": true,
                    "advice": {"reconnect": "retry", "interval": 1000, "timeout": 5000}}])
        );
        assert_eq!(
            socket.next().await,
            Outbound::Close(close::GOING_AWAY, "server shutting down".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn draining_answers_the_held_connect_then_closes_with_1001() {
        let server = server();
        let mut socket = Socket::open(&server, TransportConfig::default());
        let cid = socket.handshake().await;
        socket.send(json!([{"channel": "/meta/connect", "id": "2", "clientId": cid, "advice": {"timeout": 0}}]));
        socket.messages().await;
        socket.send(json!([{"channel": "/meta/connect", "id": "3", "clientId": cid}]));
        tokio::time::sleep(Duration::from_millis(10)).await;
        server.drain(Duration::from_millis(1));
        assert_eq!(
            socket.messages().await,
            json!([{"channel": "/meta/connect", "id": "3", "successful": false,
                    "error": "503::draining", "advice": {"reconnect": "handshake", "interval": 1000}}])
        );
        assert_eq!(
            socket.next().await,
            Outbound::Close(close::GOING_AWAY, "server draining".into())
        );
        assert_eq!(server.session_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_socket_is_closed() {
        let server = server();
        let mut config = TransportConfig::default();
        config.websocket.idle_timeout = Duration::from_secs(30);
        let mut socket = Socket::open(&server, config);
        let started = tokio::time::Instant::now();
        assert_eq!(
            socket.next().await,
            Outbound::Close(close::NORMAL, "idle timeout".into())
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
