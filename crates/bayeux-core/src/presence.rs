//! Users and presence (what Java CometD's Seti does): sessions associated with a user id, who
//! is online, join and leave events, and delivery to every session of a user.
//!
//! A user is online while at least one of its sessions lives: the first session of a user to
//! be associated makes it join; the end of its last session (disconnect, expiry, removal)
//! makes it leave. In a cluster this index holds the sessions a node serves; who is online on
//! any node is decided by the backplane and read from the shared log (`Entry::Presence`).

use std::sync::Arc;
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

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

/// In a cluster: who is online on any node, as the shared log says.
///
/// Each change carries the version the backplane gave it (increasing across the cluster).
/// Two nodes that change one user at the same moment may append their changes in the other
/// order; a change older than what is known of its user is ignored, so every node ends in the
/// registry's state, having told its listeners the same things. A user that went offline is
/// remembered a while ([`ClusterPresence::forget_offline_before`]) to refuse a late join.
#[derive(Default)]
pub(crate) struct ClusterPresence {
    users: DashMap<String, Known>,
}

struct Known {
    online: bool,
    version: u64,
    since: Instant,
}

impl ClusterPresence {
    /// Starts over from the backplane's list of online users and their versions.
    pub(crate) fn reset(&self, now: Instant, online: Vec<(String, u64)>) {
        self.users.clear();
        for (user, version) in online {
            let known = Known {
                online: true,
                version,
                since: now,
            };
            self.users.insert(user, known);
        }
    }

    /// Applies a change read from the log; true when the user's state changed (tell the
    /// listeners), false for a change already known or older than what is known.
    pub(crate) fn change(&self, now: Instant, user: &str, online: bool, version: u64) -> bool {
        let mut known = self.users.entry(user.to_owned()).or_insert(Known {
            online: false,
            version: 0,
            since: now,
        });
        if known.version >= version {
            return false;
        }
        let flipped = known.online != online;
        *known = Known {
            online,
            version,
            since: now,
        };
        flipped
    }

    /// Whether `user` is online.
    pub(crate) fn is_online(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|known| known.online)
    }

    /// Every online user, sorted.
    pub(crate) fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .users
            .iter()
            .filter(|e| e.value().online)
            .map(|e| e.key().clone())
            .collect();
        users.sort();
        users
    }

    /// Forgets the users that went offline before `before` (a change of them delayed that
    /// long is taken as new).
    pub(crate) fn forget_offline_before(&self, before: Instant) {
        self.users
            .retain(|_, known| known.online || known.since >= before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_ignores_a_change_older_than_what_it_knows() {
        let presence = ClusterPresence::default();
        let t0 = Instant::now();
        presence.reset(t0, vec![("ann".into(), 3)]);
        assert!(!presence.change(t0, "ann", true, 2), "older than the start");
        assert!(presence.change(t0, "ann", false, 5));
        // The join that came before the leave, appended after it: ignored.
        assert!(!presence.change(t0, "ann", true, 4));
        assert!(!presence.is_online("ann"));
        assert!(!presence.change(t0, "ann", false, 5), "read twice");
        assert!(presence.change(t0, "bob", true, 6));
        assert!(presence.change(t0, "ann", true, 7));
        assert_eq!(presence.users(), ["ann", "bob"]);
        // A leave for a user never seen online changes nothing, but is remembered.
        assert!(!presence.change(t0, "cy", false, 9));
        assert!(!presence.change(t0, "cy", true, 8));
        assert!(presence.change(t0, "bob", false, 10));
        let later = t0 + Duration::from_secs(60);
        presence.forget_offline_before(later);
        assert!(
            presence.change(later, "cy", true, 8),
            "forgotten: taken as new"
        );
        assert_eq!(presence.users(), ["ann", "cy"]);
    }

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
