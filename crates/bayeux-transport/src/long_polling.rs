//! The `long-polling` transport: one `POST` carries a batch; its response carries the replies.
//!
//! The URL suffix (`/cometd/connect`, `/cometd/handshake`, ...) is ignored: each message is
//! routed by its `channel`. A `/meta/connect` alone in its request may be held; the response is
//! then written when the engine releases it or at its deadline.

use bayeux_message::{
    encode_batch, messages_from_value, parse_batch, parse_json, BatchError, Message,
};
use bayeux_server::{Server, TransportKind};
use futures::FutureExt;
use serde_json::Value;
use std::future::Future;

use crate::config::TransportConfig;
use crate::http::{begin, finish, Begun, Exchanged, Held, HttpOrigin, HttpReply, PeerWatch};

/// What the transport needs from an HTTP `POST`.
#[derive(Clone, Debug)]
pub struct PostRequest<'a> {
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// Cookie and TLS of the request.
    pub origin: HttpOrigin<'a>,
    /// The whole body.
    pub body: &'a [u8],
}

/// Content type of every successful response.
pub const JSON_UTF8: &str = "application/json;charset=UTF-8";

/// Handles one long-polling `POST`: [`begin_post`], then, for a held connect, [`finish_post`].
pub async fn handle_post(
    server: &Server,
    config: &TransportConfig,
    req: PostRequest<'_>,
) -> HttpReply {
    let peer = req.origin.peer;
    match begin_post(server, config, req).await {
        PostBegun::Reply(reply) => reply,
        PostBegun::Held(held) => finish_post(server, config, held, peer).await,
    }
}

/// A long-polling `POST` handled as far as it goes without waiting.
#[derive(Debug)]
pub enum PostBegun {
    /// The response.
    Reply(HttpReply),
    /// A `/meta/connect` is held: [`finish_post`] waits for it and makes the response.
    Held(Held),
}

/// Parses and runs a `POST`'s batch, up to a held connect. Apart from [`finish_post`] so that a
/// web framework can keep the two in different futures: a held request then costs only what
/// the wait needs, not the room that parsing and handling took (the framework boxes the first,
/// which ends before the wait).
pub async fn begin_post(
    server: &Server,
    config: &TransportConfig,
    req: PostRequest<'_>,
) -> PostBegun {
    if req.body.len() > config.max_message_size {
        return PostBegun::Reply(HttpReply::error(
            413,
            "request body larger than maxMessageSize",
        ));
    }
    let batch = match read_batch(req.content_type, req.body) {
        Ok(batch) => batch,
        Err(reply) => return PostBegun::Reply(reply),
    };
    match begin(
        server,
        config,
        TransportKind::LongPolling,
        req.origin,
        batch,
    )
    .await
    {
        Ok(Begun::Done(exchanged)) => PostBegun::Reply(json_reply(exchanged)),
        Ok(Begun::Held(held)) => PostBegun::Held(held),
        Err(reply) => PostBegun::Reply(reply),
    }
}

/// Waits for the connect [`begin_post`] held, watching `peer` (the request's connection) if
/// given, and makes the response.
// Not an `async fn`: one would keep a second copy of its arguments beside the inner future's
// for as long as the request is held.
pub fn finish_post<'a>(
    server: &'a Server,
    config: &'a TransportConfig,
    held: Held,
    peer: Option<&'a dyn PeerWatch>,
) -> impl Future<Output = HttpReply> + 'a {
    finish(server, config, held, peer).map(|finished| match finished {
        Ok(exchanged) => json_reply(exchanged),
        Err(reply) => reply,
    })
}

fn json_reply(exchanged: Exchanged) -> HttpReply {
    HttpReply {
        status: 200,
        content_type: JSON_UTF8,
        body: encode_batch(&exchanged.messages),
        set_cookie: exchanged.set_cookie,
    }
}

/// Parses the body by content type: JSON, or the spec's form-encoded `message=` parameters.
fn read_batch(content_type: Option<&str>, body: &[u8]) -> Result<Vec<Message>, HttpReply> {
    // Compared without case, and without a lowercase copy per request.
    let media_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim);
    let is = |mt: &str, name: &str| mt.eq_ignore_ascii_case(name);
    let json_suffix = |mt: &str| {
        let mt = mt.as_bytes();
        mt.len() >= 5 && mt[mt.len() - 5..].eq_ignore_ascii_case(b"+json")
    };
    let parsed = match media_type {
        None => parse_batch(body),
        Some(mt) if is(mt, "application/json") || is(mt, "text/json") || is(mt, "text/plain") => {
            parse_batch(body)
        }
        Some(mt) if json_suffix(mt) => parse_batch(body),
        Some(mt) if is(mt, "application/x-www-form-urlencoded") => parse_form(body),
        Some(other) => {
            return Err(HttpReply::error(
                415,
                format!("unsupported content type {:?}", other.to_ascii_lowercase()),
            ));
        }
    };
    parsed.map_err(|e| HttpReply::error(400, e.to_string()))
}

