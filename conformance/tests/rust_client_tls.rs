//! The Rust client (`bayeux-client`) over TLS against `bayeuxd --tls-cert --tls-key`:
//! `wss://` and `https://` long-polling with a certificate made by the test (rcgen), trusted
//! through `ClientBuilder::tls_config` or `add_root_certificate`; and refusals: the same
//! certificate with only Mozilla's roots, and a certificate for another name.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bayeux_client::{Client, ClientBuilder, Error, Subscription, TransportError, TransportKind};
use futures_util::StreamExt;
use rustls::pki_types::CertificateDer;
use serde_json::json;

use support::TestServer;

/// How long an expected message, or an expected failure, may take.
const ARRIVAL: Duration = Duration::from_secs(10);

/// How long the tests wait to believe that nothing more arrives.
const SILENCE: Duration = Duration::from_millis(400);

/// A self-signed certificate, written as PEM files in a directory of its own.
struct Certificate {
    der: CertificateDer<'static>,
    pem: String,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Certificate {
    fn generate(names: &[&str]) -> Certificate {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let made = rcgen::generate_simple_self_signed(names).expect("certificate");
        let dir = std::env::temp_dir().join(format!(
            "bayeux-client-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cert_file = dir.join("cert.pem");
        let key_file = dir.join("key.pem");
        std::fs::write(&cert_file, made.cert.pem()).expect("cert file");
        std::fs::write(&key_file, made.signing_key.serialize_pem()).expect("key file");
        Certificate {
            der: made.cert.der().clone(),
            pem: made.cert.pem(),
            cert_file,
            key_file,
        }
    }

    /// For `127.0.0.1` and `localhost`.
    fn local() -> Certificate {
        Certificate::generate(&["127.0.0.1", "localhost"])
    }

    /// `bayeuxd` serving this certificate; its URL is `https://`.
    async fn serve(&self) -> (TestServer, String) {
        let cert = self.cert_file.to_str().expect("utf-8 path");
        let key = self.key_file.to_str().expect("utf-8 path");
        let server = TestServer::start(&["--tls-cert", cert, "--tls-key", key]).await;
        let url = server.url();
        assert_eq!(
            url,
            format!("https://{}{}", server.addr(), server.path()),
            "bayeuxd with --tls-cert listens on https://"
        );
        (server, url)
    }

    /// A rustls configuration trusting this certificate only (not Mozilla's roots): the
    /// client takes the application's configuration as it is.
    fn trusting_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.cert_file.parent().expect("temp dir"));
    }
}

/// A client with small backoff steps.
fn builder(url: &str, transport: TransportKind) -> ClientBuilder {
    Client::builder(url)
        .transports(&[transport])
        .backoff(Duration::from_millis(100), Duration::from_millis(300))
}

async fn connect(builder: ClientBuilder) -> Client {
    tokio::time::timeout(ARRIVAL, builder.connect())
        .await
        .expect("connects in time")
        .expect("client connects over TLS")
}

/// Subscribe, publish, receive exactly that message, on the expected transport.
async fn round_trip(client: &Client, channel: &str, expected: TransportKind) {
    assert_eq!(client.transport(), expected);
    let mut subscription = client.subscribe(channel).await.expect("subscribe");
    let reply = client
        .publish(channel, json!({"text": "over TLS"}))
        .await
        .expect("publish accepted");
    assert_eq!(reply.get("successful"), Some(&json!(true)));
    let message = tokio::time::timeout(ARRIVAL, subscription.next())
        .await
        .expect("delivery in time")
        .expect("subscription open");
    assert_eq!(message.channel(), Some(channel));
    assert_eq!(message.data(), Some(&json!({"text": "over TLS"})));
    assert_silent(&mut subscription).await;
    assert_eq!(client.transport(), expected);
}

async fn assert_silent(subscription: &mut Subscription) {
    if let Ok(extra) = tokio::time::timeout(SILENCE, subscription.next()).await {
        panic!("unexpected message: {extra:?}");
    }
}

/// The TLS failure a client without the right roots gets from `connect`, in bounded time.
async fn tls_refusal(builder: ClientBuilder) -> String {
    let outcome = tokio::time::timeout(ARRIVAL, builder.connect())
        .await
        .expect("the failure is reported in time");
    match outcome {
        Err(Error::Transport(TransportError::Tls(why))) => why,
        Err(other) => panic!("expected a TLS error, got {other:?} ({other})"),
        Ok(_) => panic!("connected through an untrusted certificate"),
    }
}

#[tokio::test]
async fn websocket_over_wss_with_the_applications_tls_config() {
    let certificate = Certificate::local();
    let (_server, url) = certificate.serve().await;
    let client =
        connect(builder(&url, TransportKind::WebSocket).tls_config(certificate.trusting_config()))
            .await;
    round_trip(&client, "/tls/ws", TransportKind::WebSocket).await;
    client.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn long_polling_over_https_with_the_applications_tls_config() {
    let certificate = Certificate::local();
    let (_server, url) = certificate.serve().await;
    let client = connect(
        builder(&url, TransportKind::LongPolling).tls_config(certificate.trusting_config()),
    )
    .await;
    // The browser cookie (Secure over TLS) comes back on every request, or the requests after
    // the handshake would be refused with 402::session_unknown.
    assert!(client.cookies().get("BAYEUX_BROWSER").is_some());
    round_trip(&client, "/tls/lp", TransportKind::LongPolling).await;
    client.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn added_root_certificate_and_a_dns_host_name() {
    let certificate = Certificate::local();
    let (server, _) = certificate.serve().await;
    // `localhost`: the certificate is checked against a DNS name here, an IP address above.
    let url = format!(
        "https://localhost:{}{}",
        server.addr().port(),
        server.path()
    );
    for transport in [TransportKind::WebSocket, TransportKind::LongPolling] {
        let client = connect(builder(&url, transport).add_root_certificate(&certificate.pem)).await;
        round_trip(&client, "/tls/added", transport).await;
        client.disconnect().await.expect("disconnect");
    }
    // DER works as well as PEM.
    let client = connect(
        builder(&url, TransportKind::WebSocket).add_root_certificate(certificate.der.as_ref()),
    )
    .await;
    round_trip(&client, "/tls/der", TransportKind::WebSocket).await;
}

#[tokio::test]
async fn mozilla_roots_refuse_a_self_signed_certificate() {
    let certificate = Certificate::local();
    let (_server, url) = certificate.serve().await;
    for transport in [TransportKind::WebSocket, TransportKind::LongPolling] {
        let why = tls_refusal(builder(&url, transport)).await;
        assert!(why.contains("TLS"), "{transport}: {why}");
        assert!(why.contains("certificate"), "{transport}: {why}");
        assert!(why.contains("UnknownIssuer"), "{transport}: {why}");
    }
    // A client started without waiting keeps trying (with backoff) and has no session.
    let client = builder(&url, TransportKind::WebSocket)
        .build()
        .expect("client starts");
    assert!(matches!(
        client.wait_connected(Duration::from_millis(800)).await,
        Err(Error::NotConnected)
    ));
    assert_eq!(client.status(), bayeux_client::Status::Connecting);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let certificate = Certificate::generate(&["bayeux.example"]);
    let (_server, url) = certificate.serve().await;
    for transport in [TransportKind::WebSocket, TransportKind::LongPolling] {
        let why =
            tls_refusal(builder(&url, transport).tls_config(certificate.trusting_config())).await;
        assert!(why.contains("TLS"), "{transport}: {why}");
        assert!(
            why.contains("certificate not valid for name"),
            "{transport}: {why}"
        );
    }
}

#[tokio::test]
async fn a_plain_client_gets_no_session_from_a_tls_server() {
    let certificate = Certificate::local();
    let (server, _) = certificate.serve().await;
    let url = format!("http://{}{}", server.addr(), server.path());
    let outcome =
        tokio::time::timeout(ARRIVAL, builder(&url, TransportKind::LongPolling).connect())
            .await
            .expect("the failure is reported in time");
    assert!(outcome.is_err(), "plain HTTP to a TLS port must fail");
}

#[tokio::test]
async fn an_unreadable_root_certificate_fails_the_build() {
    let bad = Client::builder("https://127.0.0.1:1/cometd")
        .add_root_certificate("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
        .build();
    assert!(
        matches!(bad, Err(Error::HandshakeFailed(why)) if why.contains("add_root_certificate"))
    );
    let certificate = Certificate::local();
    let both = Client::builder("https://127.0.0.1:1/cometd")
        .add_root_certificate(&certificate.pem)
        .tls_config(certificate.trusting_config())
        .build();
    assert!(matches!(both, Err(Error::HandshakeFailed(_))));
}
