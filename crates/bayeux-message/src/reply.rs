//! Replies to requests, advice, and the refusals with CometD's exact error strings.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{ClientId, EncodedMessage, Message};

/// The reply to one request message: same `channel`, same `id`, plus `successful`.
///
/// Typed rather than a JSON map because replies are built on every request; fields that are
/// `None` are left out of the wire form.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    /// The request's channel (absent only when the request had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The request's `id`, echoed as the same JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Whether the request succeeded.
    pub successful: bool,
    /// `code:args:text` when the request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Cow<'static, str>>,
    /// The new session's id (handshake replies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// `"1.0"` (handshake replies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    /// `"1.0"` (handshake replies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_version: Option<&'static str>,
    /// Transports the server offers (handshake replies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_connection_types: Option<Vec<String>>,
    /// The request's `subscription`, echoed verbatim (subscribe and unsubscribe replies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Value>,
    /// How the client should reconnect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<Advice>,
    /// Extension data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<Map<String, Value>>,
    /// Any other top-level field an extension adds (`timestamp`, ...).
    #[serde(flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Reply {
    /// A successful reply to `request`, echoing its channel and id.
    pub fn success(request: &Message) -> Self {
        Self {
            channel: request.channel().map(str::to_owned),
            id: request.id().cloned(),
            successful: true,
            ..Self::default()
        }
    }

    /// Encodes the reply for the wire.
    pub fn encode(&self) -> EncodedMessage {
        EncodedMessage::from_value(self)
    }
}

/// What the client should do next, sent in replies.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Advice {
    /// `retry`, `handshake` or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<Reconnect>,
    /// Milliseconds to wait before the next `/meta/connect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// Milliseconds the server holds a `/meta/connect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Milliseconds after which an unconnected client should re-handshake.
    #[serde(rename = "maxInterval", skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<u64>,
    /// Set when too many sessions of one browser hold a connect at once.
    #[serde(rename = "multiple-clients", skip_serializing_if = "Option::is_none")]
    pub multiple_clients: Option<bool>,
}

impl Advice {
    /// `{"reconnect":"handshake","interval":0}`: the session is gone, start again.
    pub fn rehandshake() -> Self {
        Self {
            reconnect: Some(Reconnect::Handshake),
            interval: Some(0),
            ..Self::default()
        }
    }

    /// `{"reconnect":"none"}`: stop.
    pub fn stop() -> Self {
        Self {
            reconnect: Some(Reconnect::None),
            ..Self::default()
        }
    }
}

/// The `reconnect` value of an advice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reconnect {
    /// Send `/meta/handshake` again.
    Handshake,
    /// Stop.
    None,
    /// Send `/meta/connect` again.
    Retry,
}

/// A request refused by the server, with CometD's error string.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// `400::channel_missing`: the message has no string `channel`.
    ChannelMissing,
    /// `405::channel_invalid`: the channel name is not valid here.
    ChannelInvalid,
    /// `403:denied_by_security_policy:channel_create_denied`: publish to an unknown meta channel.
    ChannelCreateDenied,
    /// `400::connection_type_unsupported`: `/meta/connect` over a transport the server does not
    /// allow.
    ConnectionTypeUnsupported,
    /// `403:denied_by_security_policy:create_denied`: subscribe to an unknown meta channel.
    CreateDenied,
    /// `400::data_missing`: a publish without `data`.
    DataMissing,
    /// `403:<reason>:<operation>_denied` or any other error string chosen by the application.
    Denied(Cow<'static, str>),
    /// `404::message_deleted`: an extension deleted the message.
    MessageDeleted,
    /// `429::publish_rate_exceeded`: the session publishes faster than `maxPublishRate`.
    PublishRateExceeded,
    /// `403::too_many_browser_sessions`: this browser has `maxBrowserSessions` sessions.
    TooManyBrowserSessions,
    /// `403::too_many_channels`: `maxChannels` channels exist already.
    TooManyChannels,
    /// `503::too_many_sessions`: the server has `maxSessions` sessions.
    TooManySessions,
    /// `403::too_many_subscriptions`: the session has `maxSubscriptions` subscriptions.
    TooManySubscriptions,
    /// `503::backplane_unavailable`: a clustered server could not reach its backplane (the
    /// shared log and session registry), so nothing was done; retry in a while.
    BackplaneUnavailable,
    /// `503::draining`: this server is draining; handshake again (with another server).
    Draining,
    /// `503::draining` with advice to retry: a draining node of a cluster does not take
    /// sessions over; the client's next request reaches another node, which does.
    DrainingRetry,
    /// `403::handshake_denied`: the security policy refused the handshake.
    HandshakeDenied,
    /// `405::message_id_invalid`: `id` is neither an alphanumeric string nor an integer.
    MessageIdInvalid,
    /// `403:denied_by_security_policy:publish_denied`: publish to a protocol meta channel.
    PublishDenied,
    /// `402::session_unknown`: unknown, expired or disconnected session, or a cookie mismatch.
    SessionUnknown,
    /// `403:denied_by_security_policy:subscribe_denied`: subscribe to a protocol meta channel.
    SubscribeDenied,
    /// `403::subscription_invalid`: `subscription` is not a valid channel or list of channels.
    SubscriptionInvalid,
    /// `403::subscription_missing`: subscribe or unsubscribe without `subscription`.
    SubscriptionMissing,
    /// `403::unsubscribe_failed`: unsubscribe from a meta channel.
    UnsubscribeFailed,
    /// `400::The replayId {N} you provided was invalid...`: a subscribe asked to replay
    /// history from an id whose successors were dropped, or from a value that is no id. The
    /// text is Salesforce's, which replaying clients look for; it carries the value as sent.
    ReplayIdInvalid(String),
}

