//! A per-client cookie jar, so that the server's `BAYEUX_BROWSER` cookie comes back on every
//! request.
//!
//! CometD servers find a long-polling session through the browser cookie set on the handshake
//! response: without it every later request is answered `402::session_unknown`. A client talks to
//! one server, so the jar ignores `Domain` and `Path` and sends every cookie it holds; it honours
//! removal (`Max-Age<=0`, `Expires` in the past) and expiry.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Cookies received from one server.
#[derive(Debug, Default)]
pub struct CookieJar {
    // A BTreeMap keeps the `Cookie` header in a stable order, which makes it testable.
    cookies: Mutex<BTreeMap<String, Stored>>,
}

#[derive(Clone, Debug)]
struct Stored {
    value: String,
    expires: Option<SystemTime>,
}

/// One `Set-Cookie` header, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetCookie {
    pub name: String,
    pub value: String,
    /// `None`: a session cookie, kept as long as the client.
    pub expires: Option<SystemTime>,
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one `Set-Cookie` header value; malformed values are ignored.
    pub fn store(&self, set_cookie: &str) {
        self.store_at(set_cookie, SystemTime::now());
    }

    fn store_at(&self, set_cookie: &str, now: SystemTime) {
        let Some(cookie) = parse_set_cookie(set_cookie, now) else {
            return;
        };
        let mut cookies = self.cookies.lock().expect("cookie jar lock");
        if cookie.expires.is_some_and(|at| at <= now) {
            cookies.remove(&cookie.name);
        } else {
            cookies.insert(
                cookie.name,
                Stored {
                    value: cookie.value,
                    expires: cookie.expires,
                },
            );
        }
    }

    /// The value of a live cookie.
    pub fn get(&self, name: &str) -> Option<String> {
        let now = SystemTime::now();
        let cookies = self.cookies.lock().expect("cookie jar lock");
        cookies
            .get(name)
            .filter(|c| c.expires.is_none_or(|at| at > now))
            .map(|c| c.value.clone())
    }

    /// The `Cookie` request header for the live cookies, or `None` when there are none.
    pub fn header(&self) -> Option<String> {
        self.header_at(SystemTime::now())
    }

    fn header_at(&self, now: SystemTime) -> Option<String> {
        let cookies = self.cookies.lock().expect("cookie jar lock");
        let pairs: Vec<String> = cookies
            .iter()
            .filter(|(_, c)| c.expires.is_none_or(|at| at > now))
            .map(|(name, c)| format!("{name}={}", c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

/// Parses `name=value; Attr=...; ...` (RFC 6265 section 5.2, the parts a client of one server
/// needs). `Max-Age` wins over `Expires`, as the RFC says.
pub(crate) fn parse_set_cookie(header: &str, now: SystemTime) -> Option<SetCookie> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut max_age = None;
    let mut expires = None;
    for attribute in parts {
        let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
        let (key, val) = (key.trim(), val.trim());
        if key.eq_ignore_ascii_case("max-age") {
            if let Ok(seconds) = val.parse::<i64>() {
                max_age = Some(if seconds <= 0 {
                    UNIX_EPOCH
                } else {
                    now + Duration::from_secs(seconds.unsigned_abs())
                });
            }
        } else if key.eq_ignore_ascii_case("expires") {
            expires = parse_http_date(val);
        }
    }
    Some(SetCookie {
        name: name.to_owned(),
        value: value.trim().to_owned(),
        expires: max_age.or(expires),
    })
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) or its common dash variant
/// (`Sun, 06-Nov-1994 08:49:37 GMT`).
fn parse_http_date(text: &str) -> Option<SystemTime> {
    let (_, rest) = text.split_once(',')?;
    let rest = rest.trim().replace('-', " ");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let [day, month, year, time, ..] = fields.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = MONTHS.iter().position(|m| month.eq_ignore_ascii_case(m))? as u32 + 1;
    let day: u32 = day.parse().ok()?;
    let mut year: i64 = year.parse().ok()?;
    if year < 100 {
        // Two-digit years, as RFC 6265 reads them.
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + (h * 3600 + m * 60 + s) as i64;
    if seconds < 0 {
        return Some(UNIX_EPOCH);
    }
    Some(UNIX_EPOCH + Duration::from_secs(seconds as u64))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_the_bayeux_browser_cookie() {
        let now = at(1_000);
        let cookie = parse_set_cookie("BAYEUX_BROWSER=3bx8f1k2wq7n0z5d; Path=/; HttpOnly", now)
            .expect("valid cookie");
        assert_eq!(
            cookie,
            SetCookie {
                name: "BAYEUX_BROWSER".into(),
                value: "3bx8f1k2wq7n0z5d".into(),
                expires: None,
            }
        );
    }

    #[test]
    fn max_age_wins_over_expires() {
        let now = at(1_000);
        let cookie = parse_set_cookie(
            "a=b; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60; SameSite=Lax",
            now,
        )
        .expect("valid cookie");
        assert_eq!(cookie.expires, Some(at(1_060)));
        let gone = parse_set_cookie("a=; Max-Age=0", now).expect("valid cookie");
        assert_eq!(gone.expires, Some(UNIX_EPOCH));
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(at(784_111_777))
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(at(784_111_777))
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(at(1_835_481_599))
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn rejects_malformed_headers() {
        let now = at(0);
        assert_eq!(parse_set_cookie("novalue", now), None);
        assert_eq!(parse_set_cookie("=v; Path=/", now), None);
        let empty = parse_set_cookie("x=", now).expect("empty values are allowed");
        assert_eq!(empty.value, "");
    }

    #[test]
    fn jar_sends_back_live_cookies_and_forgets_removed_ones() {
        let jar = CookieJar::new();
        assert_eq!(jar.header_at(at(1_000)), None);
        jar.store_at("BAYEUX_BROWSER=abc; Path=/; HttpOnly", at(1_000));
        jar.store_at("lb=node2; Max-Age=10", at(1_000));
        assert_eq!(
            jar.header_at(at(1_005)).as_deref(),
            Some("BAYEUX_BROWSER=abc; lb=node2")
        );
        // Expired cookies are not sent.
        assert_eq!(
            jar.header_at(at(1_011)).as_deref(),
            Some("BAYEUX_BROWSER=abc")
        );
        // A new value replaces the old one; a removal deletes it.
        jar.store_at("BAYEUX_BROWSER=def", at(1_020));
        assert_eq!(
            jar.header_at(at(1_020)).as_deref(),
            Some("BAYEUX_BROWSER=def")
        );
        jar.store_at(
            "BAYEUX_BROWSER=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            at(1_020),
        );
        assert_eq!(jar.header_at(at(1_020)), None);
    }
}
