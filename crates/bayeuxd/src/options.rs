//! Options from the command line and the TOML file, with CometD's names and defaults.
//!
//! One struct serves both: flags are the kebab-case form (`--max-interval`), file keys the
//! camelCase form Java CometD uses (`maxInterval`). A flag overrides the file; the file
//! overrides the default. Unknown file keys are refused, naming the key.

use std::path::PathBuf;
use std::time::Duration;

use bayeux_server::{
    ChannelName, EngineConfig, PublishRate, QueueFullPolicy, ReplayIdShape, TransportKind,
};
use bayeux_transport::{CallbackConfig, CookieConfig, TransportConfig, WebSocketConfig};
use clap::Parser;
use serde::Deserialize;

/// A CometD-compatible Bayeux server.
#[derive(Debug, Default, Deserialize, Parser)]
#[command(version, about)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Options {
    /// TOML file of options (CometD names: `timeout`, `maxInterval`, ...).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080]; port 0 picks a free one.
    #[arg(long)]
    pub bind: Option<String>,
    /// Mount path of the Bayeux endpoint [default: /cometd].
    #[arg(long)]
    pub path: Option<String>,
    /// HTTP worker threads [default: one per core].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Serve HTTPS and WSS (HTTP/2 offered by ALPN) with this PEM certificate chain; needs
    /// --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Milliseconds a /meta/connect is held [default: 20000].
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Milliseconds the client waits between connects [default: 0].
    #[arg(long)]
    pub interval: Option<u64>,
    /// Milliseconds without a connect before a session expires [default: 10000].
    #[arg(long)]
    pub max_interval: Option<u64>,
    /// Milliseconds between sweeps for expired sessions [default: 997].
    #[arg(long)]
    pub sweep_period: Option<u64>,
    /// What to do when a session's queue is full: drop-oldest or disconnect [default: drop-oldest].
    #[arg(long)]
    pub queue_full_policy: Option<String>,
    /// Most live sessions; more handshakes get 503::too_many_sessions [default: 100000].
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// Most live sessions per browser cookie [default: 100].
    #[arg(long)]
    pub max_browser_sessions: Option<usize>,
    /// Most subscriptions per session [default: 1000].
    #[arg(long)]
    pub max_subscriptions: Option<usize>,
    /// Most channels in existence [default: 100000].
    #[arg(long)]
    pub max_channels: Option<usize>,
    /// Publishes per second allowed to each session, bursts up to the same number [default: unlimited].
    #[arg(long)]
    pub max_publish_rate: Option<u32>,
    /// Bearer token of the admin API; the API is off without one [default: off].
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Serve the admin API on this address instead of the main one [default: the main one].
    #[arg(long)]
    pub admin_bind: Option<String>,
    /// On stop, wait up to this many ms for clients to collect what is queued for them [default: 2000].
    #[arg(long)]
    pub shutdown_grace: Option<u64>,
    /// On SIGUSR1, clients are sent elsewhere spread over this many ms [default: 10000].
    #[arg(long)]
    pub drain_window: Option<u64>,
    /// On SIGUSR1, stop after this many ms even if clients remain [default: 30000].
    #[arg(long)]
    pub drain_deadline: Option<u64>,
    /// Longest wait of a message on a lazy channel, ms [default: 5000].
    #[arg(long)]
    pub max_lazy_timeout: Option<u64>,
    /// How long a held connect released by a delivery waits for more before it is answered,
    /// in microseconds (docs/performance.md, "A flush window") [default: 0, at once].
    #[arg(long)]
    pub flush_window_us: Option<u64>,
    /// Messages queued per session; the oldest is dropped beyond [default: 10000].
    #[arg(long)]
    pub max_queue: Option<usize>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long)]
    pub max_message_size: Option<usize>,
    /// Held connects per browser; negative is unlimited [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    pub max_sessions_per_browser: Option<i32>,
    /// Held connects per browser over HTTP/2; negative is unlimited [default: -1].
    #[arg(long, allow_negative_numbers = true)]
    pub http2_max_sessions_per_browser: Option<i32>,
    /// Poll interval advised to a browser's extra sessions, ms [default: 2000].
    #[arg(long)]
    pub multi_session_interval: Option<u64>,
    /// Accept a clientId without its browser cookie [default: false].
    #[arg(long)]
    pub trust_client_session: Option<bool>,
    /// Deliver only in /meta/connect replies [default: false].
    #[arg(long)]
    pub meta_connect_deliver_only: Option<bool>,
    /// A publisher subscribed to its channel receives its own message [default: true].
    #[arg(long)]
    pub broadcast_to_publisher: Option<bool>,
    /// Add maxInterval to advice [default: false].
    #[arg(long)]
    pub handshake_reconnect: Option<bool>,
    /// HTTP status of a held connect superseded by a newer one [default: 500].
    #[arg(long)]
    pub duplicate_meta_connect_http_response_code: Option<u16>,

    /// Name of the browser cookie [default: BAYEUX_BROWSER].
    #[arg(long)]
    pub browser_cookie_name: Option<String>,
    /// Path of the browser cookie [default: /].
    #[arg(long)]
    pub browser_cookie_path: Option<String>,
    /// Domain of the browser cookie [default: none].
    #[arg(long)]
    pub browser_cookie_domain: Option<String>,
    /// Max-Age of the browser cookie in seconds [default: none, a session cookie].
    #[arg(long)]
    pub browser_cookie_max_age: Option<u64>,
    /// Mark the cookie Secure on TLS requests [default: true with --tls-cert, else false].
    #[arg(long)]
    pub browser_cookie_secure: Option<bool>,
    /// Mark the cookie HttpOnly [default: true].
    #[arg(long)]
    pub browser_cookie_http_only: Option<bool>,
    /// SameSite attribute of the cookie: Strict, Lax or None [default: not sent].
    #[arg(long)]
    pub browser_cookie_same_site: Option<String>,

    /// Transports offered, comma-separated [default: websocket,long-polling,callback-polling].
    #[arg(long, value_delimiter = ',')]
    pub allowed_transports: Option<Vec<String>>,
    /// Query parameter naming the JSONP callback [default: jsonp].
    #[arg(long)]
    pub callback_parameter: Option<String>,
    /// Longest JSONP callback name accepted [default: 64].
    #[arg(long)]
    pub callback_parameter_max_length: Option<usize>,
    /// Origins allowed to call the HTTP transports cross-origin (CORS), comma-separated [default: none].
    #[arg(long, value_delimiter = ',')]
    pub cors_allowed_origins: Option<Vec<String>>,
    /// Serve the files of this directory at / (a demo page, a test page).
    #[arg(long, value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Server extensions, comma-separated: ack, timesync, timestamp [default: ack,timesync].
    #[arg(long, value_delimiter = ',')]
    pub extensions: Option<Vec<String>>,

    /// Makes this server a node of a cluster sharing this Redis: `redis://HOST:PORT`,
    /// `redis+cluster://HOST:PORT,HOST:PORT` or `redis+sentinel://HOST:PORT,.../MASTER`
    /// [default: none, one node in memory].
    #[arg(long, value_name = "URL")]
    pub backplane: Option<String>,
    /// What the shared log keeps: a number of entries (`100000`) or an age (`90s`, `30m`,
    /// `1h`) [default: 100000].
    #[arg(long, value_name = "COUNT|AGE")]
    pub backplane_retention: Option<String>,
    /// Prefix of the backplane's keys, so that clusters can share a Redis [default: bayeux].
    #[arg(long, value_name = "PREFIX")]
    pub backplane_prefix: Option<String>,
    /// This node's name in its cluster [default: host name and process id].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Milliseconds between writes of changed session records to the backplane: what a
    /// takeover after a crash may deliver twice to a client without ack [default: 1000].
    #[arg(long, value_name = "MS")]
    pub checkpoint_period: Option<u64>,

    /// Keep history on a channel or pattern for clients that replay it (`ext.replay`):
    /// `PATTERN=COUNT[,AGE][,event]`, e.g. `/chat/**=1000,1h`; `event` puts replay ids in
    /// `data.event.replayId` (Salesforce's shape) instead of `ext.replayId`. Repeatable; the
    /// most specific pattern wins [default: none].
    #[arg(long, value_name = "RULE")]
    pub history: Option<Vec<String>>,

    /// Websocket options (`[ws]` table in the file).
    #[command(flatten)]
    #[serde(default)]
    pub ws: WsOptions,
}

