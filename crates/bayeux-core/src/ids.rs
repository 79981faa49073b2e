//! Where session and browser ids come from.
//!
//! The core rolls no dice: the driver hands it an [`IdSource`] backed by the OS random generator,
//! and tests use [`SequentialIds`] for readable, repeatable ids.

use std::borrow::Borrow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bayeux_message::ClientId;

/// The value of the browser cookie (`BAYEUX_BROWSER`): which browser a request comes from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BrowserId(Arc<str>);

impl BrowserId {
    /// Wraps a cookie value.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The cookie value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for BrowserId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BrowserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrowserId({})", &*self.0)
    }
}

/// Makes new, unique ids.
pub trait IdSource: Send + Sync {
    /// A new session id: unguessable in production, alphanumeric always.
    fn client_id(&self) -> ClientId;
    /// A new browser cookie value.
    fn browser_id(&self) -> BrowserId;
}

/// Ids `c1`, `c2`, ... and `b1`, `b2`, ...: for tests only, they are guessable.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdSource for SequentialIds {
    fn client_id(&self) -> ClientId {
        ClientId::new(format!("c{}", self.0.fetch_add(1, Ordering::Relaxed) + 1))
    }

    fn browser_id(&self) -> BrowserId {
        BrowserId::new(format!("b{}", self.0.fetch_add(1, Ordering::Relaxed) + 1))
    }
}
