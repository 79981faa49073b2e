//! The [`Client`] handle, its builder, and the shared state behind them.
//!
//! Every request, whatever its transport, goes through [`Inner::exchange`]: it gives each
//! message an `id`, runs the outgoing extensions, records what waits for a reply, and sends the
//! batch. Every message received goes through [`Inner::dispatch`]: incoming extensions, advice,
//! then either the waiting request (matched by `id`) or the matching subscriptions. The
//! handshake/connect loop itself lives in `session.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bayeux_message::{encode_batch, ChannelKind, ChannelName, Message};
use rustls::pki_types::CertificateDer;
use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, watch};

use crate::advice::{AdviceState, Backoff};
use crate::batch::Batch;
use crate::cookie::CookieJar;
use crate::error::{check_reply, is_successful, Error};
use crate::extension::{AckExtension, Extension};
use crate::subscription::{Registry, Subscription};
use crate::transport::connector::{self, Connector};
use crate::transport::long_polling::LongPolling;
use crate::transport::websocket::{self, WsConnection};
use crate::transport::{Endpoint, TransportError, TransportKind};

/// Where the client stands with the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Handshaking (at start, or again after the server forgot the session).
    Connecting,
    /// The client has a session: requests can be sent.
    Connected,
    /// Stopped for good: disconnected, or told by the server not to reconnect.
    Disconnected,
}

/// How the session is going, as watched by [`Client::connect`] and friends.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub status: Status,
    /// Successful handshakes so far.
    pub handshakes: u64,
    /// Handshakes that failed since the last success.
    pub handshake_failures: u32,
    /// Why the last handshake or connect failed.
    pub last_error: Option<Error>,
}

/// The settings a [`ClientBuilder`] collects.
pub(crate) struct Config {
    /// Transports in order of preference.
    pub transports: Vec<TransportKind>,
    /// How long a reply may take on top of what the server advises.
    pub max_network_delay: Duration,
    pub backoff: Backoff,
    /// Fields added to `ext` of every handshake (credentials, typically).
    pub handshake_ext: Map<String, Value>,
}

/// Builds a [`Client`]: transports, extensions, timeouts, TLS.
pub struct ClientBuilder {
    url: String,
    config: Config,
    ack: bool,
    extensions: Vec<Arc<dyn Extension>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    extra_roots: Vec<CertificateDer<'static>>,
    /// The first certificate given to `add_root_certificate` that could not be used.
    bad_root: Option<String>,
}

