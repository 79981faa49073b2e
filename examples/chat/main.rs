//! The chat demo: a page using the official CometD client, and a server that keeps the list
//! of members.
//!
//! ```sh
//! npm install --prefix examples/chat     # the cometd client, from npm
//! cargo run -p bayeux-examples --example chat
//! # then open http://127.0.0.1:8080/ in two browsers
//! ```
//!
//! The page joins with a remote call to `/service/join` (the answer is the member list),
//! talks on `/chat/room`, and watches `/chat/members`, which the server publishes whenever
//! someone joins or their session ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bayeux_server::{ClientId, Server, ServiceReply, ServiceRequest};
use serde_json::{json, Value};

/// Member names by session.
type Members = Arc<Mutex<BTreeMap<ClientId, String>>>;

fn member_list(members: &Members) -> Value {
    let names: Vec<String> = members
        .lock()
        .expect("members lock")
        .values()
        .cloned()
        .collect();
    json!(names)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let members: Members = Arc::default();
    // The listener needs the server to announce departures; the server needs the listener.
    let announcer: Arc<OnceLock<Server>> = Arc::default();
    let (gone, left) = (Arc::clone(&members), Arc::clone(&announcer));
    let server = Server::builder()
        .on_session_removed(move |client_id, _reason| {
            let was_member = gone
                .lock()
                .expect("members lock")
                .remove(client_id)
                .is_some();
            if let (true, Some(server)) = (was_member, left.get()) {
                let _ = server.publish("/chat/members", member_list(&gone));
            }
        })
        .build();
    let _ = announcer.set(server.clone());

    let (joined, publisher) = (Arc::clone(&members), server.clone());
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
            joined
                .lock()
                .expect("members lock")
                .insert(req.session.client_id().clone(), name.to_owned());
            let list = member_list(&joined);
            let _ = publisher.publish("/chat/members", list.clone());
            Some(ServiceReply::Success(list))
        })
        .expect("service channel");

    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("chat");
    if !page.join("node_modules/cometd").is_dir() {
        eprintln!("chat: run `npm install --prefix examples/chat` for the page's CometD client");
    }
    bayeux_examples::serve(server, Some(page)).await
}
