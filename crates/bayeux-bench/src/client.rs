//! A raw Bayeux session over long-polling or websocket, as a browser client would drive it.
//!
//! [`Client`] follows the protocol the way the official clients do: handshake offering both
//! transports, a first `/meta/connect` with `advice: {timeout: 0}`, then held connects re-sent
//! as soon as each is answered (after the advised `interval`). It keeps whatever cookie the
//! server sets and never invents one, so it works against servers that use a browser cookie
//! (CometD) and servers that do not (Faye). Each long-polling session is one simulated browser
//! with its own cookie jar; a second connection for requests made while a connect is held is a
//! [`Client::twin`]. What to do with deliveries is the caller's: every incoming message is
//! handed to a callback.

use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::http::{CookieJar, HttpConn, Target};
use crate::wire::{for_each_message, Batch, Incoming};

/// The Bayeux transport a client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// `long-polling`: HTTP POSTs, deliveries in held `/meta/connect` responses.
    LongPolling,
    /// `websocket`: JSON text frames, deliveries pushed.
    Websocket,
}

impl Transport {
    /// The Bayeux `connectionType` name.
    pub fn name(self) -> &'static str {
        match self {
            Transport::LongPolling => "long-polling",
            Transport::Websocket => "websocket",
        }
    }
}

/// Websocket read buffer: larger than any frame the scenarios receive in one read.
const READ_BUFFER: usize = 16 * 1024;

/// The callback that sees every incoming message.
pub type OnMessage<'f> = dyn FnMut(&Incoming<'_>) + Send + 'f;

/// One Bayeux session on one connection.
pub struct Client {
    transport: Transport,
    link: Link,
    cid: String,
    jar: CookieJar,
    next_id: u64,
    out: String,
    /// The id of the first request in the batch last begun.
    batch_first: u64,
    /// Websocket only: the id of the held connect now outstanding, re-sent when answered.
    held: Option<u64>,
    /// The last advised `interval`, waited before each held connect.
    interval: Duration,
    /// Failed replies to publishes (meta failures end the session with an error instead).
    publish_failures: u64,
    last_failure: Option<String>,
}

enum Link {
    Polling(HttpConn),
    Socket(Box<WebSocketStream<TcpStream>>),
}

impl Client {
    /// Opens a connection to `target` over `transport` (for websocket, performs the upgrade).
    pub async fn open(target: &Target, transport: Transport) -> io::Result<Client> {
        let link = match transport {
            Transport::LongPolling => Link::Polling(HttpConn::connect(target).await?),
            Transport::Websocket => {
                let tcp = TcpStream::connect(target.addr).await?;
                tcp.set_nodelay(true)?;
                // tungstenite zero-fills its whole read buffer before every read; at its 128 KiB
                // default that memset was a quarter of the generator's CPU with 1 000 sockets.
                let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
                let (ws, _) =
                    tokio_tungstenite::client_async_with_config(target.ws_url(), tcp, Some(config))
                        .await
                        .map_err(|e| io::Error::other(format!("websocket upgrade: {e}")))?;
                Link::Socket(Box::new(ws))
            }
        };
        Ok(Client {
            transport,
            link,
            cid: String::new(),
            jar: CookieJar::default(),
            next_id: 1,
            batch_first: 1,
            out: String::with_capacity(512),
            held: None,
            interval: Duration::ZERO,
            publish_failures: 0,
            last_failure: None,
        })
    }

    /// A long-polling client on a new connection continuing this session (same clientId and
    /// cookies), for requests sent while this one holds a connect. Its ids start far from this
    /// client's so replies can never be confused in logs.
    pub async fn twin(&self, target: &Target) -> io::Result<Client> {
        let mut twin = Client::open(target, Transport::LongPolling).await?;
        twin.cid = self.cid.clone();
        twin.jar = self.jar.clone();
        twin.next_id = 1_000_000_000;
        Ok(twin)
    }

    /// The transport this client uses.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Failed publish replies so far, and the text of the last one.
    pub fn publish_failures(&self) -> (u64, Option<&str>) {
        (self.publish_failures, self.last_failure.as_deref())
    }

    /// Handshakes, then sends the first connect (`timeout: 0`, answered at once).
    pub async fn establish(&mut self) -> io::Result<()> {
        self.handshake().await?;
        self.first_connect().await
    }