impl ClientBuilder {
    /// A builder for the server at `url` (e.g. `http://127.0.0.1:8080/cometd`, or `https://`
    /// for TLS); the websocket URL is the same with the `ws` (or `wss`) scheme.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            config: Config {
                transports: vec![TransportKind::WebSocket, TransportKind::LongPolling],
                max_network_delay: Duration::from_secs(10),
                backoff: Backoff::default(),
                handshake_ext: Map::new(),
            },
            ack: true,
            extensions: Vec::new(),
            tls: None,
            extra_roots: Vec::new(),
            bad_root: None,
        }
    }

    /// The transports to use, most preferred first [default: websocket, then long-polling].
    ///
    /// The handshake goes over the first one that works; if the server does not offer it (its
    /// handshake reply's `supportedConnectionTypes`) or refuses the websocket upgrade, the
    /// client moves on to the next.
    pub fn transports(mut self, transports: &[TransportKind]) -> Self {
        let mut kinds = Vec::new();
        for kind in transports {
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
        self.config.transports = kinds;
        self
    }

    /// Whether to use the `ack` extension [default: true]; see [`AckExtension`].
    pub fn ack(mut self, enabled: bool) -> Self {
        self.ack = enabled;
        self
    }

    /// Adds an extension; extensions run in the order they are added, after the ack extension.
    pub fn extension(mut self, extension: impl Extension) -> Self {
        self.extensions.push(Arc::new(extension));
        self
    }

    /// How long a reply may take to cross the network [default: 10 s]: the timeout of every
    /// request, plus the server's advised hold time for `/meta/connect`.
    pub fn max_network_delay(mut self, delay: Duration) -> Self {
        self.config.max_network_delay = delay;
        self
    }

    /// How the pause between failed attempts grows: `increment` more per consecutive failure,
    /// at most `max` [default: 1 s, 60 s].
    pub fn backoff(mut self, increment: Duration, max: Duration) -> Self {
        self.config.backoff = Backoff { increment, max };
        self
    }

    /// Adds `key: value` to the `ext` of every handshake (e.g. credentials).
    pub fn handshake_ext(mut self, key: impl Into<String>, value: Value) -> Self {
        self.config.handshake_ext.insert(key.into(), value);
        self
    }

    /// The TLS configuration for `https://` and `wss://` URLs: its root certificates, client
    /// certificate, cryptography provider and protocol versions are used as they are; only
    /// its ALPN list is replaced by `http/1.1`, the one protocol the client speaks.
    ///
    /// [default: rustls with aws-lc-rs's cryptography, TLS 1.2 and 1.3, Mozilla's root certificates
    /// (`webpki-roots`) and those of [`ClientBuilder::add_root_certificate`], no client
    /// certificate]
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use bayeux_client::rustls;
    ///
    /// # async fn f(my_ca: rustls::pki_types::CertificateDer<'static>) -> Result<(), bayeux_client::Error> {
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(my_ca).expect("a CA certificate");
    /// // The process's default provider; `builder_with_provider` names one.
    /// let config = rustls::ClientConfig::builder()
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let client = bayeux_client::Client::builder("https://bayeux.example:8443/cometd")
    ///     .tls_config(Arc::new(config))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Trusts `certificate` too (PEM, possibly several `CERTIFICATE` blocks, or DER), besides
    /// Mozilla's roots: for a server whose certificate is self-signed or issued by a private
    /// CA. A certificate that cannot be read makes [`ClientBuilder::build`] fail; so does
    /// combining this with [`ClientBuilder::tls_config`] (add the roots to that configuration
    /// instead).
    pub fn add_root_certificate(mut self, certificate: impl AsRef<[u8]>) -> Self {
        match connector::parse_certificates(certificate.as_ref()) {
            Ok(certificates) => self.extra_roots.extend(certificates),
            Err(why) => {
                self.bad_root.get_or_insert(why);
            }
        }
        self
    }

    /// Starts the client: it handshakes and keeps its session in the background, retrying
    /// with backoff while the server is unreachable. Requests wait (up to the network delay)
    /// for the session.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn build(self) -> Result<Client, Error> {
        let endpoint = Endpoint::parse(&self.url).map_err(Error::HandshakeFailed)?;
        if let Some(why) = self.bad_root {
            return Err(Error::HandshakeFailed(format!(
                "add_root_certificate: {why}"
            )));
        }
        if self.tls.is_some() && !self.extra_roots.is_empty() {
            return Err(Error::HandshakeFailed(
                "add_root_certificate and tls_config exclude each other: add the roots to the \
                 rustls configuration"
                    .into(),
            ));
        }
        let connector = Connector::new(self.tls, &self.extra_roots);
        if self.config.transports.is_empty() {
            return Err(Error::HandshakeFailed("no transport allowed".into()));
        }
        let mut extensions = Vec::new();
        if self.ack {
            extensions.push(Arc::new(AckExtension::new()) as Arc<dyn Extension>);
        }
        extensions.extend(self.extensions);
        let cookies = Arc::new(CookieJar::new());
        let (progress, _) = watch::channel(Progress {
            status: Status::Connecting,
            handshakes: 0,
            handshake_failures: 0,
            last_error: None,
        });
        let inner = Arc::new(Inner {
            long_polling: LongPolling::new(
                endpoint.http.clone(),
                cookies.clone(),
                connector.clone(),
            ),
            connector,
            state: Mutex::new(State {
                client_id: None,
                transport: self.config.transports[0],
                websocket_refused: false,
                advice: AdviceState::default(),
                pending: HashMap::new(),
                subscriptions: Registry::default(),
                terminated: false,
            }),
            config: self.config,
            endpoint,
            cookies,
            socket: tokio::sync::Mutex::new(None),
            extensions,
            progress,
            shutdown: watch::channel(false).0,
            next_id: AtomicU64::new(0),
            next_generation: AtomicU64::new(0),
        });
        tokio::spawn(crate::session::run(inner.clone()));
        Ok(Client {
            handle: Arc::new(Handle { inner }),
        })
    }

    /// Starts the client and waits for its first handshake: `Ok` once it has a session, the
    /// error otherwise (the client is then stopped).
    pub async fn connect(self) -> Result<Client, Error> {
        let client = self.build()?;
        let mut progress = client.handle.inner.progress.subscribe();
        let outcome = progress
            .wait_for(|p| p.status != Status::Connecting || p.handshake_failures > 0)
            .await
            .map(|p| (p.status, p.last_error.clone()));
        match outcome {
            Ok((Status::Connected, _)) => Ok(client),
            Ok((_, error)) => {
                client.handle.inner.terminate().await;
                Err(error.unwrap_or(Error::Disconnected))
            }
            Err(_) => Err(Error::Disconnected),
        }
    }
}

