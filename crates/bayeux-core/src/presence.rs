//! Users and presence (what Java CometD's Seti does): sessions associated with a user id, who
//! is online, join and leave events, and delivery to every session of a user.
//!
//! A user is online while at least one of its sessions lives: the first session of a user to
//! be associated makes it join; the end of its last session (disconnect, expiry, removal)
//! makes it leave. In a cluster this index holds the sessions a node serves; who is online on
//! any node is decided by the backplane and read from the shared log (`Entry::Presence`).

use std::sync::Arc;

use bayeux_message::ClientId;
use dashmap::DashMap;

/// Told when users come online and go offline. Called synchronously with no lock held; keep
/// it short and never block.
pub trait PresenceListener: Send + Sync {
    /// `user`'s first session was associated with it.
    fn joined(&self, _user: &str) {}
    /// `user`'s last session ended, or was dissociated.
    fn left(&self, _user: &str) {}
}

/// The sessions of each online user.
#[derive(Default)]
pub(crate) struct Presence {
    users: DashMap<Arc<str>, Vec<ClientId>>,
}

impl Presence {
    /// Adds a session of `user`; true when the user just came online.
    pub(crate) fn add(&self, user: &Arc<str>, session: &ClientId) -> bool {
        let mut sessions = self.users.entry(Arc::clone(user)).or_default();
        if sessions.contains(session) {
            return false;
        }
        sessions.push(session.clone());
        sessions.len() == 1
    }

    /// Takes a session of `user` away; true when the user just went offline.
    pub(crate) fn remove(&self, user: &str, session: &ClientId) -> bool {
        self.users
            .remove_if_mut(user, |_, sessions| {
                sessions.retain(|s| s != session);
                sessions.is_empty()
            })
            .is_some()
    }

    /// The live sessions of `user`.
    pub(crate) fn sessions_of(&self, user: &str) -> Vec<ClientId> {
        self.users
            .get(user)
            .map(|sessions| sessions.clone())
            .unwrap_or_default()
    }

    /// Every online user, sorted.
    pub(crate) fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.users.iter().map(|e| e.key().to_string()).collect();
        users.sort();
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_online_from_its_first_session_to_the_end_of_its_last() {
        let presence = Presence::default();
        let alice: Arc<str> = Arc::from("alice");
        let (c1, c2) = (ClientId::new("c1"), ClientId::new("c2"));
        assert!(presence.add(&alice, &c1));
        assert!(!presence.add(&alice, &c2));
        assert!(
            !presence.add(&alice, &c2),
            "the same session twice counts once"
        );
        assert_eq!(presence.sessions_of("alice"), [c1.clone(), c2.clone()]);
        assert_eq!(presence.users(), ["alice"]);
        assert!(!presence.remove("alice", &c1));
        assert!(!presence.remove("bob", &c1));
        assert!(presence.remove("alice", &c2));
        assert!(presence.users().is_empty());
        assert!(!presence.remove("alice", &c2));
    }
}
