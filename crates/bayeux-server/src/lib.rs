//! The async driver of the Bayeux engine, and the API an application uses from Rust.
//!
//! [`Server`] wraps a [`bayeux_core::Engine`]: it supplies the clock and random ids, awaits
//! held connects until their deadline or release, sweeps expired sessions in the background,
//! and lets application code publish and watch sessions. Transports call
//! [`Server::handle`] and [`Server::wait_hold`].
//!
//! ```no_run
//! # async fn demo() {
//! use bayeux_server::Server;
//!
//! let server = Server::builder()
//!     .on_session_added(|cid| println!("hello {cid}"))
//!     .build();
//! server.publish("/news", serde_json::json!({"headline": "up"})).unwrap();
//! # }
//! ```
//!
//! # Layout
//! - `server`: [`Server`] and [`ServerBuilder`].
//! - `ids`: [`RandomIds`], session and browser ids from the OS random generator.
//! - `local`: [`LocalSession`], server code acting as a client.
//! - `metrics`: Prometheus metrics, rendered by [`Server::render_metrics`].
//! - [`backplane`]: what the nodes of a cluster share ([`Backplane`]), and
//!   [`MemoryBackplane`], a cluster inside one process.
//! - [`cluster`]: the driver of one node of a cluster: reading the log, taking sessions
//!   over, heartbeats, checkpoints, clean-up.
//! - `extensions`: [`TimesyncExtension`] and [`TimestampExtension`], which read the wall clock.

pub mod backplane;
pub mod cluster;
mod extensions;
mod ids;
mod local;
mod metrics;
mod server;

pub use backplane::{Backplane, MemoryBackplane, NodeId};
pub use bayeux_core::{
    AckExtension, AllowAll, Authorization, Authorizer, BrowserId, ChannelListener, ChannelOptions,
    EngineConfig, Entry, Extension, Hold, HoldEnd, HttpInfo, LogMode, MessageListener, Operation,
    Outcome, PresenceListener, PublishRate, Pusher, QueueFullPolicy, RemovalReason, ReplayIdShape,
    RequestContext, RequestError, Retention, SecurityPolicy, Service, ServiceReply, ServiceRequest,
    Session, SessionListener, SessionRecord, TransportKind,
};
pub use bayeux_message::{
    BinaryData, ChannelName, ClientId, EncodedMessage, Message, Refusal, Reply,
};
pub use cluster::{ClusterOptions, ClusterStats};
pub use extensions::{TimestampExtension, TimesyncExtension};
pub use ids::RandomIds;
pub use local::{LocalError, LocalSession};
pub use server::{BackplaneStatus, PresenceError, PublishError, Server, ServerBuilder};
