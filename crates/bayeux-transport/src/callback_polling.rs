//! The `callback-polling` transport (JSONP): a `GET` whose query carries the batch, answered
//! with a script that calls the page's callback.
//!
//! Browsers run injected scripts in order, so a held connect would block a later publish
//! script: this transport therefore never piggy-backs deliveries on replies, they go only with
//! `/meta/connect` replies (the engine knows this from the transport kind).

use bayeux_message::{encode_batch, messages_from_value, parse_json, Message};
use bayeux_server::{Server, TransportKind};
use serde_json::Value;

use crate::config::TransportConfig;
use crate::http::{exchange, HttpOrigin, HttpReply};

/// Content type of every successful response.
pub const JAVASCRIPT_UTF8: &str = "text/javascript;charset=UTF-8";

/// What the transport needs from an HTTP `GET`.
#[derive(Clone, Debug)]
pub struct GetRequest<'a> {
    /// The raw query string, without the `?`.
    pub query: &'a str,
    /// Cookie and TLS of the request.
    pub origin: HttpOrigin<'a>,
}

/// The callback name of a JSONP request, if the query carries exactly one valid one.
///
/// Valid names are 1 to `max_length` characters of `A-Z a-z 0-9 . _ -`: nothing that could
/// end the call expression and start another statement.
pub fn callback_name(query: &str, config: &TransportConfig) -> Option<String> {
    let mut values = form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == config.callback.parameter.as_str())
        .map(|(_, value)| value.into_owned());
    let name = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let valid = !name.is_empty()
        && name.len() <= config.callback.max_length
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    valid.then_some(name)
}

/// Handles one callback-polling `GET` whose callback [`callback_name`] accepted.
pub async fn handle_get(
    server: &Server,
    config: &TransportConfig,
    callback: &str,
    req: GetRequest<'_>,
) -> HttpReply {
    if req.query.len() > config.max_message_size {
        return HttpReply::error(413, "query larger than maxMessageSize");
    }
    let batch = match query_batch(req.query) {
        Ok(batch) => batch,
        Err(why) => return HttpReply::error(400, why),
    };
    match exchange(
        server,
        config,
        TransportKind::CallbackPolling,
        req.origin,
        batch,
    )
    .await
    {
        Ok(done) => {
            let messages = encode_batch(&done.messages);
            let mut body = String::with_capacity(callback.len() + messages.len() + 2);
            body.push_str(callback);
            body.push('(');
            body.push_str(&messages);
            body.push(')');
            HttpReply {
                status: 200,
                content_type: JAVASCRIPT_UTF8,
                body,
                set_cookie: done.set_cookie,
            }
        }
        Err(reply) => reply,
    }
}

/// Every `message` parameter, in order, as one batch.
fn query_batch(query: &str) -> Result<Vec<Message>, String> {
    let mut batch = Vec::new();
    let mut found = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "message" {
            continue;
        }
        found = true;
        let value: Value =
            parse_json(value.as_bytes()).map_err(|e| format!("malformed JSON: {e}"))?;
        batch.extend(messages_from_value(value).map_err(|e| e.to_string())?);
    }
    if !found {
        return Err("missing message parameter".into());
    }
    if batch.is_empty() {
        return Err("empty batch".into());
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_names_are_validated() {
        let config = TransportConfig::default();
        let name = |q: &str| callback_name(q, &config);
        assert_eq!(
            name("jsonp=_cometd_jsonp_0&message=x"),
            Some("_cometd_jsonp_0".into())
        );
        assert_eq!(name("jsonp=a.b-c_D9"), Some("a.b-c_D9".into()));
        assert_eq!(
            name(&format!("jsonp={}", "a".repeat(64))),
            Some("a".repeat(64))
        );
        for hostile in [
            "jsonp=",
            "jsonp=a%20b",
            "jsonp=NOTICE:",
            "jsonp=alert(1)//",
            "jsonp=a%0d%0ab",
            "jsonp=%3Cscript%3E",
            "jsonp=x&jsonp=y",
            "message=x",
            "",
        ] {
            assert_eq!(name(hostile), None, "{hostile}");
        }
        assert_eq!(name(&format!("jsonp={}", "a".repeat(65))), None);
    }

    #[tokio::test]
    async fn several_message_parameters_are_one_batch() {
        let server = Server::builder().build();
        let config = TransportConfig::default();
        let hs = "%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%2C%22id%22%3A%221%22%7D%5D";
        let req = GetRequest {
            query: &format!("jsonp=cb&message={hs}"),
            origin: HttpOrigin::default(),
        };
        let reply = handle_get(&server, &config, "cb", req).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, JAVASCRIPT_UTF8);
        assert!(
            reply.body.starts_with("cb([{") && reply.body.ends_with("}])"),
            "{}",
            reply.body
        );
        assert!(reply.set_cookie.is_some());

        let missing = GetRequest {
            query: "jsonp=cb",
            origin: HttpOrigin::default(),
        };
        assert_eq!(
            handle_get(&server, &config, "cb", missing).await.status,
            400
        );
        let malformed = GetRequest {
            query: "jsonp=cb&message=%5B",
            origin: HttpOrigin::default(),
        };
        assert_eq!(
            handle_get(&server, &config, "cb", malformed).await.status,
            400
        );
    }
}
