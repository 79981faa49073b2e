//! Authentication and authorization.
//!
//! - The handshake must carry a token in its `ext`: `cometd.handshake({ext: {auth: {token}}})`.
//!   Tokens map to users (a real server would verify a signature or ask a database); the user
//!   and role are kept as session attributes. Without a valid token the handshake is refused
//!   with `403::handshake_denied` and advice `reconnect: none`, so the client stops.
//! - Only admins may publish to `/announcements`; anyone may subscribe to it.
//! - `/private/<user>/**` is readable and writable by that user only (an authorizer).

use bayeux_server::{
    Authorization, ChannelName, Message, Operation, RequestContext, SecurityPolicy, Session,
};
use serde_json::Value;

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
        true
    }

    fn can_publish(&self, session: &Session, channel: &ChannelName, _message: &Message) -> bool {
        channel.as_str() != "/announcements" || session.attribute("role") == Some("admin".into())
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
    let server = bayeux_examples::builder().policy(TokenPolicy).build();
    server
        .authorizer("/private/**", owner_only)
        .expect("valid pattern");
    bayeux_examples::serve(server, None).await
}
