//! Unguessable ids from the operating system's random generator.

use bayeux_core::{BrowserId, IdSource};
use bayeux_message::ClientId;

/// Session ids of 160 random bits and browser ids of 128, as lowercase hex.
#[derive(Debug, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn client_id(&self) -> ClientId {
        ClientId::new(random_hex::<20>())
    }

    fn browser_id(&self) -> BrowserId {
        BrowserId::new(random_hex::<16>())
    }
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    // Without an OS random source no id can be trusted; there is nothing sane to fall back to.
    getrandom::getrandom(&mut bytes).expect("the OS random generator is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_long_alphanumeric_and_distinct() {
        let ids = RandomIds;
        let a = ids.client_id();
        let b = ids.client_id();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 40);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(ids.browser_id().as_str().len(), 32);
    }
}
