//! A keep-alive HTTP/1.1 client for long-polling: one request in flight per connection.
//!
//! Enough HTTP for Bayeux POSTs to a known server: Content-Length and chunked responses,
//! `Set-Cookie` into a per-session [`CookieJar`], `Connection: close`, and one transparent
//! reconnect when a reused idle connection turns out to have been closed by the server (Node
//! closes idle keep-alive connections after 5 s). Read and write buffers are kept between
//! requests, so a steady exchange allocates nothing here. It is not a general HTTP client: no
//! redirects, no TLS, no proxies.

use std::io::{self, Write as _};
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the Bayeux endpoint is: a loopback address and the mount path.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server's socket address (always loopback).
    pub addr: SocketAddr,
    /// The mount path, e.g. `/cometd`.
    pub path: String,
}

impl Target {
    /// Parses `http://127.0.0.1:PORT/path`; anything but a loopback IP address is refused,
    /// because the generator is meant for local benchmarks only.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority
            .parse()
            .map_err(|_| format!("{url}: expected an IP:PORT authority"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("{url}: only loopback addresses are allowed"));
        }
        Ok(Target {
            addr,
            path: path.to_string(),
        })
    }

    /// The websocket URL of the same endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, self.path)
    }
}

/// The cookies one simulated browser holds, as a ready-made `Cookie` header value.
#[derive(Clone, Debug, Default)]
pub struct CookieJar {
    header: String,
}

impl CookieJar {
    /// Stores (or replaces) the cookie of one `Set-Cookie` header value.
    pub fn store(&mut self, set_cookie: &str) {
        let pair = set_cookie.split(';').next().unwrap_or_default().trim();
        let Some((name, _)) = pair.split_once('=') else {
            return;
        };
        let kept: Vec<&str> = self
            .header
            .split("; ")
            .filter(|c| !c.is_empty() && c.split_once('=').map(|(n, _)| n) != Some(name))
            .collect();
        let mut header = kept.join("; ");
        if !header.is_empty() {
            header.push_str("; ");
        }
        header.push_str(pair);
        self.header = header;
    }

    /// The `Cookie` header value, empty when the jar is empty.
    pub fn header(&self) -> &str {
        &self.header
    }
}

/// One keep-alive connection.
pub struct HttpConn {
    addr: SocketAddr,
    path: String,
    stream: Option<TcpStream>,
    /// Received bytes; `rbuf[..filled]` is valid.
    rbuf: Vec<u8>,
    filled: usize,
    wbuf: Vec<u8>,
    /// De-chunked body of the last chunked response.
    body: Vec<u8>,
}

/// Where the body of a parsed response lies.
enum BodyAt {
    /// `rbuf[start..end]`.
    Raw(usize, usize),
    /// `body`.
    Dechunked,
}

impl HttpConn {
    /// Opens a connection to `target`.
    pub async fn connect(target: &Target) -> io::Result<HttpConn> {
        let mut conn = HttpConn {
            addr: target.addr,
            path: target.path.clone(),
            stream: None,
            rbuf: vec![0; 16 * 1024],
            filled: 0,
            wbuf: Vec::with_capacity(1024),
            body: Vec::new(),
        };
        conn.reopen().await?;
        Ok(conn)
    }

