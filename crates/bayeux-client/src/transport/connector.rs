//! Opening the byte stream to the server, for HTTP requests and websockets alike.
//!
//! This is the one place that knows how bytes reach the server: plain TCP for `http://` and
//! `ws://`, TLS (rustls) over TCP for `https://` and `wss://`. Both transports go through it:
//! long-polling through [`HttpConnector`], websockets through [`Connector::connect`] directly.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The only application protocol offered by ALPN: the client speaks HTTP/1.1 (hyper's http1
/// client, and the websocket upgrade, which HTTP/2 does not have in this form).
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// A connection to the server.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP (`http://`, `ws://`).
    Plain(TcpStream),
    /// TLS over TCP (`https://`, `wss://`).
    Tls(Box<TlsStream<TcpStream>>),
}

/// Opens [`Stream`]s: plain, or TLS with the client's rustls configuration.
#[derive(Clone)]
pub(crate) struct Connector {
    /// The TLS configuration, with ALPN set to HTTP/1.1; used for `https://` and `wss://`.
    tls: Arc<ClientConfig>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector using `tls` for secure URLs, or the default configuration
    /// ([`default_tls_config`]) with `extra_roots` added to Mozilla's roots.
    ///
    /// ALPN is set to `http/1.1` whatever `tls` says.
    pub fn new(tls: Option<Arc<ClientConfig>>, extra_roots: &[CertificateDer<'static>]) -> Self {
        let mut config = match tls {
            Some(config) => (*config).clone(),
            None => default_tls_config(extra_roots),
        };
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        Self {
            tls: Arc::new(config),
        }
    }

    /// Opens a stream to `host:port`; `secure` asks for TLS (`https://`, `wss://`).
    ///
    /// A failed TLS handshake (untrusted certificate, no common protocol, ...) is an error
    /// carrying a [`TlsFailure`].
    pub async fn connect(&self, host: &str, port: u16, secure: bool) -> io::Result<Stream> {
        let tcp = TcpStream::connect((host, port)).await?;
        // Bayeux messages are small and latency matters more than packet count.
        tcp.set_nodelay(true)?;
        if !secure {
            return Ok(Stream::Plain(tcp));
        }
        let name = server_name(host)?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| {
                // A certificate or protocol failure comes as InvalidData carrying the rustls
                // error; anything else (reset, closed) is the network's doing, under TLS.
                let why = match e.get_ref() {
                    Some(inner) => inner.to_string(),
                    None => e.to_string(),
                };
                io::Error::other(TlsFailure(format!(
                    "TLS handshake with {host} failed: {why}"
                )))
            })?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// The configuration used without [`ClientBuilder::tls_config`](crate::ClientBuilder::tls_config):
/// aws-lc-rs's cryptography, Mozilla's root certificates (`webpki-roots`) plus `extra_roots`, no
/// client certificate.
pub(crate) fn default_tls_config(extra_roots: &[CertificateDer<'static>]) -> ClientConfig {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // Already checked when they were added (see `parse_certificates`).
    let (_added, _ignored) = roots.add_parsable_certificates(extra_roots.iter().cloned());
    // The provider is named rather than taken from the process default: another crate in the
    // same build may enable rustls's ring provider too, and then there is no default.
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The certificates in `data`: PEM (one or more `CERTIFICATE` blocks) or a single DER
/// certificate. Each must be usable as a trust anchor.
pub(crate) fn parse_certificates(data: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certificates: Vec<CertificateDer<'static>> =
        if data.trim_ascii_start().starts_with(b"-----BEGIN") {
            CertificateDer::pem_slice_iter(data)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("bad PEM certificate: {e}"))?
        } else {
            vec![CertificateDer::from(data.to_vec())]
        };
    if certificates.is_empty() {
        return Err("no CERTIFICATE in the PEM text".into());
    }
    let mut store = RootCertStore::empty();
    for certificate in &certificates {
        store
            .add(certificate.clone())
            .map_err(|e| format!("unusable root certificate: {e}"))?;
    }
    Ok(certificates)
}

/// The name the server's certificate must carry: the URL's host, a DNS name or an IP address
/// (without the brackets of `[::1]`).
pub(crate) fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            TlsFailure(format!("TLS: {host:?} is not a valid server name: {e}")),
        )
    })
}

