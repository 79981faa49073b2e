//! Local sessions: server code that subscribes and publishes like a remote client.

use std::sync::{Arc, Mutex, PoisonError};

use bayeux_core::{RequestContext, Session, TransportKind};
use bayeux_message::{ChannelName, ClientId, Message};
use serde_json::{json, Value};

use crate::server::Server;

type Handler = Box<dyn Fn(&Message) + Send + Sync>;

/// A server-side client. Its subscriptions and publishes go through the same pipeline as a
/// remote client's (validation, authorizers, message listeners, extensions); its deliveries
/// call the handlers given to [`LocalSession::subscribe`] synchronously, on the publisher's
/// path: keep handlers short, and spawn anything slow.
pub struct LocalSession {
    server: Server,
    session: Arc<Session>,
    handlers: Arc<Mutex<Vec<(ChannelName, Handler)>>>,
}

/// A local session's request was refused; the CometD error string says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalError(pub String);

impl std::fmt::Display for LocalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LocalError {}

impl LocalSession {
    pub(crate) fn new(server: Server, id_hint: &str) -> Self {
        let handlers: Arc<Mutex<Vec<(ChannelName, Handler)>>> = Arc::default();
        let dispatch = Arc::clone(&handlers);
        let sink = Arc::new(move |encoded: &bayeux_message::EncodedMessage| {
            let message = encoded.decode();
            let Some(channel) = message.channel().and_then(|c| ChannelName::parse(c).ok()) else {
                return;
            };
            let handlers = dispatch.lock().unwrap_or_else(PoisonError::into_inner);
            for (pattern, handler) in handlers.iter() {
                if pattern.matches(&channel) {
                    handler(&message);
                }
            }
        });
        let session = server
            .engine()
            .create_local_session(crate::server::now(), id_hint, sink);
        Self {
            server,
            session,
            handlers,
        }
    }

    /// The session's id, `<id_hint>_<random>`.
    pub fn client_id(&self) -> &ClientId {
        self.session.client_id()
    }

    /// The engine's session (attributes, subscriptions).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Subscribes to a channel or pattern; `handler` is called with each message delivered
    /// on a matching channel.
    pub fn subscribe(
        &self,
        channel: &str,
        handler: impl Fn(&Message) + Send + Sync + 'static,
    ) -> Result<(), LocalError> {
        let pattern =
            ChannelName::parse(channel).map_err(|_| LocalError("405::channel_invalid".into()))?;
        self.request(json!({"channel": "/meta/subscribe", "subscription": channel}))?;
        self.handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((pattern, Box::new(handler)));
        Ok(())
    }

    /// Unsubscribes from a channel or pattern, and drops its handlers.
    pub fn unsubscribe(&self, channel: &str) -> Result<(), LocalError> {
        self.request(json!({"channel": "/meta/unsubscribe", "subscription": channel}))?;
        self.handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(pattern, _)| pattern.as_str() != channel);
        Ok(())
    }

    /// Publishes `data` on a channel, as this session. In a cluster the message reaches the
    /// other nodes through the shared log, appended in order in the background.
    pub fn publish(&self, channel: &str, data: Value) -> Result<(), LocalError> {
        self.request(json!({"channel": channel, "data": data}))
    }

    /// Removes the session.
    pub fn disconnect(&self) {
        self.server
            .engine()
            .disconnect_session(self.client_id().as_str());
    }

    fn request(&self, mut message: Value) -> Result<(), LocalError> {
        message["clientId"] = json!(self.client_id());
        message["id"] = json!("1");
        let Value::Object(map) = message else {
            unreachable!("built as an object just above");
        };
        let ctx = RequestContext::new(TransportKind::Local);
        let outcome = self
            .server
            .handle_local(&ctx, vec![Message::from_map(map)])
            .map_err(|e| LocalError(format!("{e:?}")))?;
        let reply = outcome
            .messages
            .last()
            .map(|m| m.decode())
            .ok_or_else(|| LocalError("no reply".into()))?;
        if reply.get("successful") == Some(&Value::Bool(true)) {
            Ok(())
        } else {
            let error = reply
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("refused");
            Err(LocalError(error.to_owned()))
        }
    }
}

impl std::fmt::Debug for LocalSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSession")
            .field("client_id", self.client_id())
            .finish_non_exhaustive()
    }
}