/// A CometD client: cheap to clone; all clones share one session.
///
/// Dropping the last clone stops the session (a best-effort `/meta/disconnect` is sent from a
/// background task); [`Client::disconnect`] does it and waits for the server's reply.
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let inner = self.inner.clone();
        if inner.shutdown.send_replace(true) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { inner.disconnect().await });
        }
    }
}

impl Client {
    /// Connects to `url` with the default settings; see [`ClientBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Client, Error> {
        ClientBuilder::new(url).connect().await
    }

    /// A builder, for transports, extensions and timeouts.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// Subscribes to a channel or pattern (`/a/*`, `/a/**`); `Ok` once the server agreed.
    ///
    /// The subscription survives re-handshakes: the client subscribes again on each new
    /// session. Subscribing to a `/service/` channel is accepted by servers but receives
    /// nothing; answers to service requests come through [`Client::remote_call`].
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, Error> {
        let inner = &self.handle.inner;
        let name = parse_channel(channel)?;
        if name.kind() == ChannelKind::Meta {
            return Err(Error::InvalidChannel(format!(
                "{channel}: meta channels cannot be subscribed to"
            )));
        }
        inner.wait_for_session().await?;
        let (id, receiver, first) = inner.lock().subscriptions.add(name.clone());
        let mut subscription = Subscription::new(id, name.clone(), receiver, inner);
        if first {
            let message = subscribe_message("/meta/subscribe", &name);
            if let Err(e) = inner.request(message).await {
                // The server never subscribed: drop it locally without unsubscribing.
                inner.remove_subscription(id);
                subscription.deactivate();
                return Err(e);
            }
        }
        Ok(subscription)
    }

    /// Publishes `data` on `channel` and waits for the server's reply (returned).
    pub async fn publish(&self, channel: &str, data: Value) -> Result<Message, Error> {
        let message = publish_message(channel, data)?;
        let inner = &self.handle.inner;
        inner.wait_for_session().await?;
        inner.request(message).await
    }

    /// Sends several messages in one request (one HTTP POST, or one websocket frame) and waits
    /// for all their replies, in order; the first refusal is the error.
    ///
    /// ```no_run
    /// # async fn f(client: bayeux_client::Client) -> Result<(), bayeux_client::Error> {
    /// client
    ///     .batch(|b| {
    ///         b.publish("/chat", serde_json::json!("one"))?
    ///             .publish("/chat", serde_json::json!("two"))?;
    ///         Ok(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn batch(
        &self,
        build: impl FnOnce(&mut Batch) -> Result<(), Error>,
    ) -> Result<Vec<Message>, Error> {
        let mut batch = Batch::default();
        build(&mut batch)?;
        self.send_batch(batch).await
    }

    /// Sends a [`Batch`] built beforehand; see [`Client::batch`].
    pub async fn send_batch(&self, batch: Batch) -> Result<Vec<Message>, Error> {
        let messages = batch.into_messages();
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.handle.inner;
        inner.wait_for_session().await?;
        let pending = messages.into_iter().map(|m| (m, Expect::Reply)).collect();
        inner
            .exchange(pending, inner.config.max_network_delay)
            .await
            .into_iter()
            .map(|reply| reply.and_then(check_reply))
            .collect()
    }

    /// Calls a service: publishes `data` on a `/service/` channel and waits up to `timeout` for
    /// the answer the server sends back with the same message id; returns its `data`.
    ///
    /// A failed answer (`successful: false`) is [`Error::CallFailed`] with its `data`; a refused
    /// publish is [`Error::Server`].
    pub async fn remote_call(
        &self,
        channel: &str,
        data: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let message = publish_message(channel, data)?;
        if parse_channel(channel)?.kind() != ChannelKind::Service {
            return Err(Error::InvalidChannel(format!(
                "{channel}: remote calls go to /service/ channels"
            )));
        }
        let inner = &self.handle.inner;
        inner.wait_for_session().await?;
        let answer = inner
            .exchange(vec![(message, Expect::RemoteCall)], timeout)
            .await
            .pop()
            .expect("one result per message")?;
        Ok(answer.data().cloned().unwrap_or(Value::Null))
    }

    /// Ends the session: sends `/meta/disconnect`, waits for its reply, and stops. Streams of
    /// subscriptions end; later requests fail with [`Error::Disconnected`].
    pub async fn disconnect(&self) -> Result<(), Error> {
        let inner = &self.handle.inner;
        inner.shutdown.send_replace(true);
        inner.disconnect().await
    }

    /// Where the client stands with the server.
    pub fn status(&self) -> Status {
        self.handle.inner.progress.borrow().status
    }

    /// Waits until the client has a session (`Ok`), is disconnected ([`Error::Disconnected`]),
    /// or `timeout` passes ([`Error::NotConnected`]).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        self.handle.inner.wait_for_session_within(timeout).await
    }

    /// The current session id, when the client has one.
    pub fn client_id(&self) -> Option<String> {
        self.handle.inner.lock().client_id.clone()
    }

    /// The transport of the current session (or of the handshake under way).
    pub fn transport(&self) -> TransportKind {
        self.handle.inner.lock().transport
    }

    /// How many handshakes succeeded: more than one means the client had to start a new
    /// session (and subscribed again).
    pub fn handshakes(&self) -> u64 {
        self.handle.inner.progress.borrow().handshakes
    }

    /// The cookies the server set (`BAYEUX_BROWSER`, ...).
    pub fn cookies(&self) -> &CookieJar {
        &self.handle.inner.cookies
    }
}

