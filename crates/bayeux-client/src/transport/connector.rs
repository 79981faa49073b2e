//! Opening the byte stream to the server, for HTTP requests and websockets alike.
//!
//! This is the one place that knows how bytes reach the server: adding TLS means adding a
//! variant to [`Stream`] (e.g. a rustls client stream over the `TcpStream`) and building it in
//! [`connect`] when `secure` is set. Both transports pick it up: long-polling through
//! [`HttpConnector`], websockets through [`connect`] directly.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection to the server.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP (`http://`, `ws://`).
    Plain(TcpStream),
}

/// Opens a stream to `host:port`; `secure` asks for TLS (`https://`, `wss://`).
pub(crate) async fn connect(host: &str, port: u16, secure: bool) -> io::Result<Stream> {
    if secure {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "https and wss are not supported yet",
        ));
    }
    let tcp = TcpStream::connect((host, port)).await?;
    // Bayeux messages are small and latency matters more than packet count.
    tcp.set_nodelay(true)?;
    Ok(Stream::Plain(tcp))
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
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The connector of the HTTP client: [`connect`], in the shape hyper's pool wants.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpConnector;

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
        Box::pin(async move {
            let (host, port, secure) = target(&uri)?;
            let stream = connect(&host, port, secure).await?;
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
