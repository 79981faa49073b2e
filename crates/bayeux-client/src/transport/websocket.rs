//! The `websocket` transport: one socket per session, each batch one text frame.
//!
//! Replies and deliveries arrive on the socket in any order and at any time, so the reading
//! half runs as its own task ([`read_loop`]) and hands every batch to the client, which matches
//! replies to requests by `id`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bayeux_message::{parse_batch, Message};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, COOKIE, SET_COOKIE};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::WebSocketStream;

use super::connector::{self, Connector, Stream};
use super::TransportError;
use crate::cookie::CookieJar;

type Socket = WebSocketStream<Stream>;

/// The reading half of an open socket, for [`read_loop`].
pub(crate) type Reader = SplitStream<Socket>;

/// The writing half of an open socket.
pub(crate) struct WsConnection {
    sink: tokio::sync::Mutex<SplitSink<Socket, Frame>>,
    /// Tells this socket from the ones before it: a request waiting for a reply fails when the
    /// socket it was sent on closes, not when another one does.
    pub generation: u64,
    closed: AtomicBool,
}

/// Opens a websocket to `url`, sending the jar's cookies with the upgrade request.
///
/// A server that cannot be reached gives [`TransportError::Connect`] (or
/// [`TransportError::Tls`] when the TLS handshake fails); one that is reached but does not
/// upgrade (an HTTP error, or the socket closed) gives [`TransportError::WebSocketRefused`], the
/// signal to fall back to long-polling.
pub(crate) async fn open(
    url: &str,
    connector: &Connector,
    cookies: &CookieJar,
    timeout: Duration,
    generation: u64,
) -> Result<(WsConnection, Reader), TransportError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| TransportError::Connect(e.to_string()))?;
    if let Some(header) = cookies.header() {
        let value =
            HeaderValue::from_str(&header).map_err(|e| TransportError::Protocol(e.to_string()))?;
        request.headers_mut().insert(COOKIE, value);
    }
    let (host, port, secure) =
        connector::target(request.uri()).map_err(|e| TransportError::Connect(e.to_string()))?;
    let stream = tokio::time::timeout(timeout, connector.connect(&host, port, secure))
        .await
        .map_err(|_| TransportError::Connect("timed out".into()))?
        .map_err(|e| match connector::tls_failure(&e) {
            Some(why) => TransportError::Tls(why),
            None => TransportError::Connect(e.to_string()),
        })?;
    let (socket, response) =
        tokio::time::timeout(timeout, tokio_tungstenite::client_async(request, stream))
            .await
            .map_err(|_| TransportError::WebSocketRefused("no upgrade in time".into()))?
            .map_err(|e| TransportError::WebSocketRefused(e.to_string()))?;
    for value in response.headers().get_all(SET_COOKIE) {
        if let Ok(text) = value.to_str() {
            cookies.store(text);
        }
    }
    let (sink, reader) = socket.split();
    let connection = WsConnection {
        sink: tokio::sync::Mutex::new(sink),
        generation,
        closed: AtomicBool::new(false),
    };
    Ok((connection, reader))
}

impl WsConnection {
    /// Sends one batch (JSON array text) as one text frame.
    pub async fn send(&self, text: String) -> Result<(), TransportError> {
        if self.is_closed() {
            return Err(TransportError::Closed);
        }
        let mut sink = self.sink.lock().await;
        sink.send(Frame::text(text)).await.map_err(|e| {
            self.mark_closed();
            TransportError::Io(e.to_string())
        })
    }

    /// Closes the socket (a normal close); the reader then ends.
    pub async fn close(&self) {
        self.mark_closed();
        let _ = self.sink.lock().await.close().await;
    }

    /// True once the socket failed or was closed: the next request opens a new one.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Records that the socket is unusable.
    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Reads frames until the socket closes, handing each batch of messages to `on_batch`.
///
/// Frames that are not JSON arrays of messages are skipped: one bad frame from the server is
/// no reason to lose the session.
pub(crate) async fn read_loop(mut reader: Reader, mut on_batch: impl FnMut(Vec<Message>)) {
    while let Some(frame) = reader.next().await {
        match frame {
            Ok(Frame::Text(text)) => {
                if let Ok(batch) = parse_batch(text.as_bytes()) {
                    on_batch(batch);
                }
            }
            Ok(Frame::Close(_)) | Err(_) => break,
            // Pings are answered by tungstenite itself; binary frames are not Bayeux.
            Ok(_) => {}
        }
    }
}
