//! `bayeuxd --tls-cert --tls-key`: HTTPS with HTTP/1.1 or HTTP/2 (ALPN), WSS, the browser
//! cookie marked `Secure`, and `http2MaxSessionsPerBrowser`. The certificate is made by the
//! test (rcgen) and trusted by the test's own rustls client; requests go through hyper's
//! HTTP/1.1 and HTTP/2 clients and tokio-tungstenite, all over that TLS stream.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message as Frame;

use support::TestServer;

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
struct Certificate {
    der: CertificateDer<'static>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Certificate {
    fn generate(name: &str) -> Certificate {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("certificate");
        let dir = std::env::temp_dir().join(format!("bayeux-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cert_file = dir.join("cert.pem");
        let key_file = dir.join("key.pem");
        std::fs::write(&cert_file, made.cert.pem()).expect("cert file");
        std::fs::write(&key_file, made.signing_key.serialize_pem()).expect("key file");
        Certificate {
            der: made.cert.der().clone(),
            cert_file,
            key_file,
        }
    }

    async fn serve(&self, extra: &[&str]) -> TestServer {
        let cert = self.cert_file.to_str().unwrap();
        let key = self.key_file.to_str().unwrap();
        let mut args = vec!["--tls-cert", cert, "--tls-key", key, "--timeout", "1500"];
        args.extend_from_slice(extra);
        TestServer::start(&args).await
    }

    /// A TLS connection to `addr` trusting only this certificate, offering `alpn`.
    async fn connect(&self, addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(addr).await.expect("tcp");
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .expect("TLS handshake")
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.cert_file.parent().unwrap());
    }
}

/// One HTTP connection (HTTP/1.1 or HTTP/2) carrying Bayeux POSTs.
enum Connection {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// A Bayeux response: status, its `Set-Cookie` headers, the messages.
struct Answer {
    status: u16,
    set_cookie: Vec<String>,
    messages: Vec<Value>,
}

impl Connection {
    /// Another handle on an HTTP/2 connection: requests on both run side by side.
    fn another_stream(&self) -> Connection {
        match self {
            Connection::Http2(send) => Connection::Http2(send.clone()),
            Connection::Http1(_) => panic!("an HTTP/1.1 connection carries one request at a time"),
        }
    }

    async fn open(stream: TlsStream<TcpStream>) -> Connection {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("HTTP/2 handshake");
            tokio::spawn(conn);
            Connection::Http2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("HTTP/1.1 handshake");
            tokio::spawn(conn);
            Connection::Http1(send)
        }
    }

    async fn post(&mut self, path: &str, cookie: Option<&str>, body: Value) -> Answer {
        let mut request = hyper::Request::post(format!("https://127.0.0.1{path}"))
            .header("content-type", "application/json;charset=UTF-8");
        if let Connection::Http1(_) = self {
            request = request.header("host", "127.0.0.1");
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("BAYEUX_BROWSER={cookie}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = match self {
            Connection::Http1(send) => {
                send.ready().await.expect("connection ready");
                send.send_request(request).await
            }
            Connection::Http2(send) => send.send_request(request).await,
        }
        .expect("response");
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let messages = match serde_json::from_slice(&bytes) {
            Ok(Value::Array(items)) => items,
            _ => panic!("not a JSON array: {}", String::from_utf8_lossy(&bytes)),
        };
        Answer {
            status,
            set_cookie,
            messages,
        }
    }
}

fn handshake() -> Value {
    json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["long-polling"]}])
}

fn connect(cid: &str, id: &str, timeout: Option<u64>) -> Value {
    let mut m = json!({"id": id, "channel": "/meta/connect", "clientId": cid,
        "connectionType": "long-polling"});
    if let Some(timeout) = timeout {
        m["advice"] = json!({"timeout": timeout});
    }
    json!([m])
}

/// The cookie value of a `Set-Cookie` header, and its attributes in lower case.
fn cookie_parts(header: &str) -> (String, Vec<String>) {
    let mut parts = header.split(';').map(str::trim);
    let value = parts
        .next()
        .unwrap()
        .strip_prefix("BAYEUX_BROWSER=")
        .unwrap();
    (
        value.to_owned(),
        parts.map(str::to_ascii_lowercase).collect(),
    )
}

/// Handshakes and sends the first connect; returns the clientId.
async fn open_session(conn: &mut Connection, path: &str, cookie: Option<&str>) -> (String, Answer) {
    let answer = conn.post(path, cookie, handshake()).await;
    assert_eq!(answer.status, 200);
    let cid = answer.messages[0]["clientId"].as_str().unwrap().to_owned();
    let cookie = cookie
        .map(str::to_owned)
        .or_else(|| answer.set_cookie.first().map(|h| cookie_parts(h).0));
    let first = conn
        .post(path, cookie.as_deref(), connect(&cid, "2", Some(0)))
        .await;
    assert_eq!(
        first.messages[0]["successful"],
        json!(true),
        "{:?}",
        first.messages
    );
    (cid, answer)
}

