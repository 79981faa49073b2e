//! C55: cross-origin pages (CORS) for the HTTP transports, over real HTTP against `bayeuxd`.

mod support;

use serde_json::json;

use support::http::{send, Request};
use support::TestServer;

const ALLOWED: &str = "https://app.example.org";

async fn preflight(server: &TestServer, origin: &str) -> support::http::Response {
    let req = Request::new("OPTIONS", "/cometd/handshake")
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type");
    send(server.addr(), &req, None).await.expect("answered")
}

async fn handshake(server: &TestServer, origin: &str) -> support::http::Response {
    let body = json!([{"channel": "/meta/handshake", "id": "1", "version": "1.0",
                       "supportedConnectionTypes": ["long-polling"]}]);
    let req = Request::post_json("/cometd/handshake", &body).header("Origin", origin);
    send(server.addr(), &req, None).await.expect("answered")
}

#[tokio::test]
async fn c55_allowed_origin_gets_cors_headers_on_preflight_and_responses() {
    let server = TestServer::start(&["--cors-allowed-origins", ALLOWED]).await;
    let resp = preflight(&server, ALLOWED).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        resp.header("access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        resp.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(resp.header("access-control-max-age"), Some("86400"));
    assert_eq!(resp.header("vary"), Some("Origin"));

    let resp = handshake(&server, ALLOWED).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        resp.header("set-cookie").is_some(),
        "the browser cookie still comes"
    );
}

#[tokio::test]
async fn c55_other_origins_get_no_cors_headers() {
    let server = TestServer::start(&["--cors-allowed-origins", ALLOWED]).await;
    for origin in [
        "https://evil.example",
        "https://app.example.org.evil.example",
        "null",
    ] {
        let resp = preflight(&server, origin).await;
        assert_eq!(resp.status, 200, "{origin}");
        assert_eq!(resp.header("access-control-allow-origin"), None, "{origin}");
        let resp = handshake(&server, origin).await;
        assert_eq!(resp.header("access-control-allow-origin"), None, "{origin}");
    }
    // Without the option, nobody is allowed.
    let closed = TestServer::start(&[]).await;
    assert_eq!(
        preflight(&closed, ALLOWED)
            .await
            .header("access-control-allow-origin"),
        None
    );
    assert_eq!(
        handshake(&closed, ALLOWED)
            .await
            .header("access-control-allow-origin"),
        None
    );
}
