//! The two ways of carrying Bayeux messages, and what they share.
//!
//! - [`long_polling`]: each batch is an HTTP POST of a JSON array, answered by a JSON array.
//! - [`websocket`]: one socket for everything, each batch a text frame.
//! - [`connector`]: opening the byte stream under both, plain or TLS.

use std::fmt;

use hyper::Uri;

pub(crate) mod connector;
pub(crate) mod long_polling;
pub(crate) mod websocket;

/// A Bayeux transport the client can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// `websocket`: one socket for the whole session; deliveries may arrive at any time.
    WebSocket,
    /// `long-polling`: HTTP POSTs; deliveries come back in `/meta/connect` responses (and in
    /// the responses to other requests).
    LongPolling,
}

impl TransportKind {
    /// The name used in `supportedConnectionTypes` and `connectionType`.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::LongPolling => "long-polling",
        }
    }

    /// The transport with this wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "websocket" => Some(Self::WebSocket),
            "long-polling" => Some(Self::LongPolling),
            _ => None,
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request got no response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// The server could not be reached (connection refused, DNS failure, ...).
    Connect(String),
    /// The TLS handshake failed (`https://`, `wss://`): the server's certificate is not
    /// trusted or not for this host, or client and server have no protocol in common. Retried
    /// with backoff like any connection failure.
    Tls(String),
    /// The server was reached but did not accept the websocket upgrade: it does not offer
    /// websockets, so the client falls back to long-polling.
    WebSocketRefused(String),
    /// An HTTP status other than 200.
    Status(u16),
    /// The connection failed while the request or response was under way.
    Io(String),
    /// The response was not a non-empty JSON array of messages.
    Protocol(String),
    /// The websocket closed before the reply arrived.
    Closed,
    /// No response in time.
    Timeout,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Tls(e) => write!(f, "cannot connect: {e}"),
            Self::WebSocketRefused(e) => write!(f, "websocket upgrade refused: {e}"),
            Self::Status(code) => write!(f, "HTTP status {code}"),
            Self::Io(e) => write!(f, "connection failed: {e}"),
            Self::Protocol(e) => write!(f, "bad response: {e}"),
            Self::Closed => f.write_str("websocket closed"),
            Self::Timeout => f.write_str("no response in time"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Where the server is: the long-polling URL and the matching websocket URL.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// `http://host:port/path`, where requests are POSTed.
    pub http: Uri,
    /// `ws://host:port/path`: the same with the websocket scheme.
    pub ws: String,
}

impl Endpoint {
    /// Parses an `http://` or `https://` URL (`ws://` and `wss://` are accepted too).
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
        let secure = match uri.scheme_str() {
            Some("http" | "ws") => false,
            Some("https" | "wss") => true,
            _ => return Err(format!("{url:?}: the scheme must be http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?}: no host"))?
            .as_str()
            .to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let (http_scheme, ws_scheme) = if secure {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        let http = format!("{http_scheme}://{authority}{path}")
            .parse()
            .map_err(|e| format!("{url:?}: {e}"))?;
        Ok(Self {
            http,
            ws: format!("{ws_scheme}://{authority}{path}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_maps_http_to_ws() {
        let e = Endpoint::parse("http://127.0.0.1:8080/cometd").expect("valid");
        assert_eq!(e.http.to_string(), "http://127.0.0.1:8080/cometd");
        assert_eq!(e.ws, "ws://127.0.0.1:8080/cometd");
        let e = Endpoint::parse("https://example.com/a/cometd?x=1").expect("valid");
        assert_eq!(e.ws, "wss://example.com/a/cometd?x=1");
        let e = Endpoint::parse("wss://[::1]:8443/cometd").expect("valid");
        assert_eq!(e.http.to_string(), "https://[::1]:8443/cometd");
        assert_eq!(e.ws, "wss://[::1]:8443/cometd");
        let e = Endpoint::parse("https://127.0.0.1/cometd").expect("valid");
        assert_eq!(e.ws, "wss://127.0.0.1/cometd");
        let e = Endpoint::parse("ws://h:1").expect("valid");
        assert_eq!(e.http.to_string(), "http://h:1/");
        assert!(Endpoint::parse("ftp://h/x").is_err());
        assert!(Endpoint::parse("/cometd").is_err());
    }

    #[test]
    fn transport_names() {
        for kind in [TransportKind::WebSocket, TransportKind::LongPolling] {
            assert_eq!(TransportKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(TransportKind::from_name("callback-polling"), None);
    }
}
