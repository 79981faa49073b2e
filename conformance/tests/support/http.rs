//! A minimal raw HTTP/1.1 client over `tokio::net::TcpStream`.
//!
//! One request per connection (`Connection: close`), so nothing is pipelined or reused and every
//! response is read to its framing end. It can send any method, path, headers and body framing
//! (Content-Length, chunked, or raw bytes verbatim), because conformance tests need to send things
//! a well-behaved client library would refuse to. Every exchange is bounded by a deadline.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Upper bound for one whole exchange (connect, write, read). Held connects in the tests last at
/// most a few seconds, so anything slower than this is a hang.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// How a request body is framed on the wire.
#[derive(Clone, Debug)]
pub enum Body {
    /// No body and no framing header (e.g. a GET).
    None,
    /// Body sent with a `Content-Length` header (also for an empty body: `Content-Length: 0`).
    Fixed(Vec<u8>),
    /// Body sent with `Transfer-Encoding: chunked`, one HTTP chunk per element.
    Chunked(Vec<Vec<u8>>),
}

/// An HTTP request to send.
#[derive(Clone, Debug)]
pub struct Request {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Request target, e.g. `/cometd/connect`.
    pub path: String,
    /// Extra headers; `Host` and `Connection: close` are always added, framing headers per `body`.
    pub headers: Vec<(String, String)>,
    /// Body and its framing.
    pub body: Body,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Body::None,
        }
    }

    /// A POST of `body` as `application/json;charset=UTF-8` with a Content-Length.
    pub fn post_json(path: &str, body: &serde_json::Value) -> Request {
        Request::new("POST", path)
            .header("Content-Type", "application/json;charset=UTF-8")
            .body(body.to_string().into_bytes())
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets a Content-Length framed body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Body::Fixed(body.into());
        self
    }

    /// Sets a chunked body, one HTTP chunk per element (empty elements are skipped, since a
    /// zero-length chunk would end the body).
    pub fn chunked(mut self, chunks: Vec<Vec<u8>>) -> Request {
        self.body = Body::Chunked(chunks.into_iter().filter(|c| !c.is_empty()).collect());
        self
    }

    /// The exact bytes this request puts on the wire.
    pub fn to_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
            self.method, self.path
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let mut out = Vec::new();
        match &self.body {
            Body::None => {
                head.push_str("\r\n");
                out.extend_from_slice(head.as_bytes());
            }
            Body::Fixed(body) => {
                let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(body);
            }
            Body::Chunked(chunks) => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                out.extend_from_slice(head.as_bytes());
                for chunk in chunks {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        out
    }
}

/// A complete HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Headers in received order; names keep their case, compare them case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The de-chunked body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header called `name` (case-insensitive), e.g. several `Set-Cookie`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as (lossy) UTF-8 text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` to `addr` on a fresh connection and reads the whole response.
///
/// `written` is signalled once the request bytes have been handed to the socket, so a caller can
/// start a long poll in a task and know when it has left the client.
pub async fn send(
    addr: SocketAddr,
    req: &Request,
    written: Option<oneshot::Sender<()>>,
) -> io::Result<Response> {
    send_bytes(addr, &req.to_bytes(addr), written).await
}

/// Sends `bytes` verbatim on a fresh connection and reads one response.
pub async fn send_bytes(
    addr: SocketAddr,
    bytes: &[u8],
    written: Option<oneshot::Sender<()>>,
) -> io::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        // A server may answer (e.g. 413) and close before reading the whole body; keep the write
        // error but still try to read the response it sent.
        let write_result = match stream.write_all(bytes).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        if let Some(tx) = written {
            let _ = tx.send(());
        }
        match read_response(&mut stream).await {
            Ok(resp) => Ok(resp),
            Err(read_err) => match write_result {
                Err(write_err) => Err(io::Error::new(
                    read_err.kind(),
                    format!(
                        "write failed ({write_err}), then reading the response failed ({read_err})"
                    ),
                )),
                Ok(()) => Err(read_err),
            },
        }
    };
    match tokio::time::timeout(DEADLINE, exchange).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no complete HTTP response within {DEADLINE:?}"),
        )),
    }
}

/// Buffered reader over the connection, with just the primitives HTTP/1.1 framing needs.
struct Reader<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// Reads more bytes into the buffer; `false` at end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Takes bytes up to and including `delim`.
    async fn take_through(&mut self, delim: &[u8]) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(delim.len()).position(|w| w == delim) {
                return Ok(self.buf.drain(..pos + delim.len()).collect());
            }
            if !self.fill().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed while waiting for {:?}; got {:?}",
                        String::from_utf8_lossy(delim),
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    async fn take_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed after {} of {n} body bytes",
                        self.buf.len()
                    ),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn take_to_end(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? {}
        Ok(std::mem::take(&mut self.buf))
    }
}

async fn read_response(stream: &mut TcpStream) -> io::Result<Response> {
    let mut reader = Reader {
        stream,
        buf: Vec::new(),
    };
    loop {
        let head = reader.take_through(b"\r\n\r\n").await?;
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        // Interim responses (100 Continue) carry no body; the real one follows.
        if (100..200).contains(&status) {
            continue;
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let chunked = resp
            .header("Transfer-Encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        resp.body = if chunked {
            read_chunked(&mut reader).await?
        } else if let Some(len) = resp.header("Content-Length") {
            let len: usize = len
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            reader.take_exact(len).await?
        } else if status == 204 || status == 304 {
            Vec::new()
        } else {
            // No framing: the body runs until the server closes (we sent Connection: close).
            reader.take_to_end().await?
        };
        return Ok(resp);
    }
}

async fn read_chunked(reader: &mut Reader<'_>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = reader.take_through(b"\r\n").await?;
        let line = String::from_utf8_lossy(&line);
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailer section: header lines until an empty line.
            while reader.take_through(b"\r\n").await?.len() > 2 {}
            return Ok(body);
        }
        body.extend(reader.take_exact(size).await?);
        reader.take_through(b"\r\n").await?;
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