/// The `ws.*` options of Java CometD: flags `--ws-...`, file table `[ws]`.
#[derive(Debug, Default, Deserialize, clap::Args)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WsOptions {
    /// Most deliveries pushed in one websocket frame [default: 10].
    #[arg(long = "ws-messages-per-frame")]
    pub messages_per_frame: Option<usize>,
    /// Milliseconds without a frame before a websocket is closed [default: 300000].
    #[arg(long = "ws-idle-timeout")]
    pub idle_timeout: Option<u64>,
    /// Refuse to resume a session on a socket that did not handshake it [default: false].
    #[arg(long = "ws-require-handshake-per-connection")]
    pub require_handshake_per_connection: Option<bool>,
    /// Origins allowed to open websockets, comma-separated [default: any].
    #[arg(long = "ws-allowed-origins", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
}

/// Where and whether the admin API is served.
#[derive(Clone, Debug, Default)]
pub struct AdminSettings {
    /// The bearer token; `None` turns the API off.
    pub token: Option<String>,
    /// A listener of its own, instead of the main one.
    pub bind: Option<String>,
}

/// How `bayeuxd` drains on SIGUSR1.
#[derive(Clone, Copy, Debug)]
pub struct DrainSettings {
    /// Clients are sent elsewhere spread over this long.
    pub window: Duration,
    /// The process stops then, even if clients remain.
    pub deadline: Duration,
}

