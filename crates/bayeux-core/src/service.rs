//! Server-side handlers: services on `/service/**` channels (remote calls) and message
//! listeners that see, change or refuse publishes on a channel.

use bayeux_message::{ChannelName, Message};
use serde_json::Value;

use crate::session::Session;

/// A message a client sent to a service channel.
#[derive(Clone, Copy, Debug)]
pub struct ServiceRequest<'a> {
    /// The session that sent it.
    pub session: &'a Session,
    /// The service channel (`/service/...`).
    pub channel: &'a ChannelName,
    /// The message, `data` and `ext` included.
    pub message: &'a Message,
}

impl ServiceRequest<'_> {
    /// The message's `data` (`null` if absent).
    pub fn data(&self) -> &Value {
        self.message.data().unwrap_or(&Value::Null)
    }
}

/// The answer of a remote call, delivered to the caller with the request's `id`.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceReply {
    /// The call failed: `successful: false`, this as `data`.
    Failure(Value),
    /// The call succeeded: `successful: true`, this as `data`.
    Success(Value),
}

/// Handles messages on a service channel (or pattern such as `/service/chat/*`).
///
/// Returning a reply answers the client's `remoteCall`; return `None` to answer later with
/// `Engine::deliver` (from another task) or not at all.
pub trait Service: Send + Sync {
    /// Called for each message published to the channel.
    fn call(&self, request: ServiceRequest<'_>) -> Option<ServiceReply>;
}

impl<F> Service for F
where
    F: Fn(ServiceRequest<'_>) -> Option<ServiceReply> + Send + Sync,
{
    fn call(&self, request: ServiceRequest<'_>) -> Option<ServiceReply> {
        self(request)
    }
}

/// Sees each message published on a channel (or pattern), before it reaches subscribers or
/// services; may change it, or refuse it (the publisher gets `404::message_deleted`).
pub trait MessageListener: Send + Sync {
    /// Called with the publishing session (`None` for server-side publishes).
    fn on_message(
        &self,
        session: Option<&Session>,
        channel: &ChannelName,
        message: &mut Message,
    ) -> bool;
}

impl<F> MessageListener for F
where
    F: Fn(Option<&Session>, &ChannelName, &mut Message) -> bool + Send + Sync,
{
    fn on_message(
        &self,
        session: Option<&Session>,
        channel: &ChannelName,
        message: &mut Message,
    ) -> bool {
        self(session, channel, message)
    }
}