#[tokio::test]
async fn https_long_polling_with_a_secure_cookie() {
    let cert = Certificate::generate("lp");
    let server = cert.serve(&[]).await;
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    let stream = cert.connect(server.addr(), &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut conn = Connection::open(stream).await;
    let path = server.path();

    let (subscriber, answer) = open_session(&mut conn, path, None).await;
    assert_eq!(answer.set_cookie.len(), 1, "{:?}", answer.set_cookie);
    let (cookie, mut attributes) = cookie_parts(&answer.set_cookie[0]);
    attributes.sort();
    assert_eq!(attributes, ["httponly", "path=/", "secure"]);
    let subscribe = json!([{"id": "3", "channel": "/meta/subscribe", "clientId": subscriber,
        "subscription": "/tls"}]);
    let answer = conn.post(path, Some(&cookie), subscribe).await;
    assert_eq!(answer.messages[0]["successful"], json!(true));

    let mut other = Connection::open(cert.connect(server.addr(), &[b"http/1.1"]).await).await;
    let (publisher, answer) = open_session(&mut other, path, None).await;
    let publisher_cookie = cookie_parts(&answer.set_cookie[0]).0;
    let publish =
        json!([{"id": "3", "channel": "/tls", "clientId": publisher, "data": "over TLS"}]);
    let answer = other.post(path, Some(&publisher_cookie), publish).await;
    assert_eq!(
        answer.messages,
        [json!({"id": "3", "channel": "/tls", "successful": true})]
    );
    let answer = conn
        .post(path, Some(&cookie), connect(&subscriber, "4", None))
        .await;
    assert_eq!(
        answer.messages[0],
        json!({"channel": "/tls", "data": "over TLS"})
    );

    // The operator may still turn Secure off.
    let plain_cookie = cert.serve(&["--browser-cookie-secure", "false"]).await;
    let mut conn = Connection::open(cert.connect(plain_cookie.addr(), &[b"http/1.1"]).await).await;
    let answer = conn.post(plain_cookie.path(), None, handshake()).await;
    let (_, mut attributes) = cookie_parts(&answer.set_cookie[0]);
    attributes.sort();
    assert_eq!(attributes, ["httponly", "path=/"]);
}

/// Two tabs of one browser hold their connects at once over one HTTP/2 connection (Java's
/// default `http2MaxSessionsPerBrowser` is unlimited); with a limit of 1, the second is told
/// `multiple-clients` as over HTTP/1.1.
#[tokio::test]
async fn http2_is_negotiated_and_holds_the_connects_of_one_browser_side_by_side() {
    let cert = Certificate::generate("h2");
    for (limit, second_held) in [(None, true), (Some("1"), false)] {
        let extra: Vec<&str> = limit
            .map(|l| vec!["--http2-max-sessions-per-browser", l])
            .unwrap_or_default();
        let server = cert.serve(&extra).await;
        let stream = cert.connect(server.addr(), &[b"h2", b"http/1.1"]).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut conn = Connection::open(stream).await;
        let path = server.path().to_owned();
        let (first, answer) = open_session(&mut conn, &path, None).await;
        let cookie = cookie_parts(&answer.set_cookie[0]).0;
        let (second, _) = open_session(&mut conn, &path, Some(&cookie)).await;

        let started = Instant::now();
        let held = {
            let (mut conn, path, cookie) = (conn.another_stream(), path.clone(), cookie.clone());
            tokio::spawn(async move {
                conn.post(&path, Some(&cookie), connect(&first, "5", None))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = conn
            .post(&path, Some(&cookie), connect(&second, "5", None))
            .await;
        let reply = answer.messages.last().unwrap().clone();
        assert_eq!(reply["successful"], json!(true), "{reply}");
        if second_held {
            assert!(
                started.elapsed() >= Duration::from_millis(1400),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(
                reply.get("advice").and_then(|a| a.get("multiple-clients")),
                None,
                "{reply}"
            );
        } else {
            assert!(
                started.elapsed() < Duration::from_millis(1000),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(reply["advice"]["multiple-clients"], json!(true), "{reply}");
        }
        let first_answer = held.await.unwrap();
        assert_eq!(
            first_answer.messages.last().unwrap()["successful"],
            json!(true)
        );
        assert!(
            started.elapsed() >= Duration::from_millis(1400),
            "the first was held to its timeout"
        );
    }
}

#[tokio::test]
async fn wss_carries_the_websocket_transport() {
    let cert = Certificate::generate("wss");
    let server = cert.serve(&[]).await;
    let stream = cert.connect(server.addr(), &[b"http/1.1"]).await;
    let url = format!("wss://127.0.0.1:{}{}", server.addr().port(), server.path());
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("websocket upgrade over TLS");
    let mut exchange = async |frame: Value| -> Vec<Value> {
        ws.send(Frame::text(frame.to_string())).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Frame::Text(text)))) => return serde_json::from_str(&text).unwrap(),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no frame: {other:?}"),
            }
        }
    };
    let replies = exchange(
        json!([{"id": "1", "channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["websocket"]}]),
    )
    .await;
    let cid = replies[0]["clientId"].as_str().unwrap().to_owned();
    let replies = exchange(
        json!([{"id": "2", "channel": "/meta/connect", "clientId": cid,
        "connectionType": "websocket", "advice": {"timeout": 0}}]),
    )
    .await;
    assert_eq!(replies[0]["successful"], json!(true));
    let replies = exchange(
        json!([{"id": "3", "channel": "/meta/subscribe", "clientId": cid,
        "subscription": "/wss"}]),
    )
    .await;
    assert_eq!(replies[0]["successful"], json!(true));
    let replies =
        exchange(json!([{"id": "4", "channel": "/wss", "clientId": cid, "data": 7}])).await;
    assert_eq!(
        replies,
        [
            json!({"channel": "/wss", "data": 7}),
            json!({"id": "4", "channel": "/wss", "successful": true})
        ]
    );
}
