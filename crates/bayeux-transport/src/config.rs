//! Options of the transports, with Java CometD's names and defaults.

use std::time::Duration;

/// Options of the transports.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The browser cookie (`browserCookie*` options).
    pub cookie: CookieConfig,
    /// Largest request body accepted, in bytes (`maxMessageSize`; 1 MiB). Larger: HTTP 413.
    pub max_message_size: usize,
    /// Status of the response to a held connect replaced by a newer one
    /// (`duplicateMetaConnectHttpResponseCode`, 500).
    pub duplicate_meta_connect_code: u16,
    /// The JSONP callback parameter.
    pub callback: CallbackConfig,
    /// The websocket transport (`ws.*` options).
    pub websocket: WebSocketConfig,
    /// Origins whose pages may call the HTTP transports cross-origin (CORS), exact match;
    /// empty: none (`corsAllowedOrigins`). Credentials are allowed, so `*` is never sent: the
    /// request's own origin is echoed when it is in the list.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            cookie: CookieConfig::default(),
            max_message_size: 1024 * 1024,
            duplicate_meta_connect_code: 500,
            callback: CallbackConfig::default(),
            websocket: WebSocketConfig::default(),
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Options of the `callback-polling` (JSONP) transport.
#[derive(Clone, Debug)]
pub struct CallbackConfig {
    /// Name of the query parameter holding the callback (`callbackParameter`, `jsonp`).
    pub parameter: String,
    /// Longest callback name accepted (`callbackParameterMaxLength`, 64).
    pub max_length: usize,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            parameter: "jsonp".into(),
            max_length: 64,
        }
    }
}

/// Options of the `websocket` transport.
#[derive(Clone, Debug)]
pub struct WebSocketConfig {
    /// Most deliveries pushed in one frame (`ws.messagesPerFrame`; 10 here, Java's is 1).
    pub messages_per_frame: usize,
    /// A socket with no inbound frame for this long is closed (`ws.idleTimeout`, 300 s). It
    /// also bounds how long one outbound frame may wait for a peer that does not read.
    pub idle_timeout: Duration,
    /// Refuse to resume a session on a connection that did not handshake it
    /// (`ws.requireHandshakePerConnection`, false).
    pub require_handshake_per_connection: bool,
    /// Origins allowed to open a websocket; empty allows any (`ws.allowedOrigins`). Set it to
    /// prevent cross-site websocket hijacking.
    pub allowed_origins: Vec<String>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            messages_per_frame: 10,
            idle_timeout: Duration::from_secs(300),
            require_handshake_per_connection: false,
            allowed_origins: Vec::new(),
        }
    }
}

impl TransportConfig {
    /// The `Origin` to echo in CORS headers, if this one is allowed.
    pub fn cors_origin<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        origin.filter(|o| self.cors_allowed_origins.iter().any(|allowed| allowed == o))
    }
}

impl WebSocketConfig {
    /// Whether a websocket upgrade with this `Origin` header may proceed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        self.allowed_origins.is_empty()
            || origin.is_some_and(|o| self.allowed_origins.iter().any(|allowed| allowed == o))
    }
}

/// The cookie that tells which browser a request comes from.
#[derive(Clone, Debug)]
pub struct CookieConfig {
    /// `browserCookieName` (`BAYEUX_BROWSER`).
    pub name: String,
    /// `browserCookiePath` (`/`).
    pub path: String,
    /// `browserCookieDomain` (none).
    pub domain: Option<String>,
    /// `browserCookieMaxAge` in seconds (none: a session cookie).
    pub max_age: Option<u64>,
    /// `browserCookieSecure`: add `Secure` when the request came over TLS (false).
    pub secure: bool,
    /// `browserCookieHttpOnly` (true).
    pub http_only: bool,
    /// `browserCookieSameSite`: `Strict`, `Lax` or `None` (not sent by default).
    pub same_site: Option<String>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "BAYEUX_BROWSER".into(),
            path: "/".into(),
            domain: None,
            max_age: None,
            secure: false,
            http_only: true,
            same_site: None,
        }
    }
}

impl CookieConfig {
    /// The `Set-Cookie` header value for `value`.
    pub fn set_cookie(&self, value: &str, request_is_secure: bool) -> String {
        let mut header = format!("{}={}; Path={}", self.name, value, self.path);
        if let Some(domain) = &self.domain {
            header.push_str("; Domain=");
            header.push_str(domain);
        }
        if let Some(max_age) = self.max_age {
            header.push_str(&format!("; Max-Age={max_age}"));
        }
        if self.secure && request_is_secure {
            header.push_str("; Secure");
        }
        if self.http_only {
            header.push_str("; HttpOnly");
        }
        if let Some(same_site) = &self.same_site {
            header.push_str("; SameSite=");
            header.push_str(same_site);
        }
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cookie_is_http_only_on_root_path() {
        let cookie = CookieConfig::default();
        assert_eq!(
            cookie.set_cookie("abc", false),
            "BAYEUX_BROWSER=abc; Path=/; HttpOnly"
        );
    }

    #[test]
    fn every_attribute() {
        let cookie = CookieConfig {
            name: "B".into(),
            path: "/app".into(),
            domain: Some("example.org".into()),
            max_age: Some(60),
            secure: true,
            http_only: false,
            same_site: Some("Strict".into()),
        };
        assert_eq!(
            cookie.set_cookie("v", true),
            "B=v; Path=/app; Domain=example.org; Max-Age=60; Secure; SameSite=Strict"
        );
        assert_eq!(
            cookie.set_cookie("v", false),
            "B=v; Path=/app; Domain=example.org; Max-Age=60; SameSite=Strict"
        );
    }
}