/// The cluster `bayeuxd` is a node of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackplaneSettings {
    /// Where Redis is.
    pub url: String,
    /// What the log keeps.
    pub retention: Retention,
    /// Key prefix.
    pub prefix: String,
    /// This node's name; `None`: host name and process id.
    pub node_name: Option<String>,
    /// How often changed session records are written.
    pub checkpoint_period: Duration,
}

/// What the shared log keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Entries younger than this (and at most 10 000 000).
    Age(Duration),
    /// This many entries.
    Count(u64),
}

impl Retention {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!("backplaneRetention must be a count (100000) or an age (90s, 30m, 1h), not {text:?}")
        };
        if let Ok(count) = text.parse::<u64>() {
            return if count == 0 {
                Err(bad())
            } else {
                Ok(Self::Count(count))
            };
        }
        parse_age(text).map(Self::Age).ok_or_else(bad)
    }
}

/// An age: a positive number of seconds, minutes, hours or days (`90s`, `30m`, `1h`, `1d`).
fn parse_age(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// A `--history` rule: `PATTERN=COUNT[,AGE][,ext|event]`.
fn parse_history_rule(rule: &str) -> Result<(ChannelName, bayeux_server::Retention), String> {
    let bad = |why: &str| {
        format!("history rule {rule:?}: {why} (expected PATTERN=COUNT[,AGE][,event], e.g. /chat/**=1000,1h)")
    };
    let (pattern, spec) = rule.split_once('=').ok_or_else(|| bad("no '='"))?;
    let channel =
        ChannelName::parse(pattern.trim()).map_err(|_| bad("not a channel or pattern"))?;
    if channel.as_str().starts_with("/meta/") || channel.as_str().starts_with("/service/") {
        return Err(bad("only broadcast channels keep history"));
    }
    let mut parts = spec.split(',').map(str::trim);
    let count: usize = parts
        .next()
        .and_then(|c| c.parse().ok())
        .filter(|c| *c > 0)
        .ok_or_else(|| bad("the count must be a positive number"))?;
    let mut retention = bayeux_server::Retention::count(count);
    for part in parts {
        if let Some(shape) = ReplayIdShape::from_name(part) {
            retention = retention.shape(shape);
        } else if let Some(age) = parse_age(part) {
            retention = retention.max_age(age);
        } else {
            return Err(bad(&format!("{part:?} is neither an age nor a shape")));
        }
    }
    Ok((channel, retention))
}

/// An extension `bayeuxd` can enable by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinExtension {
    /// `ack`: acknowledged delivery.
    Ack,
    /// `timestamp`: a `timestamp` on every outgoing message.
    Timestamp,
    /// `timesync`: clock offset estimation for clients.
    Timesync,
}

impl BuiltinExtension {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "ack" => Some(Self::Ack),
            "timestamp" => Some(Self::Timestamp),
            "timesync" => Some(Self::Timesync),
            _ => None,
        }
    }
}

