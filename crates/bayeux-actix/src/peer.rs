//! Seeing the connection under a request: whether the client of a `/meta/connect` went away,
//! which actix-web does not tell a handler.
//!
//! [`watch_connections`], given to `HttpServer::on_connect`, keeps a duplicate of each accepted
//! TCP socket's descriptor in the connection's data. A batch with a connect peeks at it first,
//! and a held connect is woken when it becomes readable: a `peek` that returns 0 bytes means
//! the client closed the connection, so what is queued stays for the session's next connect
//! instead of going into a dead socket. Cost per connection: one file descriptor, and from its
//! first held connect one registration with the runtime's poller (about 100 bytes).

use std::any::Any;
use std::io;
use std::mem::MaybeUninit;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use actix_web::dev::Extensions;
use bayeux_transport::PeerWatch;
use socket2::SockRef;
use tokio::io::ReadBuf;

/// Keeps what is needed to watch each accepted connection. Pass it to
/// `HttpServer::on_connect`; without it, a client that vanishes during a held connect loses the
/// messages that connect is answered with (unless it uses the `ack` extension).
///
/// ```no_run
/// # use actix_web::{App, HttpServer};
/// # async fn demo(server: bayeux_server::Server) -> std::io::Result<()> {
/// HttpServer::new(move || App::new().service(bayeux_actix::scope("/cometd", server.clone())))
///     .on_connect(bayeux_actix::watch_connections)
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// # }
/// ```
pub fn watch_connections(connection: &dyn Any, data: &mut Extensions) {
    let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        // TLS or another transport: not watched.
        return;
    };
    let duplicate = std::os::fd::AsFd::as_fd(stream)
        .try_clone_to_owned()
        .map(std::net::TcpStream::from);
    if let Ok(socket) = duplicate {
        data.insert(PeerSocket {
            unregistered: Mutex::new(Some(socket)),
            registered: OnceLock::new(),
        });
    }
}

/// A duplicate of a connection's socket, registered with the runtime's poller on first use.
pub(crate) struct PeerSocket {
    unregistered: Mutex<Option<std::net::TcpStream>>,
    registered: OnceLock<Option<tokio::net::TcpStream>>,
}

impl PeerSocket {
    /// Asks the socket itself, not the poller's last report: a client that closed a moment ago
    /// is seen even before the poller has run again. `None`: open, nothing to read.
    fn peek(&self) -> Option<Poll<()>> {
        let mut byte = [MaybeUninit::uninit()];
        // The duplicate shares the connection's non-blocking mode, so this never waits.
        let seen = match self.registered.get() {
            Some(Some(socket)) => SockRef::from(socket).peek(&mut byte),
            _ => {
                let unregistered = self
                    .unregistered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                SockRef::from(unregistered.as_ref()?).peek(&mut byte)
            }
        };
        match seen {
            // End of stream, or reset: nobody reads the answer.
            Ok(0) => Some(Poll::Ready(())),
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Some(Poll::Ready(())),
            // The client sent more: it is alive. Not watched any further for this request.
            Ok(_) => Some(Poll::Pending),
            Err(_) => None,
        }
    }
}

impl PeerWatch for PeerSocket {
    fn is_closed(&self) -> bool {
        matches!(self.peek(), Some(Poll::Ready(())))
    }

    fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered on the worker that serves the connection, which is where its requests run.
        let registered = self.registered.get_or_init(|| {
            let socket = self
                .unregistered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()?;
            tokio::net::TcpStream::from_std(socket).ok()
        });
        let Some(socket) = registered else {
            return Poll::Pending;
        };
        if let Some(seen) = self.peek() {
            return seen;
        }
        // Nothing to read yet: the runtime's peek registers this task for when there is (data,
        // or the end), and looks again then.
        let mut byte = [0u8; 1];
        match socket.poll_peek(cx, &mut ReadBuf::new(&mut byte)) {
            Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(()),
            Poll::Ready(Ok(_)) | Poll::Pending => Poll::Pending,
        }
    }
}
