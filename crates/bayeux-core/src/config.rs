//! Engine options, named and defaulted as in Java CometD.

use std::time::Duration;

/// A transport a client can use, as named in `supportedConnectionTypes` and `connectionType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// `callback-polling`: HTTP GET with a JSONP callback.
    CallbackPolling,
    /// `long-polling`: HTTP POST with a JSON body.
    LongPolling,
    /// `websocket`: one websocket per client.
    WebSocket,
    /// A local session: server code acting as a client, in process.
    Local,
}

impl TransportKind {
    /// The Bayeux name of the transport.
    pub fn name(self) -> &'static str {
        match self {
            Self::CallbackPolling => "callback-polling",
            Self::LongPolling => "long-polling",
            Self::WebSocket => "websocket",
            Self::Local => "local",
        }
    }

    /// Parses a Bayeux transport name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "callback-polling" => Some(Self::CallbackPolling),
            "long-polling" => Some(Self::LongPolling),
            "websocket" => Some(Self::WebSocket),
            _ => None,
        }
    }

    /// True for the HTTP transports, which carry the browser cookie and one request per hold.
    pub fn is_http(self) -> bool {
        matches!(self, Self::CallbackPolling | Self::LongPolling)
    }
}

/// What happens when a message is queued for a session whose queue holds `max_queue` messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueFullPolicy {
    /// Disconnect the session: its client re-handshakes (`402::session_unknown` on its next
    /// request) and starts afresh; nothing is silently lost without it knowing.
    Disconnect,
    /// Drop the oldest queued message to make room: a client that fell behind loses the
    /// oldest of what it had not received yet, and everyone else is unaffected.
    #[default]
    DropOldest,
}

/// A per-session publish rate: at most `messages` publishes per `per`, with bursts up to
/// `messages` (a token bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishRate {
    /// Publishes allowed per period, and the largest burst.
    pub messages: u32,
    /// The period.
    pub per: Duration,
}

/// Options of the protocol engine. Defaults are Java CometD 8's.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long a `/meta/connect` is held when nothing is queued (`timeout`, 20 s).
    pub timeout: Duration,
    /// Delay the client waits between a connect reply and its next connect (`interval`, 0).
    pub interval: Duration,
    /// Grace after a connect reply before a silent session expires (`maxInterval`, 10 s).
    pub max_interval: Duration,
    /// Bound of each session's queue (`maxQueue`; 10 000 here, where Java is unbounded).
    pub max_queue: usize,
    /// What to drop when a queue is full.
    pub queue_full_policy: QueueFullPolicy,
    /// Most live sessions; a handshake beyond is refused with `503::too_many_sessions` and
    /// advice to try again later (100 000).
    pub max_sessions: usize,
    /// Most live sessions per browser cookie; a handshake beyond is refused with
    /// `403::too_many_browser_sessions` (100). Unlike `max_sessions_per_browser` this counts
    /// sessions, not held connects.
    pub max_browser_sessions: usize,
    /// Most subscriptions per session; a subscribe beyond is refused with
    /// `403::too_many_subscriptions` (1 000).
    pub max_subscriptions: usize,
    /// Most channels in existence; a publish or subscribe that would create one more is
    /// refused with `403::too_many_channels` (100 000).
    pub max_channels: usize,
    /// Publishes allowed per session and period; beyond, `429::publish_rate_exceeded`
    /// (unlimited by default).
    pub max_publish_rate: Option<PublishRate>,
    /// Longest wait of a lazy message before it is sent (`maxLazyTimeout`, 5 s). Lazy flushes
    /// are checked each sweep, so they may be up to one sweep period late.
    pub max_lazy_timeout: Duration,
    /// How long a held connect released by a delivery waits before it is answered, so that
    /// deliveries arriving meanwhile go out in the same answer (no Java equivalent; 0, the
    /// default, answers at once). Fewer HTTP exchanges under a stream of deliveries, at the
    /// price of up to this much latency; websocket pushes are not delayed.
    pub flush_window: Duration,
    /// Whether a publisher subscribed to a channel receives its own message (`broadcastToPublisher`).
    pub broadcast_to_publisher: bool,
    /// Deliveries only in `/meta/connect` replies, never piggy-backed (`metaConnectDeliverOnly`).
    pub meta_connect_deliver_only: bool,
    /// Held connects allowed per browser cookie; negative is unlimited (`maxSessionsPerBrowser`, 1).
    pub max_sessions_per_browser: i32,
    /// The same for requests over HTTP/2, where one connection carries any number of
    /// requests, so held connects do not use up the browser's connections; negative is
    /// unlimited (`http2MaxSessionsPerBrowser`, -1 as in Java CometD).
    pub http2_max_sessions_per_browser: i32,
    /// Poll interval advised to the extra sessions of a browser (`multiSessionInterval`, 2 s).
    pub multi_session_interval: Duration,
    /// Accept a `clientId` without the cookie of the browser that handshook it
    /// (`trustClientSession`, false).
    pub trust_client_session: bool,
    /// Add `maxInterval` to advice so clients re-handshake after long outages
    /// (`handshakeReconnect`, false).
    pub handshake_reconnect: bool,
    /// Transports allowed and offered in handshake replies (`allowedTransports`), in the
    /// server's order of preference: websocket, long-polling, callback-polling.
    pub transports: Vec<TransportKind>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(20_000),
            interval: Duration::ZERO,
            max_interval: Duration::from_millis(10_000),
            max_queue: 10_000,
            queue_full_policy: QueueFullPolicy::DropOldest,
            max_lazy_timeout: Duration::from_millis(5_000),
            flush_window: Duration::ZERO,
            max_sessions: 100_000,
            max_browser_sessions: 100,
            max_subscriptions: 1_000,
            max_channels: 100_000,
            max_publish_rate: None,
            broadcast_to_publisher: true,
            meta_connect_deliver_only: false,
            max_sessions_per_browser: 1,
            http2_max_sessions_per_browser: -1,
            multi_session_interval: Duration::from_millis(2_000),
            trust_client_session: false,
            handshake_reconnect: false,
            transports: vec![
                TransportKind::WebSocket,
                TransportKind::LongPolling,
                TransportKind::CallbackPolling,
            ],
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
