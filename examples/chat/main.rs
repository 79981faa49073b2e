//! The chat demo: a page using the official CometD client, and a server that keeps the list
//! of members, on one node or on several.
//!
//! ```sh
//! npm install --prefix examples/chat     # the cometd client, from npm
//! cargo run -p bayeux-examples --example chat
//! # then open http://127.0.0.1:8080/ in two browsers
//!
//! # Two nodes sharing a Redis: users of either see each other.
//! BACKPLANE=redis://127.0.0.1:6379 BIND=127.0.0.1:8080 cargo run -p bayeux-examples --example chat
//! BACKPLANE=redis://127.0.0.1:6379 BIND=127.0.0.1:8081 cargo run -p bayeux-examples --example chat
//! ```
//!
//! The page joins with a remote call to `/service/join` (the answer is the member list),
//! talks on `/chat/room`, and watches `/chat/members`, which the server publishes whenever
//! someone joins or their session ends.
//!
//! The member list is state every node needs, so it travels the way messages do: joins and
//! departures are published on `/chat/presence` (which clients may neither read nor write),
//! and a local session on each node keeps a copy by applying them in the order every node
//! sees them. The node where a change happened publishes the new list. A node started after
//! some members joined does not know them; a presence service shared through the backplane
//! would (not in this demo).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bayeux_server::{
    Authorization, ClientId, LocalSession, Operation, Server, ServiceReply, ServiceRequest,
};
use serde_json::{json, Value};

/// Member names by session.
type Members = Arc<Mutex<BTreeMap<String, String>>>;

fn member_list(members: &BTreeMap<String, String>) -> Value {
    json!(members.values().collect::<Vec<_>>())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let members: Members = Arc::default();
    // The removal listener publishes through the presence session, made once the server is.
    let presence: Arc<Mutex<Option<LocalSession>>> = Arc::default();
    let (known, announcer) = (Arc::clone(&members), Arc::clone(&presence));
    let left_from: Arc<Mutex<String>> = Arc::default();
    let origin_of_leave = Arc::clone(&left_from);
    let server = bayeux_examples::builder()
        .on_session_removed(move |client_id, _reason| {
            // Fires once in the whole cluster, on one node: that node announces the departure.
            if known
                .lock()
                .expect("members lock")
                .contains_key(client_id.as_str())
            {
                if let Some(presence) = announcer.lock().expect("presence lock").as_ref() {
                    let origin = origin_of_leave.lock().expect("origin lock").clone();
                    let leave = json!({ "leave": client_id, "origin": origin });
                    let _ = presence.publish("/chat/presence", leave);
                }
            }
        })
        .build();
    let origin = origin_of(&server);
    *left_from.lock().expect("origin lock") = origin.clone();

    // Only server code reads and writes the presence channel.
    server
        .authorizer(
            "/chat/presence",
            |_: Operation, _: &_, session: &bayeux_server::Session, _: &_| {
                if session.is_local() {
                    Authorization::Grant
                } else {
                    Authorization::Deny("server_only".into())
                }
            },
        )
        .expect("channel name");
    let session = server.local_session("presence");
    let (copy, publisher, here) = (Arc::clone(&members), server.clone(), origin.clone());
    session
        .subscribe("/chat/presence", move |msg| {
            let data = msg.data().cloned().unwrap_or_default();
            let mut members = copy.lock().expect("members lock");
            if let (Some(id), Some(name)) = (data["join"].as_str(), data["name"].as_str()) {
                members.insert(id.to_owned(), name.to_owned());
            } else if let Some(id) = data["leave"].as_str() {
                members.remove(id);
            }
            if data["origin"] == json!(here) {
                let _ = publisher.publish("/chat/members", member_list(&members));
            }
        })
        .expect("presence subscription");
    *presence.lock().expect("presence lock") = Some(session);

    let (joined, announcer) = (Arc::clone(&members), Arc::clone(&presence));
    server
        .service("/service/join", move |req: ServiceRequest<'_>| {
            let name = req
                .data()
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim();
            if name.is_empty() || name.len() > 40 {
                return Some(ServiceReply::Failure(
                    json!({ "reason": "a name of 1 to 40 characters" }),
                ));
            }
            let id: &ClientId = req.session.client_id();
            if let Some(presence) = announcer.lock().expect("presence lock").as_ref() {
                let join = json!({ "join": id, "name": name, "origin": origin });
                let _ = presence.publish("/chat/presence", join);
            }
            // The answer already counts the new member, whose join is on its way.
            let mut list = joined.lock().expect("members lock").clone();
            list.insert(id.to_string(), name.to_owned());
            Some(ServiceReply::Success(member_list(&list)))
        })
        .expect("service channel");

    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("chat");
    if !page.join("node_modules/cometd").is_dir() {
        eprintln!("chat: run `npm install --prefix examples/chat` for the page's CometD client");
    }
    bayeux_examples::serve(server, Some(page)).await
}

/// Tells this node's presence announcements from the others'.
fn origin_of(server: &Server) -> String {
    server
        .node_id()
        .map_or_else(|| "single".to_owned(), |node| node.to_string())
}