/// Why a TLS connection could not be set up; found in the source chain of connection errors
/// by [`tls_failure`].
#[derive(Debug)]
pub(crate) struct TlsFailure(String);

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for TlsFailure {}

/// The TLS failure behind `error`, if that is what it is (looked for along the source chain,
/// through hyper's and io's wrappers).
pub(crate) fn tls_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(failure) = e.downcast_ref::<TlsFailure>() {
            return Some(failure.0.clone());
        }
        // io::Error's `source` skips its payload (to the payload's source): step into it.
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Host, port and TLS flag of a URI (default ports 80 and 443).
pub(crate) fn target(uri: &Uri) -> io::Result<(String, u16, bool)> {
    let secure = matches!(uri.scheme_str(), Some("https" | "wss"));
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI without a host"))?;
    // `[::1]` is written with brackets in URIs but connected to without them.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    Ok((host, port, secure))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connector of the HTTP client: [`Connector::connect`], in the shape hyper's pool wants.
#[derive(Clone, Debug)]
pub(crate) struct HttpConnector(pub Connector);

/// A [`Stream`] as hyper reads and writes it.
#[derive(Debug)]
pub(crate) struct HttpIo(TokioIo<Stream>);

impl tower_service::Service<Uri> for HttpConnector {
    type Response = HttpIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<HttpIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.0.clone();
        Box::pin(async move {
            let (host, port, secure) = target(&uri)?;
            let stream = connector.connect(&host, port, secure).await?;
            Ok(HttpIo(TokioIo::new(stream)))
        })
    }
}

impl Connection for HttpIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for HttpIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for HttpIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_from_dns_names_and_ip_addresses() {
        assert!(matches!(
            server_name("example.com").unwrap(),
            ServerName::DnsName(d) if d.as_ref() == "example.com"
        ));
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        // `target` strips the brackets of `[::1]`.
        let (host, port, secure) = target(&"https://[::1]:8443/cometd".parse().unwrap()).unwrap();
        assert_eq!((host.as_str(), port, secure), ("::1", 8443, true));
        assert!(matches!(
            server_name(&host).unwrap(),
            ServerName::IpAddress(_)
        ));
        let e = server_name("bad name!").unwrap_err();
        assert!(tls_failure(&e).unwrap().contains("TLS"), "{e}");
    }

    #[test]
    fn secure_schemes_default_to_443() {
        let (host, port, secure) = target(&"wss://example.com/cometd".parse().unwrap()).unwrap();
        assert_eq!((host.as_str(), port, secure), ("example.com", 443, true));
        let (_, port, secure) = target(&"http://example.com/cometd".parse().unwrap()).unwrap();
        assert_eq!((port, secure), (80, false));
    }

    #[test]
    fn alpn_is_http_1_1_whatever_the_given_config_says() {
        let mut given = default_tls_config(&[]);
        given.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = Connector::new(Some(Arc::new(given)), &[]);
        assert_eq!(connector.tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let connector = Connector::new(None, &[]);
        assert_eq!(connector.tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn tls_failure_is_found_through_wrappers() {
        let inner = io::Error::other(TlsFailure("TLS handshake with h failed: x".into()));
        let wrapped = io::Error::other(inner);
        assert_eq!(
            tls_failure(&wrapped).as_deref(),
            Some("TLS handshake with h failed: x")
        );
        assert_eq!(tls_failure(&io::Error::other("refused")), None);
    }

    #[test]
    fn certificates_parse_from_pem_or_der() {
        assert!(parse_certificates(
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
        )
        .is_err());
        assert!(parse_certificates(b"").is_err());
        assert!(parse_certificates(b"\x30\x03\x02\x01\x00").is_err());
    }
}