/// Validates a channel name.
fn parse_channel(channel: &str) -> Result<ChannelName, Error> {
    ChannelName::parse(channel).map_err(|why| Error::InvalidChannel(format!("{channel}: {why:?}")))
}

/// A publish message, after checking that `channel` can be published to.
pub(crate) fn publish_message(channel: &str, data: Value) -> Result<Message, Error> {
    let name = parse_channel(channel)?;
    if name.kind() == ChannelKind::Meta || name.is_wildcard() {
        return Err(Error::InvalidChannel(format!(
            "{channel}: cannot publish to meta channels or patterns"
        )));
    }
    Ok(Message::new()
        .with("channel", name.as_str())
        .with("data", data))
}

fn subscribe_message(meta: &str, channel: &ChannelName) -> Message {
    Message::new()
        .with("channel", meta)
        .with("subscription", channel.as_str())
}

/// Where the reply (or the failure) of one request is sent.
type ReplySender = oneshot::Sender<Result<Message, Error>>;

/// What a request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Its reply (same `id`).
    Reply,
    /// A service's answer: a message with the same `id` that carries `data`. The publish's own
    /// reply (no `data`) only matters when it is a refusal.
    RemoteCall,
}

struct Pending {
    expect: Expect,
    /// The websocket it was sent on (0 for HTTP): when that socket closes, the reply is lost.
    generation: u64,
    reply: ReplySender,
}

