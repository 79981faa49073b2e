//! Shared harness for the black-box wire conformance tests.
//!
//! It spawns the real `bayeuxd` binary ([`server`]), talks to it over a deliberately tiny raw
//! HTTP/1.1 client ([`http`]) and layers a Bayeux session helper on top ([`bayeux`]). It is not a
//! Bayeux client library: it sends exactly what a test asks for and hides nothing it receives, so
//! that tests can assert on the precise bytes and JSON the server produces.
//!
//! Layout:
//! - [`server`]: start/stop a `bayeuxd` child process on an ephemeral port.
//! - [`http`]: one request per connection, any method/headers/body framing, bounded by a deadline.
//! - [`bayeux`]: `Client` (cookie jar + clientId + id counter), pending held requests, a `Witness`
//!   session for "is the server still healthy" checks, and JSON assertion helpers.
//! - [`jsonp`]: callback-polling GETs (`?jsonp=cb&message=...`) and `cb([...])` unwrapping.
//! - [`ws`]: a raw websocket client (tokio-tungstenite) returning every frame and close code.
//! - [`redis`]: real `redis-server` processes (standalone, or a Cluster) for the cluster tests.

// Each test binary that includes this module uses only a subset of the helpers.
#![allow(dead_code, unused_imports)]

pub mod bayeux;
pub mod http;
pub mod jsonp;
pub mod redis;
pub mod server;
pub mod ws;

pub use bayeux::{assert_handshake_reply, assert_messages, check_client_id, Client, Witness};
pub use server::TestServer;