    /// Sends `/meta/handshake` offering both transports and keeps the clientId.
    pub async fn handshake(&mut self) -> io::Result<()> {
        let (mut batch, _) = self.batch();
        batch.handshake(&["websocket", "long-polling"]);
        batch.finish();
        let mut cid = None;
        self.exchange(&mut |m: &Incoming<'_>| {
            if m.channel == "/meta/handshake" && m.successful == Some(true) {
                cid = m.client_id.as_deref().map(str::to_string);
            }
        })
        .await?;
        self.cid = cid.ok_or_else(|| io::Error::other("handshake reply without clientId"))?;
        Ok(())
    }

    /// Sends the first `/meta/connect`, with `advice: {timeout: 0}` so it is answered at once.
    pub async fn first_connect(&mut self) -> io::Result<()> {
        let connection_type = self.transport.name();
        let (mut batch, cid) = self.batch();
        batch.connect(cid, connection_type, true);
        batch.finish();
        self.exchange(&mut |_: &Incoming<'_>| {}).await
    }

    /// Subscribes to every channel in `channels` with one batch.
    pub async fn subscribe(
        &mut self,
        channels: &[String],
        on: &mut OnMessage<'_>,
    ) -> io::Result<()> {
        let (mut batch, cid) = self.batch();
        for channel in channels {
            batch.subscribe(cid, channel);
        }
        batch.finish();
        self.exchange(on).await
    }

    /// Starts a batch of requests for [`Client::exchange`]; also returns the clientId the
    /// requests need.
    pub fn batch(&mut self) -> (Batch<'_>, &str) {
        self.batch_first = self.next_id;
        (Batch::new(&mut self.out, &mut self.next_id), &self.cid)
    }

    /// Sends the batch last written and waits for a reply to each of its requests, handing
    /// every incoming message (replies and deliveries) to `on`. A failed meta reply is an
    /// error; failed publish replies are counted.
    pub async fn exchange(&mut self, on: &mut OnMessage<'_>) -> io::Result<()> {
        let end = self.next_id;
        let first = self.batch_first;
        let mut failure = None;
        let mut pending = end - first;
        match &mut self.link {
            Link::Polling(http) => {
                let body = http.post(self.out.as_bytes(), &mut self.jar).await?;
                let mut visit = |m: Incoming<'_>| {
                    note_reply(&m, &mut failure, &mut self.interval);
                    on(&m);
                };
                for_each_message(body, &mut visit).map_err(invalid)?;
                pending = 0;
            }
            Link::Socket(ws) => {
                ws.send(Message::text(self.out.clone()))
                    .await
                    .map_err(io::Error::other)?;
            }
        }
        while pending > 0 {
            let held = self.held;
            let mut renew = false;
            let frame = self.next_frame().await?;
            let mut visit = |m: Incoming<'_>| {
                if m.is_reply() {
                    let id = m.numeric_id();
                    if id.is_some_and(|id| (first..end).contains(&id)) {
                        pending -= 1;
                    }
                    if id.is_some() && id == held {
                        renew = true;
                    }
                    note_reply(&m, &mut failure, &mut self.interval);
                }
                on(&m);
            };
            for_each_message(frame.as_bytes(), &mut visit).map_err(invalid)?;
            if renew {
                self.renew_held().await?;
            }
        }
        self.settle(failure)
    }

    /// One step of keeping the session connected: over long-polling, one held connect round
    /// trip; over websocket, starts holding if needed and processes one incoming frame.
    /// Deliveries go to `on`.
    pub async fn hold(&mut self, on: &mut OnMessage<'_>) -> io::Result<()> {
        if matches!(self.link, Link::Polling(_)) {
            if !self.interval.is_zero() {
                tokio::time::sleep(self.interval).await;
            }
            let connection_type = self.transport.name();
            let (mut batch, cid) = self.batch();
            batch.connect(cid, connection_type, false);
            batch.finish();
            return self.exchange(on).await;
        }
        if self.held.is_none() {
            self.renew_held().await?;
        }
        let held = self.held;
        let mut renew = false;
        let mut failure = None;
        let frame = self.next_frame().await?;
        let mut visit = |m: Incoming<'_>| {
            if m.is_reply() {
                if held.is_some() && m.numeric_id() == held {
                    renew = true;
                }
                note_reply(&m, &mut failure, &mut self.interval);
            }
            on(&m);
        };
        for_each_message(frame.as_bytes(), &mut visit).map_err(invalid)?;
        if renew {
            self.renew_held().await?;
        }
        self.settle(failure)
    }

    async fn renew_held(&mut self) -> io::Result<()> {
        if !self.interval.is_zero() {
            tokio::time::sleep(self.interval).await;
        }
        let mut out = String::with_capacity(160);
        let mut batch = Batch::new(&mut out, &mut self.next_id);
        let id = batch.connect(&self.cid, self.transport.name(), false);
        batch.finish();
        self.held = Some(id);
        if let Link::Socket(ws) = &mut self.link {
            ws.send(Message::text(out))
                .await
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    async fn next_frame(&mut self) -> io::Result<tokio_tungstenite::tungstenite::Utf8Bytes> {
        let Link::Socket(ws) = &mut self.link else {
            unreachable!("frames are read only on websocket links");
        };
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(Message::Close(close))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("websocket closed by the server: {close:?}"),
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    fn settle(&mut self, failure: Option<Failure>) -> io::Result<()> {
        match failure {
            None => Ok(()),
            Some(Failure::Meta(why)) => Err(io::Error::other(why)),
            Some(Failure::Publish(n, why)) => {
                self.publish_failures += n;
                self.last_failure = Some(why);
                Ok(())
            }
        }
    }
}

enum Failure {
    Meta(String),
    Publish(u64, String),
}

/// Notes what a reply means for the session: a failure, or new advice.
fn note_reply(m: &Incoming<'_>, failure: &mut Option<Failure>, interval: &mut Duration) {
    if let Some(advice) = &m.advice {
        if let Some(ms) = advice.interval {
            *interval = Duration::from_millis(ms.max(0.0) as u64);
        }
        if matches!(advice.reconnect.as_deref(), Some("none" | "handshake")) {
            *failure = Some(Failure::Meta(format!(
                "{} reply advises reconnect={}: {}",
                m.channel,
                advice.reconnect.as_deref().unwrap_or_default(),
                m.error.as_deref().unwrap_or("no error field")
            )));
            return;
        }
    }
    if m.successful == Some(false) {
        if m.channel.starts_with("/meta/") {
            *failure = Some(Failure::Meta(m.failure()));
        } else if !matches!(failure, Some(Failure::Meta(_))) {
            let n = match failure {
                Some(Failure::Publish(n, _)) => *n + 1,
                _ => 1,
            };
            *failure = Some(Failure::Publish(n, m.failure()));
        }
    }
}

fn invalid(e: serde_json::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unparsable batch: {e}"))
}