impl Refusal {
    /// The error string, as Java CometD spells it.
    pub fn error(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::ChannelMissing => "400::channel_missing",
            Self::ChannelInvalid => "405::channel_invalid",
            Self::ChannelCreateDenied => "403:denied_by_security_policy:channel_create_denied",
            Self::ConnectionTypeUnsupported => "400::connection_type_unsupported",
            Self::CreateDenied => "403:denied_by_security_policy:create_denied",
            Self::DataMissing => "400::data_missing",
            Self::Denied(text) => return text.clone(),
            Self::ReplayIdInvalid(value) => {
                return Cow::Owned(format!(
                    "400::The replayId {{{value}}} you provided was invalid.  Please provide a \
                     valid ID, -2 to replay all events, or -1 to replay only new events."
                ))
            }
            Self::BackplaneUnavailable => "503::backplane_unavailable",
            Self::Draining | Self::DrainingRetry => "503::draining",
            Self::HandshakeDenied => "403::handshake_denied",
            Self::MessageDeleted => "404::message_deleted",
            Self::PublishRateExceeded => "429::publish_rate_exceeded",
            Self::TooManyBrowserSessions => "403::too_many_browser_sessions",
            Self::TooManyChannels => "403::too_many_channels",
            Self::TooManySessions => "503::too_many_sessions",
            Self::TooManySubscriptions => "403::too_many_subscriptions",
            Self::MessageIdInvalid => "405::message_id_invalid",
            Self::PublishDenied => "403:denied_by_security_policy:publish_denied",
            Self::SessionUnknown => "402::session_unknown",
            Self::SubscribeDenied => "403:denied_by_security_policy:subscribe_denied",
            Self::SubscriptionInvalid => "403::subscription_invalid",
            Self::SubscriptionMissing => "403::subscription_missing",
            Self::UnsubscribeFailed => "403::unsubscribe_failed",
        })
    }

    /// The failed reply to `request`.
    ///
    /// An unknown session on `/meta/handshake` or `/meta/connect`, or a connect over a
    /// transport not allowed, also advises a new handshake: without it the JS client would
    /// retry the connect forever.
    pub fn reply_to(&self, request: &Message) -> Reply {
        let channel = request.channel();
        let advice = match (self, channel) {
            (Self::SessionUnknown, Some("/meta/connect" | "/meta/handshake"))
            | (Self::ConnectionTypeUnsupported, _) => Some(Advice::rehandshake()),
            // A refused handshake must not be retried in a loop.
            (Self::HandshakeDenied | Self::TooManyBrowserSessions, _) => Some(Advice::stop()),
            // A draining server sends its clients to handshake again, elsewhere.
            (Self::Draining, _) => Some(Advice {
                reconnect: Some(Reconnect::Handshake),
                interval: Some(1_000),
                ..Advice::default()
            }),
            // The session lives on: try again in a while, here or on another node.
            (Self::BackplaneUnavailable | Self::DrainingRetry, _) => Some(Advice {
                reconnect: Some(Reconnect::Retry),
                interval: Some(1_000),
                ..Advice::default()
            }),
            // A full server may have room later: come back after a while.
            (Self::TooManySessions, _) => Some(Advice {
                reconnect: Some(Reconnect::Handshake),
                interval: Some(5_000),
                ..Advice::default()
            }),
            _ => None,
        };
        let subscription = match channel {
            Some("/meta/subscribe" | "/meta/unsubscribe") => request.subscription().cloned(),
            _ => None,
        };
        Reply {
            channel: channel.map(str::to_owned),
            id: request.id().cloned(),
            successful: false,
            error: Some(self.error()),
            subscription,
            advice,
            ..Reply::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(value: Value) -> Message {
        Message::from_map(value.as_object().expect("object").clone())
    }

    #[test]
    fn session_unknown_on_connect_advises_handshake() {
        let req = message(json!({"channel": "/meta/connect", "id": "9", "clientId": "x"}));
        let reply = serde_json::to_value(Refusal::SessionUnknown.reply_to(&req)).expect("json");
        assert_eq!(
            reply,
            json!({"channel": "/meta/connect", "id": "9", "successful": false,
                   "error": "402::session_unknown",
                   "advice": {"reconnect": "handshake", "interval": 0}})
        );
    }

    #[test]
    fn session_unknown_on_publish_has_no_advice() {
        let req = message(json!({"channel": "/a", "id": "3", "data": 1}));
        let reply = serde_json::to_value(Refusal::SessionUnknown.reply_to(&req)).expect("json");
        assert_eq!(
            reply,
            json!({"channel": "/a", "id": "3", "successful": false, "error": "402::session_unknown"})
        );
    }

    #[test]
    fn subscribe_refusal_echoes_subscription() {
        let req = message(
            json!({"channel": "/meta/subscribe", "id": "2", "subscription": ["/a", "/b<"]}),
        );
        let reply =
            serde_json::to_value(Refusal::SubscriptionInvalid.reply_to(&req)).expect("json");
        assert_eq!(
            reply,
            json!({"channel": "/meta/subscribe", "id": "2", "successful": false,
                   "error": "403::subscription_invalid", "subscription": ["/a", "/b<"]})
        );
    }

    #[test]
    fn success_reply_keeps_numeric_id_as_number() {
        let req = message(json!({"channel": "/a", "id": 4}));
        let reply = serde_json::to_value(Reply::success(&req)).expect("json");
        assert_eq!(reply, json!({"channel": "/a", "id": 4, "successful": true}));
    }
}
