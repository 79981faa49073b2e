//! What the two HTTP transports share: the browser cookie, one batch through the server, and
//! waiting for a held connect.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bayeux_message::{EncodedMessage, Message};

use bayeux_server::{
    BrowserId, Hold, HoldEnd, HttpInfo, RequestContext, RequestError, Server, TransportKind,
};

use crate::config::TransportConfig;

/// The HTTP response to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// `Content-Type` of `body`.
    pub content_type: &'static str,
    /// The body: messages on success, a short plain-text reason otherwise.
    pub body: String,
    /// A `Set-Cookie` header value to send.
    pub set_cookie: Option<String>,
}

/// Content type of plain-text error responses.
pub const TEXT_UTF8: &str = "text/plain;charset=UTF-8";

impl HttpReply {
    /// A plain-text error response.
    pub fn error(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            content_type: TEXT_UTF8,
            body: reason.into(),
            set_cookie: None,
        }
    }

    /// `400 Unknown Bayeux Transport`: no transport takes this request, as Java CometD says it.
    pub fn unknown_transport() -> Self {
        Self::error(400, "Unknown Bayeux Transport")
    }
}

/// Tells whether the client of an HTTP request has gone: its connection's read side reached
/// the end (the client closed it, or it was reset). A web framework that can see the
/// connection provides one, so that a held `/meta/connect` nobody will read is not answered
/// with messages that would vanish with it.
pub trait PeerWatch: Send + Sync {
    /// Whether the client has closed the connection, as of now.
    fn is_closed(&self) -> bool;

    /// Ready once the connection is closed by the client; pending while it is open (or while
    /// the client sent more bytes: then it is alive, and this stays pending).
    fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()>;
}

/// The browser-facing part of an HTTP request.
#[derive(Clone, Default)]
pub struct HttpOrigin<'a> {
    /// The value of the browser cookie, if the request carried it.
    pub browser_cookie: Option<&'a str>,
    /// Whether the request came over TLS (for the cookie's `Secure` attribute).
    pub secure: bool,
    /// Whether the request came over HTTP/2 or later (`http2MaxSessionsPerBrowser`).
    pub multiplexed: bool,
    /// Headers and peer address, for the security policy's `can_handshake`: made only for a
    /// batch with a handshake, and only when the application installed a policy (copying
    /// every header of every request would cost a dozen allocations per exchange).
    pub http: Option<&'a dyn Fn() -> Arc<HttpInfo>>,
    /// The connection, watched while a `/meta/connect` is held on it.
    pub peer: Option<&'a dyn PeerWatch>,
}

impl std::fmt::Debug for HttpOrigin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOrigin")
            .field("browser_cookie", &self.browser_cookie)
            .field("secure", &self.secure)
            .field("watched", &self.peer.is_some())
            .finish_non_exhaustive()
    }
}

/// The messages of a successful exchange, and the cookie to set.
#[derive(Debug)]
pub(crate) struct Exchanged {
    pub(crate) messages: Vec<EncodedMessage>,
    pub(crate) set_cookie: Option<String>,
}

/// Longest browser cookie value taken as is; anything else gets a fresh cookie.
const MAX_COOKIE_LEN: usize = 128;

/// Runs one batch for an HTTP transport: cookie in, messages (after any hold) and cookie out.
pub(crate) async fn exchange(
    server: &Server,
    config: &TransportConfig,
    transport: TransportKind,
    origin: HttpOrigin<'_>,
    batch: Vec<Message>,
) -> Result<Exchanged, HttpReply> {
    let peer = origin.peer;
    match begin(server, config, transport, origin, batch).await? {
        Begun::Done(exchanged) => Ok(exchanged),
        Begun::Held(held) => finish(server, config, held, peer).await,
    }
}

/// A batch run as far as it goes without waiting.
pub(crate) enum Begun {
    /// Nothing held: the answer.
    Done(Exchanged),
    /// A `/meta/connect` is held.
    Held(Held),
}

/// A held `/meta/connect`, with what its answer starts with: what a held request keeps while it
/// waits, and nothing else. Give it to [`finish_post`](crate::long_polling::finish_post) at
/// once: until then the session counts its connect as held, and nothing answers it.
#[derive(Debug)]
pub struct Held {
    hold: Hold,
    exchanged: Exchanged,
}

/// Runs a batch through the server, up to a hold.
pub(crate) async fn begin(
    server: &Server,
    config: &TransportConfig,
    transport: TransportKind,
    origin: HttpOrigin<'_>,
    mut batch: Vec<Message>,
) -> Result<Begun, HttpReply> {
    // A connect from a client that already left would take what is queued into an answer
    // nobody reads: it is left out, and the queue waits for the session's next connect. The
    // rest of the batch (publishes, subscriptions) is what the client asked for, and is done.
    let is_connect = |m: &Message| m.channel() == Some("/meta/connect");
    if let Some(peer) = origin.peer {
        if batch.iter().any(is_connect) && peer.is_closed() {
            batch.retain(|m| !is_connect(m));
            if batch.is_empty() {
                return Err(HttpReply::error(499, "client closed the connection"));
            }
        }
    }
    let known_browser = origin.browser_cookie.filter(|v| {
        !v.is_empty() && v.len() <= MAX_COOKIE_LEN && v.bytes().all(|b| b.is_ascii_graphic())
    });
    let mut ctx = RequestContext::new(transport).with_browser(known_browser.map(BrowserId::new));
    if server.engine().has_security_policy()
        && batch.iter().any(|m| m.channel() == Some("/meta/handshake"))
    {
        ctx.http = origin.http.map(|info| info());
    }
    ctx.multiplexed = origin.multiplexed;
    let outcome = match server.handle(&ctx, batch).await {
        Ok(outcome) => outcome,
        Err(RequestError::Empty) => return Err(HttpReply::error(400, "empty batch")),
        Err(RequestError::HandshakeNotAlone) => {
            return Err(HttpReply::error(
                500,
                "protocol violation: handshake must be alone in its request",
            ))
        }
        Err(other) => return Err(HttpReply::error(400, format!("{other:?}"))),
    };
    // The cookie is only set by a successful handshake, as Java CometD does.
    let set_cookie = outcome
        .new_browser
        .as_ref()
        .map(|browser| config.cookie.set_cookie(browser.as_str(), origin.secure));
    let exchanged = Exchanged {
        messages: outcome.messages,
        set_cookie,
    };
    Ok(match outcome.hold {
        Some(hold) => Begun::Held(Held { hold, exchanged }),
        None => Begun::Done(exchanged),
    })
}

/// Waits for a held connect, watching its connection, and adds what it was answered.
pub(crate) async fn finish(
    server: &Server,
    config: &TransportConfig,
    held: Held,
    peer: Option<&dyn PeerWatch>,
) -> Result<Exchanged, HttpReply> {
    let Held {
        hold,
        mut exchanged,
    } = held;
    let end = match peer {
        // The messages stay queued for the session's next connect if the client goes.
        Some(peer) => {
            server
                .wait_hold_unless(hold, poll_fn(|cx| peer.poll_closed(cx)))
                .await
        }
        None => Some(server.wait_hold(hold).await),
    };
    match end {
        Some(HoldEnd::Reply(later)) => {
            exchanged.messages.extend(later);
            Ok(exchanged)
        }
        Some(HoldEnd::Superseded) => Err(HttpReply::error(
            config.duplicate_meta_connect_code,
            "superseded by a newer /meta/connect",
        )),
        // Nobody reads this answer.
        None => Err(HttpReply::error(499, "client closed the connection")),
    }
}