    async fn reopen(&mut self) -> io::Result<()> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        self.filled = 0;
        Ok(())
    }

    /// POSTs `body` as JSON with the jar's cookies and returns the 200 response's body;
    /// cookies the server sets go into `jar`. Any other status is an error.
    pub async fn post(&mut self, body: &[u8], jar: &mut CookieJar) -> io::Result<&[u8]> {
        self.wbuf.clear();
        self.wbuf.extend_from_slice(b"POST ");
        self.wbuf.extend_from_slice(self.path.as_bytes());
        let _ = write!(
            self.wbuf,
            " HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json;charset=UTF-8\r\n",
            self.addr
        );
        if !jar.header().is_empty() {
            self.wbuf.extend_from_slice(b"Cookie: ");
            self.wbuf.extend_from_slice(jar.header().as_bytes());
            self.wbuf.extend_from_slice(b"\r\n");
        }
        let _ = write!(self.wbuf, "Content-Length: {}\r\n\r\n", body.len());
        self.wbuf.extend_from_slice(body);

        if self.stream.is_none() {
            self.reopen().await?;
        }
        let at = match self.exchange(jar).await {
            Ok(at) => at,
            // A reused connection the server closed while idle: retry once on a fresh one, as
            // browsers do. Nothing of the response had arrived, so nothing was processed twice
            // that a browser would not also have sent twice.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.reopen().await?;
                self.exchange(jar).await?
            }
            Err(e) => return Err(e),
        };
        Ok(match at {
            BodyAt::Raw(start, end) => &self.rbuf[start..end],
            BodyAt::Dechunked => &self.body,
        })
    }

    async fn exchange(&mut self, jar: &mut CookieJar) -> io::Result<BodyAt> {
        let stream = self.stream.as_mut().expect("stream opened before exchange");
        if let Err(e) = stream.write_all(&self.wbuf).await {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, e));
        }
        self.filled = 0;
        // Head.
        let head_end = loop {
            if let Some(pos) = find(&self.rbuf[..self.filled], b"\r\n\r\n") {
                break pos + 4;
            }
            if self.fill().await? == 0 {
                return Err(if self.filled == 0 {
                    io::Error::new(io::ErrorKind::ConnectionReset, "closed before a response")
                } else {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed inside a response head",
                    )
                });
            }
        };
        let head = &self.rbuf[..head_end];
        let status = parse_status(head)?;
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                content_length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = value
                    .to_ascii_lowercase()
                    .windows(7)
                    .any(|w| w == b"chunked");
            } else if name.eq_ignore_ascii_case(b"connection") {
                close = value.eq_ignore_ascii_case(b"close");
            } else if name.eq_ignore_ascii_case(b"set-cookie") {
                jar.store(&String::from_utf8_lossy(value));
            }
        }
        let at = if chunked {
            self.read_chunked(head_end).await?
        } else if let Some(len) = content_length {
            let end = head_end + len;
            self.fill_to(end).await?;
            BodyAt::Raw(head_end, end)
        } else {
            // Unframed: the body runs to the end of the stream.
            while self.fill().await? > 0 {}
            close = true;
            BodyAt::Raw(head_end, self.filled)
        };
        if close {
            self.stream = None;
        }
        if status != 200 {
            let body = match &at {
                BodyAt::Raw(s, e) => String::from_utf8_lossy(&self.rbuf[*s..*e]).into_owned(),
                BodyAt::Dechunked => String::from_utf8_lossy(&self.body).into_owned(),
            };
            return Err(io::Error::other(format!("HTTP {status}: {body}")));
        }
        Ok(at)
    }

    async fn read_chunked(&mut self, mut pos: usize) -> io::Result<BodyAt> {
        self.body.clear();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.rbuf[pos..self.filled], b"\r\n") {
                    break pos + i;
                }
                if self.fill().await? == 0 {
                    return Err(eof("chunk size"));
                }
            };
            let size_text = std::str::from_utf8(&self.rbuf[pos..line_end]).unwrap_or("");
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    if let Some(i) = find(&self.rbuf[pos..self.filled], b"\r\n") {
                        pos += i + 2;
                        if i == 0 {
                            return Ok(BodyAt::Dechunked);
                        }
                        continue;
                    }
                    if self.fill().await? == 0 {
                        return Err(eof("chunk trailer"));
                    }
                }
            }
            self.fill_to(pos + size + 2).await?;
            self.body.extend_from_slice(&self.rbuf[pos..pos + size]);
            pos += size + 2;
        }
    }

    async fn fill_to(&mut self, end: usize) -> io::Result<()> {
        while self.filled < end {
            if self.fill().await? == 0 {
                return Err(eof("body"));
            }
        }
        Ok(())
    }

    async fn fill(&mut self) -> io::Result<usize> {
        if self.filled == self.rbuf.len() {
            let len = self.rbuf.len() * 2;
            self.rbuf.resize(len, 0);
        }
        let stream = self.stream.as_mut().expect("stream opened before reading");
        let n = stream.read(&mut self.rbuf[self.filled..]).await?;
        self.filled += n;
        Ok(n)
    }
}

fn parse_status(head: &[u8]) -> io::Result<u16> {
    head.split(|&b| b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn eof(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("closed inside the {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jar_replaces_cookies_by_name() {
        let mut jar = CookieJar::default();
        jar.store("BAYEUX_BROWSER=abc; Path=/; HttpOnly");
        jar.store("other=1");
        jar.store("BAYEUX_BROWSER=def");
        assert_eq!(jar.header(), "other=1; BAYEUX_BROWSER=def");
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        let t = Target::parse("http://127.0.0.1:8080/cometd").expect("loopback");
        assert_eq!(t.ws_url(), "ws://127.0.0.1:8080/cometd");
        assert!(Target::parse("http://10.0.0.1:8080/cometd").is_err());
        assert!(Target::parse("https://127.0.0.1:8080/cometd").is_err());
    }
}
