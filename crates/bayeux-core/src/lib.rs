//! The Bayeux protocol state machine: sessions, the five meta channels, routing and expiry.
//!
//! No I/O, no clock, no runtime: time is an argument, ids come from an [`IdSource`], and a
//! `/meta/connect` that must wait is returned as a [`Hold`] for the driver to await. The state
//! is nevertheless shared and concurrent (sessions in a sharded map, one small lock per
//! session), because a single `&mut` engine behind a mutex would serialise every publish.
//!
//! ```
//! use std::time::Instant;
//! use bayeux_core::{Engine, EngineConfig, RequestContext, SequentialIds, TransportKind};
//! use bayeux_message::parse_batch;
//!
//! let engine = Engine::new(EngineConfig::default(), Box::new(SequentialIds::default()));
//! let ctx = RequestContext::new(TransportKind::LongPolling);
//! let batch = parse_batch(br#"[{"channel":"/meta/handshake","id":"1","version":"1.0"}]"#).unwrap();
//! let outcome = engine.handle(Instant::now(), &ctx, batch).unwrap();
//! assert_eq!(outcome.handshaken.unwrap().as_str(), "c1");
//! ```
//!
//! # Layout
//! - [`engine`]: the engine's state and [`Engine::handle`], the path of one batch.
//! - `meta`: handshake, connect, disconnect, subscribe and unsubscribe.
//! - `publish`: a client's publish, services, publishing from the server, fan-out.
//! - [`hold`]: held connects and websocket pushers.
//! - [`lifecycle`]: local sessions, expiry sweeps, removal, shutdown and drain.
//! - [`log`]: entries and effects: where changes to shared state go, one node or a cluster.
//! - [`handover`]: session records, taking a session over from another node, releasing one.
//! - [`history`]: channel history and replay ids (`ext.replay`).
//! - [`session`]: one session's queue, subscriptions, held connect and expiry.
//! - [`subscriptions`]: the index from subscription names to sessions.
//! - [`extension`]: hooks on every message in and out; [`ack`]: acknowledged delivery.
//! - [`security`]: the security policy and channel authorizers.
//! - [`channels`]: channels created on use, their options, removal when unused.
//! - [`service`]: services on `/service/**` (remote calls) and channel message listeners.
//! - `registry`: registrations keyed by channel or pattern.
//! - [`presence`]: users, who is online, delivery to a user.
//! - [`config`], [`ids`], [`listener`]: options, id sources, session listeners.

pub mod ack;
pub mod channels;
pub mod config;
pub mod engine;
pub mod extension;
pub mod handover;
pub mod history;
pub mod hold;
pub mod ids;
pub mod lifecycle;
pub mod listener;
pub mod log;
mod meta;
pub mod presence;
mod publish;
mod registry;
pub mod security;
pub mod service;
pub mod session;
pub mod stats;
pub mod subscriptions;

pub use ack::AckExtension;
pub use channels::{ChannelListener, ChannelOptions};
pub use config::{EngineConfig, PublishRate, QueueFullPolicy, TransportKind};
pub use engine::{Engine, Outcome, RequestContext, RequestError};
pub use extension::Extension;
pub use handover::{Release, SessionInUse, SessionRecord};
pub use history::{ReplayFrom, ReplayIdShape, Retention};
pub use hold::{Hold, HoldEnd, Pusher};
pub use ids::{BrowserId, IdSource, SequentialIds};
pub use lifecycle::Sweep;
pub use listener::{RemovalReason, SessionListener};
pub use log::{Action, Applied, Effect, Entry, LogMode};
pub use presence::PresenceListener;
pub use security::{AllowAll, Authorization, Authorizer, HttpInfo, Operation, SecurityPolicy};
pub use service::{MessageListener, Service, ServiceReply, ServiceRequest};
pub use session::{LocalSink, Session};
pub use stats::{EngineStats, SessionCensus, REFUSAL_CODES, REMOVAL_REASONS};
pub use subscriptions::SubscriptionIndex;

#[cfg(test)]
mod tests;