/// The certificate and key files of `--tls-cert` and `--tls-key`.
#[derive(Debug)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything `bayeuxd` needs to start, resolved.
#[derive(Debug)]
pub struct Settings {
    pub bind: String,
    pub path: String,
    pub workers: Option<usize>,
    pub tls: Option<TlsSettings>,
    pub sweep_period: Duration,
    pub static_dir: Option<PathBuf>,
    pub extensions: Vec<BuiltinExtension>,
    pub drain: DrainSettings,
    pub shutdown_grace: Duration,
    pub admin: AdminSettings,
    pub backplane: Option<BackplaneSettings>,
    /// Channel history rules (`--history`).
    pub history: Vec<(ChannelName, bayeux_server::Retention)>,
    pub engine: EngineConfig,
    pub transport: TransportConfig,
}

impl Options {
    /// Reads the file named by `--config` (if any) under the command-line options.
    pub fn load(self) -> Result<Settings, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str::<Options>(&text)
                    .map_err(|e| format!("{}: {}", path.display(), e.message()))?
            }
            None => Options::default(),
        };
        self.over(file).resolve()
    }

    /// `self`'s values where set, `base`'s otherwise.
    fn over(self, base: Options) -> Options {
        Options {
            config: self.config,
            bind: self.bind.or(base.bind),
            path: self.path.or(base.path),
            workers: self.workers.or(base.workers),
            tls_cert: self.tls_cert.or(base.tls_cert),
            tls_key: self.tls_key.or(base.tls_key),
            http2_max_sessions_per_browser: self
                .http2_max_sessions_per_browser
                .or(base.http2_max_sessions_per_browser),
            timeout: self.timeout.or(base.timeout),
            interval: self.interval.or(base.interval),
            max_interval: self.max_interval.or(base.max_interval),
            sweep_period: self.sweep_period.or(base.sweep_period),
            max_queue: self.max_queue.or(base.max_queue),
            max_lazy_timeout: self.max_lazy_timeout.or(base.max_lazy_timeout),
            flush_window_us: self.flush_window_us.or(base.flush_window_us),
            drain_window: self.drain_window.or(base.drain_window),
            shutdown_grace: self.shutdown_grace.or(base.shutdown_grace),
            admin_token: self.admin_token.or(base.admin_token),
            admin_bind: self.admin_bind.or(base.admin_bind),
            drain_deadline: self.drain_deadline.or(base.drain_deadline),
            queue_full_policy: self.queue_full_policy.or(base.queue_full_policy),
            max_sessions: self.max_sessions.or(base.max_sessions),
            max_browser_sessions: self.max_browser_sessions.or(base.max_browser_sessions),
            max_subscriptions: self.max_subscriptions.or(base.max_subscriptions),
            max_channels: self.max_channels.or(base.max_channels),
            max_publish_rate: self.max_publish_rate.or(base.max_publish_rate),
            max_message_size: self.max_message_size.or(base.max_message_size),
            max_sessions_per_browser: self
                .max_sessions_per_browser
                .or(base.max_sessions_per_browser),
            multi_session_interval: self.multi_session_interval.or(base.multi_session_interval),
            trust_client_session: self.trust_client_session.or(base.trust_client_session),
            meta_connect_deliver_only: self
                .meta_connect_deliver_only
                .or(base.meta_connect_deliver_only),
            broadcast_to_publisher: self.broadcast_to_publisher.or(base.broadcast_to_publisher),
            handshake_reconnect: self.handshake_reconnect.or(base.handshake_reconnect),
            duplicate_meta_connect_http_response_code: self
                .duplicate_meta_connect_http_response_code
                .or(base.duplicate_meta_connect_http_response_code),
            browser_cookie_name: self.browser_cookie_name.or(base.browser_cookie_name),
            browser_cookie_path: self.browser_cookie_path.or(base.browser_cookie_path),
            browser_cookie_domain: self.browser_cookie_domain.or(base.browser_cookie_domain),
            browser_cookie_max_age: self.browser_cookie_max_age.or(base.browser_cookie_max_age),
            browser_cookie_secure: self.browser_cookie_secure.or(base.browser_cookie_secure),
            browser_cookie_http_only: self
                .browser_cookie_http_only
                .or(base.browser_cookie_http_only),
            browser_cookie_same_site: self
                .browser_cookie_same_site
                .or(base.browser_cookie_same_site),
            allowed_transports: self.allowed_transports.or(base.allowed_transports),
            callback_parameter: self.callback_parameter.or(base.callback_parameter),
            callback_parameter_max_length: self
                .callback_parameter_max_length
                .or(base.callback_parameter_max_length),
            static_dir: self.static_dir.or(base.static_dir),
            cors_allowed_origins: self.cors_allowed_origins.or(base.cors_allowed_origins),
            extensions: self.extensions.or(base.extensions),
            backplane: self.backplane.or(base.backplane),
            backplane_retention: self.backplane_retention.or(base.backplane_retention),
            backplane_prefix: self.backplane_prefix.or(base.backplane_prefix),
            node_name: self.node_name.or(base.node_name),
            checkpoint_period: self.checkpoint_period.or(base.checkpoint_period),
            history: self.history.or(base.history),
            ws: WsOptions {
                messages_per_frame: self.ws.messages_per_frame.or(base.ws.messages_per_frame),
                idle_timeout: self.ws.idle_timeout.or(base.ws.idle_timeout),
                require_handshake_per_connection: self
                    .ws
                    .require_handshake_per_connection
                    .or(base.ws.require_handshake_per_connection),
                allowed_origins: self.ws.allowed_origins.or(base.ws.allowed_origins),
            },
        }
    }

    fn resolve(self) -> Result<Settings, String> {
        let ms = Duration::from_millis;
        let defaults = EngineConfig::default();
        let engine = EngineConfig {
            timeout: self.timeout.map_or(defaults.timeout, ms),
            interval: self.interval.map_or(defaults.interval, ms),
            max_interval: self.max_interval.map_or(defaults.max_interval, ms),
            max_queue: self.max_queue.unwrap_or(defaults.max_queue),
            max_lazy_timeout: self.max_lazy_timeout.map_or(defaults.max_lazy_timeout, ms),
            flush_window: self
                .flush_window_us
                .map_or(defaults.flush_window, Duration::from_micros),
            queue_full_policy: match self.queue_full_policy.as_deref() {
                None | Some("drop-oldest") => QueueFullPolicy::DropOldest,
                Some("disconnect") => QueueFullPolicy::Disconnect,
                Some(other) => {
                    return Err(format!(
                        "queueFullPolicy must be drop-oldest or disconnect, not {other:?}"
                    ))
                }
            },
            max_sessions: self.max_sessions.unwrap_or(defaults.max_sessions),
            max_browser_sessions: self
                .max_browser_sessions
                .unwrap_or(defaults.max_browser_sessions),
            max_subscriptions: self.max_subscriptions.unwrap_or(defaults.max_subscriptions),
            max_channels: self.max_channels.unwrap_or(defaults.max_channels),
            max_publish_rate: self.max_publish_rate.map(|messages| PublishRate {
                messages,
                per: Duration::from_secs(1),
            }),
            broadcast_to_publisher: self
                .broadcast_to_publisher
                .unwrap_or(defaults.broadcast_to_publisher),
            meta_connect_deliver_only: self
                .meta_connect_deliver_only
                .unwrap_or(defaults.meta_connect_deliver_only),
            max_sessions_per_browser: self
                .max_sessions_per_browser
                .unwrap_or(defaults.max_sessions_per_browser),
            http2_max_sessions_per_browser: self
                .http2_max_sessions_per_browser
                .unwrap_or(defaults.http2_max_sessions_per_browser),
            multi_session_interval: self
                .multi_session_interval
                .map_or(defaults.multi_session_interval, ms),
            trust_client_session: self
                .trust_client_session
                .unwrap_or(defaults.trust_client_session),
            handshake_reconnect: self
                .handshake_reconnect
                .unwrap_or(defaults.handshake_reconnect),
            ..defaults
        };
        let transports = match self.allowed_transports {
            None => engine.transports.clone(),
            Some(names) => names
                .iter()
                .map(|name| {
                    TransportKind::from_name(name.trim()).ok_or_else(|| {
                        format!("allowedTransports: unknown transport {name:?} (websocket, long-polling, callback-polling)")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if transports.is_empty() {
            return Err("allowedTransports must name at least one transport".into());
        }
        let engine = EngineConfig {
            transports,
            ..engine
        };
        let extensions = match self.extensions {
            None => vec![BuiltinExtension::Ack, BuiltinExtension::Timesync],
            Some(names) => names
                .iter()
                .filter(|name| !name.trim().is_empty())
                .map(|name| {
                    BuiltinExtension::from_name(name.trim()).ok_or_else(|| {
                        format!("extensions: unknown extension {name:?} (ack, timesync, timestamp)")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let ws_defaults = WebSocketConfig::default();
        let cookie_defaults = CookieConfig::default();
        let transport_defaults = TransportConfig::default();
        let duplicate = self
            .duplicate_meta_connect_http_response_code
            .unwrap_or(transport_defaults.duplicate_meta_connect_code);
        if !(400..=599).contains(&duplicate) {
            return Err(format!(
                "duplicateMetaConnectHttpResponseCode must be an HTTP error status (400-599), not {duplicate}"
            ));
        }
        if let Some(same_site) = &self.browser_cookie_same_site {
            if !["Strict", "Lax", "None"].contains(&same_site.as_str()) {
                return Err(format!(
                    "browserCookieSameSite must be Strict, Lax or None, not {same_site:?}"
                ));
            }
        }
        let transport = TransportConfig {
            cookie: CookieConfig {
                name: self.browser_cookie_name.unwrap_or(cookie_defaults.name),
                path: self.browser_cookie_path.unwrap_or(cookie_defaults.path),
                domain: self.browser_cookie_domain,
                max_age: self.browser_cookie_max_age,
                // Over TLS the cookie is Secure unless the operator says otherwise.
                secure: self
                    .browser_cookie_secure
                    .unwrap_or(cookie_defaults.secure || self.tls_cert.is_some()),
                http_only: self
                    .browser_cookie_http_only
                    .unwrap_or(cookie_defaults.http_only),
                same_site: self.browser_cookie_same_site,
            },
            max_message_size: self
                .max_message_size
                .unwrap_or(transport_defaults.max_message_size),
            duplicate_meta_connect_code: duplicate,
            callback: CallbackConfig {
                parameter: self
                    .callback_parameter
                    .unwrap_or(transport_defaults.callback.parameter),
                max_length: self
                    .callback_parameter_max_length
                    .unwrap_or(transport_defaults.callback.max_length),
            },
            websocket: WebSocketConfig {
                messages_per_frame: self
                    .ws
                    .messages_per_frame
                    .unwrap_or(ws_defaults.messages_per_frame),
                idle_timeout: self.ws.idle_timeout.map_or(ws_defaults.idle_timeout, ms),
                require_handshake_per_connection: self
                    .ws
                    .require_handshake_per_connection
                    .unwrap_or(ws_defaults.require_handshake_per_connection),
                allowed_origins: self.ws.allowed_origins.unwrap_or_default(),
            },
            cors_allowed_origins: self.cors_allowed_origins.unwrap_or_default(),
        };
        let path = self.path.unwrap_or_else(|| "/cometd".into());
        if !path.starts_with('/') || path.len() < 2 {
            return Err(format!(
                "path must start with '/' and name a mount point, not {path:?}"
            ));
        }
        let backplane = match self.backplane {
            None => {
                if self.backplane_retention.is_some()
                    || self.node_name.is_some()
                    || self.checkpoint_period.is_some()
                {
                    return Err(
                        "backplaneRetention, nodeName and checkpointPeriod need a backplane".into(),
                    );
                }
                None
            }
            Some(url) => Some(BackplaneSettings {
                url,
                retention: self
                    .backplane_retention
                    .as_deref()
                    .map_or(Ok(Retention::Count(100_000)), Retention::parse)?,
                prefix: self.backplane_prefix.unwrap_or_else(|| "bayeux".into()),
                node_name: self.node_name,
                checkpoint_period: match self.checkpoint_period {
                    Some(0) => return Err("checkpointPeriod must be at least 1 ms".into()),
                    Some(ms) => Duration::from_millis(ms),
                    None => Duration::from_secs(1),
                },
            }),
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSettings { cert, key }),
            (None, None) => None,
            _ => return Err("tlsCert and tlsKey go together".into()),
        };
        let history = self
            .history
            .unwrap_or_default()
            .iter()
            .map(|rule| parse_history_rule(rule))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Settings {
            backplane,
            history,
            tls,
            bind: self.bind.unwrap_or_else(|| "127.0.0.1:8080".into()),
            path: path.trim_end_matches('/').to_owned(),
            workers: self.workers,
            static_dir: self.static_dir,
            extensions,
            admin: {
                if self.admin_bind.is_some() && self.admin_token.is_none() {
                    return Err(
                        "adminBind needs adminToken: the admin API is off without a token".into(),
                    );
                }
                if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
                    return Err("adminToken must be at least 16 characters".into());
                }
                AdminSettings {
                    token: self.admin_token,
                    bind: self.admin_bind,
                }
            },
            shutdown_grace: ms(self.shutdown_grace.unwrap_or(2_000)),
            drain: DrainSettings {
                window: ms(self.drain_window.unwrap_or(10_000)),
                deadline: ms(self.drain_deadline.unwrap_or(30_000)),
            },
            sweep_period: self.sweep_period.map_or(ms(997), ms),
            engine,
            transport,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_rules_take_a_count_an_age_and_a_shape() {
        let settings = Options::parse_from([
            "bayeuxd",
            "--history",
            "/chat/**=1000,1h",
            "--history",
            "/topic/orders=50,event,90s",
        ])
        .load()
        .expect("valid rules");
        let rules: Vec<_> = settings
            .history
            .iter()
            .map(|(c, r)| (c.as_str().to_owned(), r.max_count, r.max_age, r.shape))
            .collect();
        assert_eq!(
            rules,
            [
                (
                    "/chat/**".to_owned(),
                    1000,
                    Some(Duration::from_secs(3600)),
                    ReplayIdShape::Ext
                ),
                (
                    "/topic/orders".to_owned(),
                    50,
                    Some(Duration::from_secs(90)),
                    ReplayIdShape::Event
                ),
            ]
        );
        let file: Options = toml::from_str("history = [\"/a=5\"]").expect("valid file");
        let settings = Options::default().over(file).resolve().expect("valid");
        assert_eq!(settings.history[0].1.max_count, 5);
        assert_eq!(settings.history[0].1.max_age, None);
        for bad in [
            "/chat",
            "/chat=0",
            "/chat=5,1y",
            "chat=5",
            "/meta/x=5",
            "/service/**=5",
        ] {
            let err = Options::parse_from(["bayeuxd", "--history", bad])
                .load()
                .expect_err(bad);
            assert!(err.starts_with("history rule"), "{bad}: {err}");
        }
    }

    #[test]
    fn file_uses_cometd_names_and_flags_win() {
        let file: Options =
            toml::from_str("timeout = 30000\nmaxInterval = 5000\nbrowserCookieName = \"B\"")
                .expect("valid file");
        let cli = Options::parse_from(["bayeuxd", "--timeout", "1000"]);
        let settings = cli.over(file).resolve().expect("valid");
        assert_eq!(settings.engine.timeout, Duration::from_secs(1));
        assert_eq!(settings.engine.max_interval, Duration::from_secs(5));
        assert_eq!(settings.transport.cookie.name, "B");
        assert_eq!(settings.bind, "127.0.0.1:8080");
        assert_eq!(settings.path, "/cometd");
    }

    #[test]
    fn transports_and_ws_options() {
        let file: Options = toml::from_str(
            "allowedTransports = [\"long-polling\"]\n[ws]\nmessagesPerFrame = 3\nallowedOrigins = [\"https://a\"]",
        )
        .expect("valid file");
        let cli = Options::parse_from(["bayeuxd", "--ws-idle-timeout", "5000"]);
        let settings = cli.over(file).resolve().expect("valid");
        assert_eq!(settings.engine.transports, [TransportKind::LongPolling]);
        assert_eq!(settings.transport.websocket.messages_per_frame, 3);
        assert_eq!(settings.transport.websocket.allowed_origins, ["https://a"]);
        assert_eq!(
            settings.transport.websocket.idle_timeout,
            Duration::from_secs(5)
        );
        let cli =
            Options::parse_from(["bayeuxd", "--allowed-transports", "websocket,long-polling"]);
        let settings = cli.resolve().expect("valid");
        assert_eq!(
            settings.engine.transports,
            [TransportKind::WebSocket, TransportKind::LongPolling]
        );
        let cli = Options::parse_from(["bayeuxd", "--allowed-transports", "carrier-pigeon"]);
        assert!(cli.resolve().unwrap_err().contains("carrier-pigeon"));
        let err =
            toml::from_str::<Options>("[ws]\nmessagesPerFrames = 3").expect_err("unknown key");
        assert!(
            err.message().contains("messagesPerFrames"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn extensions_by_name() {
        let settings = Options::default().resolve().expect("valid");
        assert_eq!(
            settings.extensions,
            [BuiltinExtension::Ack, BuiltinExtension::Timesync]
        );
        let cli = Options::parse_from(["bayeuxd", "--extensions", "timestamp"]);
        assert_eq!(
            cli.resolve().expect("valid").extensions,
            [BuiltinExtension::Timestamp]
        );
        let file: Options = toml::from_str("extensions = []").expect("valid");
        assert_eq!(file.resolve().expect("valid").extensions, []);
        let cli = Options::parse_from(["bayeuxd", "--extensions", "ack,reload"]);
        assert!(cli.resolve().unwrap_err().contains("reload"));
    }

    #[test]
    fn unknown_file_keys_are_named() {
        let err = toml::from_str::<Options>("maxIntervall = 5").expect_err("unknown key");
        assert!(err.message().contains("maxIntervall"), "{}", err.message());
    }

    #[test]
    fn defaults_are_cometds() {
        let settings = Options::default().resolve().expect("valid");
        assert_eq!(settings.engine.timeout, Duration::from_millis(20_000));
        assert_eq!(settings.engine.interval, Duration::ZERO);
        assert_eq!(settings.engine.max_interval, Duration::from_millis(10_000));
        assert_eq!(settings.sweep_period, Duration::from_millis(997));
        assert_eq!(settings.transport.duplicate_meta_connect_code, 500);
        assert_eq!(settings.transport.cookie.name, "BAYEUX_BROWSER");
        assert_eq!(settings.engine.max_sessions_per_browser, 1);
        assert_eq!(settings.engine.http2_max_sessions_per_browser, -1);
        assert!(settings.tls.is_none() && !settings.transport.cookie.secure);
    }

    #[test]
    fn tls_options() {
        let settings =
            Options::parse_from(["bayeuxd", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
                .resolve()
                .expect("valid");
        let tls = settings.tls.expect("tls");
        assert_eq!((tls.cert, tls.key), ("c.pem".into(), "k.pem".into()));
        assert!(
            settings.transport.cookie.secure,
            "Secure by default over TLS"
        );
        let settings = Options::parse_from([
            "bayeuxd",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--browser-cookie-secure",
            "false",
            "--http2-max-sessions-per-browser",
            "4",
        ])
        .resolve()
        .expect("valid");
        assert!(!settings.transport.cookie.secure);
        assert_eq!(settings.engine.http2_max_sessions_per_browser, 4);
        let alone = Options::parse_from(["bayeuxd", "--tls-cert", "c.pem"]).resolve();
        assert_eq!(alone.unwrap_err(), "tlsCert and tlsKey go together");
    }

    #[test]
    fn backplane_options() {
        let settings = Options::parse_from([
            "bayeuxd",
            "--backplane",
            "redis://127.0.0.1:7000",
            "--node-name",
            "a",
            "--backplane-retention",
            "30m",
        ])
        .load()
        .expect("valid");
        assert_eq!(
            settings.backplane,
            Some(BackplaneSettings {
                url: "redis://127.0.0.1:7000".into(),
                retention: Retention::Age(Duration::from_secs(1800)),
                prefix: "bayeux".into(),
                node_name: Some("a".into()),
                checkpoint_period: Duration::from_secs(1),
            })
        );
        let file: Options =
            toml::from_str("backplane = \"redis://r:1\"\nbackplaneRetention = \"5000\"")
                .expect("file keys");
        let settings = file.resolve().expect("valid");
        assert_eq!(
            settings.backplane.map(|b| b.retention),
            Some(Retention::Count(5000))
        );
        assert!(Options::parse_from(["bayeuxd"])
            .load()
            .unwrap()
            .backplane
            .is_none());
        for bad in ["0", "1y", "h", "3x", "0s"] {
            let options = Options::parse_from([
                "bayeuxd",
                "--backplane",
                "redis://r:1",
                "--backplane-retention",
                bad,
            ]);
            assert!(options.load().is_err(), "{bad}");
        }
        let options = Options::parse_from(["bayeuxd", "--node-name", "a"]);
        assert_eq!(
            options.load().unwrap_err(),
            "backplaneRetention, nodeName and checkpointPeriod need a backplane"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let cli = Options::parse_from([
            "bayeuxd",
            "--duplicate-meta-connect-http-response-code",
            "200",
        ]);
        assert!(cli
            .resolve()
            .unwrap_err()
            .contains("duplicateMetaConnectHttpResponseCode"));
        let cli = Options::parse_from(["bayeuxd", "--path", "cometd"]);
        assert!(cli.resolve().unwrap_err().contains("path"));
    }
}
