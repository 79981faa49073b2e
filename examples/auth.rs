//! Authentication and authorization.
//!
//! - The handshake must carry a token in its `ext`: `cometd.handshake({ext: {auth: {token}}})`.
//!   Tokens map to users (a real server would verify a signature or ask a database); the user
//!   and role are kept as session attributes. Without a valid token the handshake is refused
//!   with `403::handshake_denied` and advice `reconnect: none`, so the client stops.
//! - Only admins may publish to `/announcements`; anyone may subscribe to it. Nobody may
//!   publish to `/presence`: the server alone does.
//! - `/private/<user>/**` is readable and writable by that user only (an authorizer).
//! - Presence (on one node or across a cluster): each session is associated with its user;
//!   `/presence` says `{"user": "alice", "online": true}` when a user's first session starts
//!   and `false` when its last ends; `/service/whisper` with `{"to": "alice", "text": ...}`
//!   delivers `{"from": ..., "text": ...}` on `/whisper` to every session of that user, on
//!   whichever node serves it, and answers `{"online": true}` (`false`: nobody to tell);
//!   `/service/who` answers `{"users": [...]}`, the users online on any node.

use bayeux_server::{
    Authorization, ChannelName, Message, Operation, RequestContext, SecurityPolicy, ServiceReply,
    ServiceRequest, Session,
};
use serde_json::{json, Value};

/// The known tokens: (token, user, role).
const TOKENS: [(&str, &str, &str); 2] = [
    ("s3cr3t-alice", "alice", "admin"),
    ("s3cr3t-bob", "bob", "user"),
];

struct TokenPolicy;

impl SecurityPolicy for TokenPolicy {
    fn can_handshake(&self, session: &Session, _ctx: &RequestContext, message: &Message) -> bool {
        let token = message
            .ext()
            .and_then(|ext| ext.get("auth"))
            .and_then(|auth| auth.get("token"))
            .and_then(Value::as_str);
        let Some((_, user, role)) = TOKENS.iter().find(|(t, _, _)| Some(*t) == token) else {
            return false;
        };
        session.set_attribute("user", *user);
        session.set_attribute("role", *role);
        session.set_user(*user);
        true
    }

    fn can_publish(&self, session: &Session, channel: &ChannelName, _message: &Message) -> bool {
        match channel.as_str() {
            "/presence" => false,
            "/announcements" => session.attribute("role") == Some("admin".into()),
            _ => true,
        }
    }
}

/// `/private/<user>/...` belongs to `<user>`.
fn owner_only(
    _op: Operation,
    channel: &ChannelName,
    session: &Session,
    _msg: &Message,
) -> Authorization {
    let owner = channel.as_str().split('/').nth(2);
    let user = session.attribute("user");
    match (owner, user) {
        (Some(owner), Some(Value::String(user))) if owner == user => Authorization::Grant,
        _ => Authorization::Deny("not_owner".into()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let server = bayeux_examples::builder()
        .policy(TokenPolicy)
        .presence_channel(ChannelName::parse("/presence").expect("valid channel"))
        .build();
    server
        .authorizer("/private/**", owner_only)
        .expect("valid pattern");
    let whisper_server = server.clone();
    server
        .service("/service/whisper", move |req: ServiceRequest<'_>| {
            let data = req.message.data()?;
            let to = data.get("to").and_then(Value::as_str)?;
            let from = req.session.user().map(|u| u.to_string());
            let text = data.get("text").cloned().unwrap_or(Value::Null);
            let online = whisper_server
                .deliver_to_user(to, "/whisper", json!({"from": from, "text": text}))
                .unwrap_or(false);
            Some(ServiceReply::Success(json!({ "online": online })))
        })
        .expect("valid service channel");
    let who_server = server.clone();
    server
        .service("/service/who", move |_req: ServiceRequest<'_>| {
            Some(ServiceReply::Success(
                json!({ "users": who_server.users_online() }),
            ))
        })
        .expect("valid service channel");
    bayeux_examples::serve(server, None).await
}
