//! Who may handshake, subscribe and publish: the security policy and channel authorizers.
//!
//! The policy is consulted first; then the authorizers registered on the channel and on the
//! patterns matching it. With no authorizer, the operation is granted; any `Deny` refuses it;
//! otherwise at least one `Grant` is needed. Refusals carry CometD's error strings:
//! `403:denied_by_security_policy:subscribe_denied`, `403:<reason>:publish_denied`, ...

use std::borrow::Cow;
use std::net::SocketAddr;

use bayeux_message::{ChannelName, Message, Refusal};

use crate::engine::RequestContext;
use crate::session::Session;

/// An operation on a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Publishing a message on the channel.
    Publish,
    /// Subscribing to the channel.
    Subscribe,
}

impl Operation {
    fn denied(self) -> &'static str {
        match self {
            Self::Publish => "publish_denied",
            Self::Subscribe => "subscribe_denied",
        }
    }
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    /// Refuse, with a reason that goes into the error string (`403:<reason>:..._denied`).
    Deny(Cow<'static, str>),
    /// Allow, unless another authorizer denies.
    Grant,
    /// No opinion.
    Ignore,
}

/// Decides operations on the channel (or pattern) it is registered on.
pub trait Authorizer: Send + Sync {
    /// Whether `session` may perform `operation` on `channel`, asked by `message`.
    fn authorize(
        &self,
        operation: Operation,
        channel: &ChannelName,
        session: &Session,
        message: &Message,
    ) -> Authorization;
}

impl<F> Authorizer for F
where
    F: Fn(Operation, &ChannelName, &Session, &Message) -> Authorization + Send + Sync,
{
    fn authorize(
        &self,
        operation: Operation,
        channel: &ChannelName,
        session: &Session,
        message: &Message,
    ) -> Authorization {
        self(operation, channel, session, message)
    }
}

/// The server-wide policy. Every method allows by default.
pub trait SecurityPolicy: Send + Sync {
    /// Whether a handshake may create `session` (not yet visible to anyone). `ctx` carries the
    /// HTTP request (headers, cookies, peer address), `message` the handshake with its `ext`
    /// (credentials). Set session attributes here for later decisions. A refusal is answered
    /// `403::handshake_denied` with advice `reconnect: none`.
    fn can_handshake(&self, _session: &Session, _ctx: &RequestContext, _message: &Message) -> bool {
        true
    }

    /// Whether `session` may subscribe to `channel`.
    fn can_subscribe(
        &self,
        _session: &Session,
        _channel: &ChannelName,
        _message: &Message,
    ) -> bool {
        true
    }

    /// Whether `session` may publish `message` on `channel`.
    fn can_publish(&self, _session: &Session, _channel: &ChannelName, _message: &Message) -> bool {
        true
    }
}

/// Allows everything the protocol allows.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl SecurityPolicy for AllowAll {}

/// The HTTP request behind a Bayeux request (for a websocket: its upgrade request).
#[derive(Clone, Debug, Default)]
pub struct HttpInfo {
    /// Request headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
}

impl HttpInfo {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of a cookie sent with the request.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// Runs the policy and then the authorizers for one operation.
pub(crate) fn check(
    policy: &dyn SecurityPolicy,
    authorizers: &[std::sync::Arc<dyn Authorizer>],
    operation: Operation,
    channel: &ChannelName,
    session: &Session,
    message: &Message,
) -> Result<(), Refusal> {
    let allowed = match operation {
        Operation::Publish => policy.can_publish(session, channel, message),
        Operation::Subscribe => policy.can_subscribe(session, channel, message),
    };
    let denial =
        |reason: &str| Refusal::Denied(format!("403:{reason}:{}", operation.denied()).into());
    if !allowed {
        return Err(denial("denied_by_security_policy"));
    }
    if authorizers.is_empty() {
        return Ok(());
    }
    let mut granted = false;
    for authorizer in authorizers {
        match authorizer.authorize(operation, channel, session, message) {
            Authorization::Deny(reason) => return Err(denial(&reason)),
            Authorization::Grant => granted = true,
            Authorization::Ignore => {}
        }
    }
    if granted {
        Ok(())
    } else {
        Err(denial("denied_by_not_granting"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_headers_are_found() {
        let info = HttpInfo {
            headers: vec![
                ("cookie".into(), "a=1; BAYEUX_BROWSER=xyz".into()),
                ("authorization".into(), "Bearer t".into()),
            ],
            remote_addr: None,
        };
        assert_eq!(info.cookie("BAYEUX_BROWSER"), Some("xyz"));
        assert_eq!(info.cookie("b"), None);
        assert_eq!(info.header("Authorization"), Some("Bearer t"));
    }
}