/// Decodes every `message` parameter (each a JSON message or array) into one batch, in order.
pub fn parse_form(body: &[u8]) -> Result<Vec<Message>, BatchError> {
    let mut batch = Vec::new();
    for (key, value) in form_urlencoded::parse(body) {
        if key != "message" {
            continue;
        }
        let value: Value =
            parse_json(value.as_bytes()).map_err(|e| BatchError::Malformed(e.to_string()))?;
        batch.extend(messages_from_value(value)?);
    }
    if batch.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn post<'a>(body: &'a [u8], cookie: Option<&'a str>) -> PostRequest<'a> {
        PostRequest {
            content_type: Some("application/json;charset=UTF-8"),
            origin: HttpOrigin {
                browser_cookie: cookie,
                ..HttpOrigin::default()
            },
            body,
        }
    }

    fn body(reply: &HttpReply) -> Value {
        serde_json::from_str(&reply.body).expect("JSON body")
    }

    #[tokio::test]
    async fn handshake_sets_the_cookie_once() {
        let server = Server::builder().build();
        let config = TransportConfig::default();
        let hs = br#"[{"channel":"/meta/handshake","id":"1","version":"1.0"}]"#;
        let reply = handle_post(&server, &config, post(hs, None)).await;
        assert_eq!(reply.status, 200);
        let cookie = reply.set_cookie.expect("cookie set");
        assert!(
            cookie.starts_with("BAYEUX_BROWSER=") && cookie.ends_with("; Path=/; HttpOnly"),
            "{cookie}"
        );
        let value = &cookie["BAYEUX_BROWSER=".len()..cookie.find(';').expect("attributes")];
        let again = handle_post(&server, &config, post(hs, Some(value))).await;
        assert_eq!(again.set_cookie, None);
        assert_eq!(server.session_count(), 2);
    }

    #[tokio::test]
    async fn bad_bodies_get_http_errors() {
        let server = Server::builder().build();
        let config = TransportConfig {
            max_message_size: 64,
            ..TransportConfig::default()
        };
        let cases: [(&[u8], u16); 5] = [
            (b"[{", 400),
            (b"", 400),
            (b"[]", 400),
            (b"[1]", 400),
            (&[b' '; 65], 413),
        ];
        for (input, status) in cases {
            let reply = handle_post(&server, &config, post(input, None)).await;
            assert_eq!(reply.status, status, "{:?}", String::from_utf8_lossy(input));
        }
        let multipart = PostRequest {
            content_type: Some("multipart/form-data; boundary=x"),
            ..post(b"[]", None)
        };
        assert_eq!(handle_post(&server, &config, multipart).await.status, 415);
        assert_eq!(server.session_count(), 0);
    }

    #[test]
    fn content_types_are_matched_without_case() {
        let body = br#"[{"channel":"/a","data":1}]"#;
        for accepted in [
            "Application/JSON",
            "TEXT/plain; charset=UTF-8",
            "application/vnd.api+JSON",
            " text/json ",
        ] {
            let batch = read_batch(Some(accepted), body).expect(accepted);
            assert_eq!(batch.len(), 1, "{accepted}");
        }
        let form = read_batch(
            Some("Application/X-WWW-Form-Urlencoded"),
            b"message=%7B%22channel%22%3A%22%2Fa%22%7D",
        )
        .unwrap();
        assert_eq!(form[0].channel(), Some("/a"));
        for (refused, named) in [("Text/HTML", "text/html"), ("€", "€"), ("+jsön", "+jsön")] {
            let reply = read_batch(Some(refused), body).unwrap_err();
            assert_eq!(reply.status, 415, "{refused}");
            assert_eq!(reply.body, format!("unsupported content type {named:?}"));
        }
    }

    #[tokio::test]
    async fn handshake_mixed_with_other_messages_is_500() {
        let server = Server::builder().build();
        let body = br#"[{"channel":"/meta/handshake","id":"1"},{"channel":"/a","data":1}]"#;
        let reply = handle_post(&server, &TransportConfig::default(), post(body, None)).await;
        assert_eq!(reply.status, 500);
        assert_eq!(server.session_count(), 0);
    }

    #[tokio::test]
    async fn form_encoded_message_parameters() {
        let server = Server::builder().build();
        let form =
            "message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%2C%22id%22%3A%221%22%7D%5D";
        let req = PostRequest {
            content_type: Some("application/x-www-form-urlencoded"),
            ..post(form.as_bytes(), None)
        };
        let reply = handle_post(&server, &TransportConfig::default(), req).await;
        assert_eq!(reply.status, 200);
        assert_eq!(body(&reply)[0]["successful"], json!(true));
    }
}
