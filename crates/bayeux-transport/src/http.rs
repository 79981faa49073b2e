//! What the two HTTP transports share: the browser cookie, one batch through the server, and
//! waiting for a held connect.

use bayeux_message::{EncodedMessage, Message};
use std::sync::Arc;

use bayeux_server::{
    BrowserId, HoldEnd, HttpInfo, RequestContext, RequestError, Server, TransportKind,
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

/// The browser-facing part of an HTTP request.
#[derive(Clone, Debug, Default)]
pub struct HttpOrigin<'a> {
    /// The value of the browser cookie, if the request carried it.
    pub browser_cookie: Option<&'a str>,
    /// Whether the request came over TLS (for the cookie's `Secure` attribute).
    pub secure: bool,
    /// Headers and peer address, for the security policy.
    pub http: Option<Arc<HttpInfo>>,
}

/// The messages of a successful exchange, and the cookie to set.
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
    let known_browser = origin.browser_cookie.filter(|v| {
        !v.is_empty() && v.len() <= MAX_COOKIE_LEN && v.bytes().all(|b| b.is_ascii_graphic())
    });
    let browser = match known_browser {
        Some(value) => BrowserId::new(value),
        None => server.engine().new_browser_id(),
    };
    let mut ctx = RequestContext::new(transport).with_browser(Some(browser.clone()));
    ctx.http = origin.http;
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
    let set_cookie = match (&outcome.handshaken, known_browser) {
        (Some(_), None) => Some(config.cookie.set_cookie(browser.as_str(), origin.secure)),
        _ => None,
    };
    let mut messages = outcome.messages;
    if let Some(hold) = outcome.hold {
        match server.wait_hold(hold).await {
            HoldEnd::Reply(later) => messages.extend(later),
            HoldEnd::Superseded => {
                return Err(HttpReply::error(
                    config.duplicate_meta_connect_code,
                    "superseded by a newer /meta/connect",
                ))
            }
        }
    }
    Ok(Exchanged {
        messages,
        set_cookie,
    })
}
