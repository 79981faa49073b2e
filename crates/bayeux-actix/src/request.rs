//! What the handlers read from a request, straight from its headers.
//!
//! actix-web's own accessors cache their answers in the request's extensions: `cookie()`
//! parses and copies every cookie of the request, `connection_info()` copies its host, scheme
//! and addresses into new strings, and each cache is one more boxed entry. That is a handful
//! of allocations on every exchange for two facts a Bayeux endpoint needs: one cookie's value
//! and whether the request came over https.

use actix_web::http::header::{self, HeaderName};
use actix_web::HttpRequest;

/// The value of the cookie `name` the request carries (the first, if several do).
pub(crate) fn cookie<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| n.trim_end() == name)
        .map(|(_, v)| v.trim_start())
}

/// Whether the request came over https, by the same rules as actix-web's
/// `ConnectionInfo::scheme`: a `Forwarded` header's `proto`, else `X-Forwarded-Proto`, else
/// the request's URI (HTTP/2), else whether the listener is TLS.
pub(crate) fn is_https(req: &HttpRequest) -> bool {
    static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let forwarded = req
        .headers()
        .get_all(header::FORWARDED)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([';', ',']))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proto"))
        .map(|(_, value)| value.trim().trim_matches('"'));
    let scheme = forwarded
        .or_else(|| {
            let value = req.headers().get(&X_FORWARDED_PROTO)?.to_str().ok()?;
            value.split(',').next().map(str::trim)
        })
        .or_else(|| req.uri().scheme_str());
    match scheme {
        Some(scheme) => scheme == "https",
        None => req.app_config().secure(),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    /// Both answer as actix-web's own accessors do, on the cases its tests and ours care about.
    #[test]
    fn cookie_and_scheme_read_as_actix_reads_them() {
        let requests = [
            TestRequest::default(),
            TestRequest::default().insert_header((header::COOKIE, "BAYEUX_BROWSER=abc")),
            TestRequest::default().insert_header((header::COOKIE, "a=1; BAYEUX_BROWSER=abc; b=2")),
            TestRequest::default().insert_header((header::COOKIE, "a=1;BAYEUX_BROWSER=x=y")),
            TestRequest::default().insert_header((header::COOKIE, "XBAYEUX_BROWSER=no; a=1")),
            TestRequest::default().insert_header((header::COOKIE, "BAYEUX_BROWSER=")),
            TestRequest::default()
                .append_header((header::COOKIE, "a=1"))
                .append_header((header::COOKIE, "BAYEUX_BROWSER=second")),
            TestRequest::default().insert_header(("x-forwarded-proto", "https")),
            TestRequest::default().insert_header(("x-forwarded-proto", "https, http")),
            TestRequest::default().insert_header(("x-forwarded-proto", "http")),
            TestRequest::default().insert_header((header::FORWARDED, "for=1.2.3.4; proto=https")),
            TestRequest::default()
                .insert_header((header::FORWARDED, "for=1.2.3.4, PROTO=\"https\"")),
            TestRequest::default()
                .insert_header((header::FORWARDED, "proto=http"))
                .insert_header(("x-forwarded-proto", "https")),
            TestRequest::default().uri("https://example.com/cometd"),
            TestRequest::default().uri("http://example.com/cometd"),
        ];
        for (i, request) in requests.into_iter().enumerate() {
            let req = request.to_http_request();
            let theirs = req.cookie("BAYEUX_BROWSER").map(|c| c.value().to_owned());
            assert_eq!(
                cookie(&req, "BAYEUX_BROWSER").map(str::to_owned),
                theirs,
                "case {i}"
            );
            let theirs = req.connection_info().scheme() == "https";
            assert_eq!(is_https(&req), theirs, "case {i}");
        }
    }
}
