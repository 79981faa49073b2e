//! What the handlers read from a request: straight from its headers, and its body without a
//! buffer of its own.
//!
//! actix-web's own accessors cache their answers in the request's extensions: `cookie()`
//! parses and copies every cookie of the request, `connection_info()` copies its host, scheme
//! and addresses into new strings, and each cache is one more boxed entry. That is a handful
//! of allocations on every exchange for two facts a Bayeux endpoint needs: one cookie's value
//! and whether the request came over https. Its `Bytes` extractor copies every body into a
//! new 8 KiB buffer, whatever its length.

use actix_web::dev::{Decompress, Payload};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderName};
use actix_web::web::{Bytes, BytesMut};
use actix_web::HttpRequest;
use futures::StreamExt;

/// The whole body of `req`, at most `limit` bytes, decoded from its `Content-Encoding`: what
/// actix-web's `Bytes` extractor under a `PayloadConfig` of `limit` gives, with the same
/// errors. A body that arrives in one piece, as a Bayeux batch almost always does, is used as
/// it came, with no copy and no allocation.
pub(crate) async fn body(
    req: &HttpRequest,
    payload: Payload,
    limit: usize,
) -> Result<Bytes, PayloadError> {
    let length = match req.headers().get(header::CONTENT_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.parse::<usize>().ok())
                .ok_or(PayloadError::UnknownLength)?,
        ),
    };
    if length.is_some_and(|length| length > limit) {
        return Err(PayloadError::Overflow);
    }
    let mut stream = Decompress::from_headers(payload, req.headers());
    let Some(first) = stream.next().await.transpose()? else {
        return Ok(Bytes::new());
    };
    if first.len() > limit {
        return Err(PayloadError::Overflow);
    }
    let Some(second) = stream.next().await.transpose()? else {
        return Ok(first);
    };
    let mut whole = BytesMut::with_capacity(length.unwrap_or(0).max(first.len()).min(limit));
    whole.extend_from_slice(&first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        if whole.len() + chunk.len() > limit {
            return Err(PayloadError::Overflow);
        }
        whole.extend_from_slice(&chunk);
        next = stream.next().await.transpose()?;
    }
    Ok(whole.freeze())
}

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
    use actix_web::{web, FromRequest};

    use super::*;

    /// A request body: its headers, the pieces it arrives in, and how it ends.
    struct Body {
        headers: Vec<(&'static str, &'static str)>,
        chunks: Vec<&'static [u8]>,
        broken: bool,
    }

    fn body_of(headers: &[(&'static str, &'static str)], chunks: &[&'static [u8]]) -> Body {
        Body {
            headers: headers.to_vec(),
            chunks: chunks.to_vec(),
            broken: false,
        }
    }

    /// `body` and actix-web's `Bytes` extractor read `case` under `limit` into the same bytes,
    /// or fail with the same error.
    async fn both_read(
        case: &Body,
        limit: usize,
    ) -> (Result<Bytes, String>, Result<Bytes, String>) {
        let read = |ours: bool| async move {
            let mut request = TestRequest::default().app_data(web::PayloadConfig::new(limit));
            for header in &case.headers {
                request = request.insert_header(*header);
            }
            let req = request.to_http_request();
            let (mut sender, h1) = actix_http::h1::Payload::create(false);
            for chunk in &case.chunks {
                sender.feed_data(Bytes::from_static(chunk));
            }
            if case.broken {
                sender.set_error(PayloadError::Incomplete(None));
            } else {
                sender.feed_eof();
            }
            let mut payload = Payload::from(h1);
            if ours {
                body(&req, payload, limit).await.map_err(|e| e.to_string())
            } else {
                Bytes::from_request(&req, &mut payload)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        (read(true).await, read(false).await)
    }

    #[actix_rt::test]
    async fn a_body_reads_as_actix_reads_it() {
        // `[{"channel":"/a"}]`, gzip-compressed.
        const GZIPPED: &[u8] = &[
            31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 139, 174, 86, 74, 206, 72, 204, 203, 75, 205, 81, 178,
            82, 210, 79, 84, 170, 141, 5, 0, 27, 189, 20, 183, 18, 0, 0, 0,
        ];
        let batch: &[u8] = br#"[{"channel":"/a"}]"#;
        let cases = [
            (body_of(&[("content-length", "18")], &[batch]), Ok(batch)),
            (
                body_of(&[], &[b"[{", b"\"channel\":", b"\"/a\"}]"]),
                Ok(batch),
            ),
            (body_of(&[], &[]), Ok(&b""[..])),
            (body_of(&[("content-length", "0")], &[]), Ok(&b""[..])),
            (body_of(&[("content-length", "21")], &[batch]), Err(())),
            (body_of(&[("content-length", "x")], &[batch]), Err(())),
            (body_of(&[], &[batch, batch]), Err(())),
            // The limit (20 bytes) is allowed, one byte more is not.
            (
                body_of(&[], &[b"0123456789012345678", b"9"]),
                Ok(&b"01234567890123456789"[..]),
            ),
            (body_of(&[], &[b"0123456789012345678", b"9x"]), Err(())),
            (
                body_of(
                    &[("content-encoding", "gzip")],
                    &[&GZIPPED[..20], &GZIPPED[20..]],
                ),
                Ok(batch),
            ),
            (
                Body {
                    broken: true,
                    ..body_of(&[], &[b"[{"])
                },
                Err(()),
            ),
        ];
        for (i, (case, want)) in cases.iter().enumerate() {
            let (ours, theirs) = both_read(case, 20).await;
            assert_eq!(ours, theirs, "case {i}");
            match want {
                Ok(bytes) => assert_eq!(ours.as_deref(), Ok(*bytes), "case {i}"),
                Err(()) => assert!(ours.is_err(), "case {i}: {ours:?}"),
            }
        }
    }

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