/// The mutable state, behind one lock that is never held across an await.
pub(crate) struct State {
    pub client_id: Option<String>,
    pub transport: TransportKind,
    /// The server refused the websocket upgrade (or does not offer websockets): use the next
    /// transport from now on.
    pub websocket_refused: bool,
    pub advice: AdviceState,
    pending: HashMap<String, Pending>,
    pub subscriptions: Registry,
    pub terminated: bool,
}

/// Everything a [`Client`] shares with its background session task.
pub(crate) struct Inner {
    pub config: Config,
    endpoint: Endpoint,
    cookies: Arc<CookieJar>,
    /// Opens websockets (long-polling has its own clone).
    connector: Connector,
    long_polling: LongPolling,
    socket: tokio::sync::Mutex<Option<Arc<WsConnection>>>,
    state: Mutex<State>,
    extensions: Vec<Arc<dyn Extension>>,
    pub progress: watch::Sender<Progress>,
    /// Set to stop the session task (and, by whoever set it, end the session).
    pub shutdown: watch::Sender<bool>,
    next_id: AtomicU64,
    next_generation: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("url", &self.endpoint.http)
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("client state lock")
    }

    /// Sends one message and waits for its reply; a refusal is an error.
    pub async fn request(self: &Arc<Self>, message: Message) -> Result<Message, Error> {
        self.exchange(
            vec![(message, Expect::Reply)],
            self.config.max_network_delay,
        )
        .await
        .pop()
        .expect("one result per message")
        .and_then(check_reply)
    }

    /// Sends `messages` in one batch on the current transport and waits up to `timeout` for
    /// what each expects; one result per message, in order. A reply with `successful: false` is
    /// still `Ok` here.
    pub async fn exchange(
        self: &Arc<Self>,
        messages: Vec<(Message, Expect)>,
        timeout: Duration,
    ) -> Vec<Result<Message, Error>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (transport, client_id, terminated) = {
            let state = self.lock();
            (state.transport, state.client_id.clone(), state.terminated)
        };
        if terminated {
            return messages.iter().map(|_| Err(Error::Disconnected)).collect();
        }

        // Prepare: ids, clientId, outgoing extensions.
        enum Slot {
            Done(Result<Message, Error>),
            Waiting(String, oneshot::Receiver<Result<Message, Error>>),
        }
        let mut slots = Vec::with_capacity(messages.len());
        let mut outgoing = Vec::with_capacity(messages.len());
        let mut senders = Vec::with_capacity(messages.len());
        let mut is_connect = false;
        for (mut message, expect) in messages {
            let id = (self.next_id.fetch_add(1, Ordering::Relaxed) + 1).to_string();
            message.as_map_mut().insert("id".into(), id.clone().into());
            if message.channel() != Some("/meta/handshake") {
                if let Some(client_id) = &client_id {
                    message
                        .as_map_mut()
                        .insert("clientId".into(), client_id.clone().into());
                }
            }
            if !self.extensions.iter().all(|e| e.outgoing(&mut message)) {
                slots.push(Slot::Done(Err(Error::Dropped)));
                continue;
            }
            is_connect = message.channel() == Some("/meta/connect");
            let (sender, receiver) = oneshot::channel();
            senders.push((id.clone(), expect, sender));
            slots.push(Slot::Waiting(id, receiver));
            outgoing.push(message.encode());
        }
        let ids: Vec<String> = senders.iter().map(|(id, _, _)| id.clone()).collect();
        if !outgoing.is_empty() {
            let body = encode_batch(&outgoing);
            // A lone connect may be held by the server; anything else is answered at once.
            let is_connect = is_connect && outgoing.len() == 1;
            match transport {
                TransportKind::LongPolling => {
                    self.register(senders, 0);
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match self
                        .long_polling
                        .exchange(body, is_connect, remaining)
                        .await
                    {
                        Ok(replies) => {
                            for reply in replies {
                                self.dispatch(reply);
                            }
                        }
                        Err(e) => self.fail(&ids, Error::Transport(e)),
                    }
                }
                TransportKind::WebSocket => match self.socket().await {
                    Ok(socket) => {
                        self.register(senders, socket.generation);
                        if let Err(e) = socket.send(body).await {
                            self.fail(&ids, Error::Transport(e));
                        }
                    }
                    Err(e) => {
                        if matches!(e, TransportError::WebSocketRefused(_)) {
                            self.lock().websocket_refused = true;
                        }
                        // Nothing was registered: answer the slots directly.
                        for (_, _, sender) in senders {
                            let _ = sender.send(Err(Error::Transport(e.clone())));
                        }
                    }
                },
            }
        }

        let mut results = Vec::with_capacity(slots.len());
        for slot in slots {
            results.push(match slot {
                Slot::Done(result) => result,
                Slot::Waiting(id, receiver) => {
                    match tokio::time::timeout_at(deadline, receiver).await {
                        Ok(Ok(result)) => result,
                        Ok(Err(_)) => Err(Error::Disconnected),
                        Err(_) => {
                            self.lock().pending.remove(&id);
                            Err(Error::Timeout)
                        }
                    }
                }
            });
        }
        results
    }

    fn register(&self, senders: Vec<(String, Expect, ReplySender)>, generation: u64) {
        let mut state = self.lock();
        for (id, expect, reply) in senders {
            state.pending.insert(
                id,
                Pending {
                    expect,
                    generation,
                    reply,
                },
            );
        }
    }

    /// Fails the requests still waiting among `ids`.
    fn fail(&self, ids: &[String], error: Error) {
        let mut state = self.lock();
        for id in ids {
            if let Some(pending) = state.pending.remove(id) {
                let _ = pending.reply.send(Err(error.clone()));
            }
        }
    }

    /// The open websocket, opening one when there is none.
    async fn socket(self: &Arc<Self>) -> Result<Arc<WsConnection>, TransportError> {
        let mut slot = self.socket.lock().await;
        if let Some(socket) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(socket.clone());
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (socket, reader) = websocket::open(
            &self.endpoint.ws,
            &self.connector,
            &self.cookies,
            self.config.max_network_delay,
            generation,
        )
        .await?;
        let socket = Arc::new(socket);
        *slot = Some(socket.clone());
        // The reader holds the client weakly, so that an open socket does not keep a dropped
        // client alive.
        let client = Arc::downgrade(self);
        let closed = socket.clone();
        tokio::spawn(async move {
            websocket::read_loop(reader, |batch| {
                if let Some(inner) = client.upgrade() {
                    for message in batch {
                        inner.dispatch(message);
                    }
                }
            })
            .await;
            closed.mark_closed();
            if let Some(inner) = client.upgrade() {
                inner.socket_closed(generation);
            }
        });
        Ok(socket)
    }

    /// Fails every request sent on the websocket `generation`, which has closed.
    fn socket_closed(&self, generation: u64) {
        let mut state = self.lock();
        let lost: Vec<String> = state
            .pending
            .iter()
            .filter(|(_, p)| p.generation == generation)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            if let Some(pending) = state.pending.remove(&id) {
                let _ = pending
                    .reply
                    .send(Err(Error::Transport(TransportError::Closed)));
            }
        }
    }

    /// Closes the websocket, if one is open (a new session, a failed connect, the end).
    pub async fn close_socket(&self) {
        let socket = self.socket.lock().await.take();
        if let Some(socket) = socket {
            socket.close().await;
        }
    }

    /// Handles one received message.
    pub fn dispatch(&self, mut message: Message) {
        if !self.extensions.iter().all(|e| e.incoming(&mut message)) {
            return;
        }
        let mut state = self.lock();
        if let Some(advice) = message.advice() {
            state.advice.replace(advice);
        }
        let channel = message.channel().unwrap_or_default();
        // Deliveries carry neither `successful` nor a meta channel; everything else answers a
        // request, and is never handed to subscriptions.
        let is_reply = message.get("successful").is_some() || channel.starts_with("/meta/");
        if !is_reply {
            if let Ok(name) = ChannelName::parse(channel) {
                state.subscriptions.deliver(&name, &message);
            }
            return;
        }
        let Some(key) = message.id().and_then(id_key) else {
            return;
        };
        let Some(pending) = state.pending.get(&key) else {
            return;
        };
        let outcome = match pending.expect {
            Expect::Reply => Ok(message),
            Expect::RemoteCall => match message.data() {
                Some(_) if is_successful(&message) => Ok(message),
                Some(data) => Err(Error::CallFailed(data.clone())),
                None if !is_successful(&message) => Err(Error::from_reply(message)),
                // The publish's own reply: the service's answer is still to come.
                None => return,
            },
        };
        if let Some(pending) = state.pending.remove(&key) {
            let _ = pending.reply.send(outcome);
        }
    }

    /// Removes a local subscription; returns its channel when the server must be told.
    pub fn remove_subscription(&self, id: u64) -> Option<ChannelName> {
        let mut state = self.lock();
        if state.terminated {
            return None;
        }
        state.subscriptions.remove(id)
    }

    /// Tells the server to unsubscribe from `channel`.
    pub async fn unsubscribe_remote(self: &Arc<Self>, channel: ChannelName) -> Result<(), Error> {
        if self.lock().client_id.is_none() {
            // No session: the next one will not subscribe to it anyway.
            return Ok(());
        }
        self.request(subscribe_message("/meta/unsubscribe", &channel))
            .await
            .map(drop)
    }

    /// Waits (up to the network delay) for a session.
    pub async fn wait_for_session(&self) -> Result<(), Error> {
        self.wait_for_session_within(self.config.max_network_delay)
            .await
    }

    async fn wait_for_session_within(&self, timeout: Duration) -> Result<(), Error> {
        let mut progress = self.progress.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            progress.wait_for(|p| p.status != Status::Connecting),
        )
        .await;
        match waited {
            Ok(Ok(p)) if p.status == Status::Connected => Ok(()),
            Ok(_) => Err(Error::Disconnected),
            Err(_) => Err(Error::NotConnected),
        }
    }

    /// Sends `/meta/disconnect` (when there is a session) and ends everything.
    pub async fn disconnect(self: &Arc<Self>) -> Result<(), Error> {
        let has_session = {
            let state = self.lock();
            !state.terminated && state.client_id.is_some()
        };
        let result = if has_session {
            let message = Message::new().with("channel", "/meta/disconnect");
            self.request(message).await.map(drop)
        } else {
            Ok(())
        };
        self.terminate().await;
        result
    }

    /// Ends the client: fails what waits, ends subscription streams, closes the socket.
    pub async fn terminate(&self) {
        self.shutdown.send_replace(true);
        {
            let mut state = self.lock();
            state.terminated = true;
            state.client_id = None;
            state.subscriptions.clear();
            for (_, pending) in state.pending.drain() {
                let _ = pending.reply.send(Err(Error::Disconnected));
            }
        }
        self.progress
            .send_modify(|p| p.status = Status::Disconnected);
        self.close_socket().await;
    }

    /// The handshake message, with the transports the client can use now.
    pub fn handshake_message(&self) -> Message {
        let kinds = self.usable_transports();
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        let mut message = Message::new()
            .with("channel", "/meta/handshake")
            .with("version", "1.0")
            .with("minimumVersion", "1.0")
            .with("supportedConnectionTypes", json!(names))
            .with("advice", json!({"timeout": 60000, "interval": 0}));
        if !self.config.handshake_ext.is_empty() {
            message = message.with("ext", Value::Object(self.config.handshake_ext.clone()));
        }
        message
    }

    /// The configured transports, less websocket once the server refused it.
    pub fn usable_transports(&self) -> Vec<TransportKind> {
        let refused = self.lock().websocket_refused;
        self.config
            .transports
            .iter()
            .copied()
            .filter(|k| !(refused && *k == TransportKind::WebSocket))
            .collect()
    }
}

/// The pending-map key of a message id (ids are sent as strings; some servers echo numbers).
fn id_key(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
