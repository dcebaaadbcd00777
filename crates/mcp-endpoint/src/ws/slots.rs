//! Open connections per user, capped: one credential (or many keys of one
//! user) cannot hold the server's connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mcp_core::Principal;

#[derive(Clone, Debug)]
pub(super) struct Slots {
    max: usize,
    /// This server's own token issuer: its subjects are local users.
    own_issuer: Option<Arc<str>>,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One taken slot; dropping it frees it.
pub(super) struct Slot {
    slots: Slots,
    who: String,
}

impl Slots {
    pub(super) fn new(max: usize) -> Self {
        Slots {
            max,
            own_issuer: None,
            open: Arc::default(),
        }
    }

    pub(super) fn max(self, max: usize) -> Self {
        Slots { max, ..self }
    }

    pub(super) fn own_issuer(self, issuer: String) -> Self {
        Slots {
            own_issuer: Some(issuer.into()),
            ..self
        }
    }

    /// Who counts as one user: a local user whichever of their keys and
    /// tokens they use; an external subject per issuer (it is not a local
    /// user, whatever its `sub`).
    fn who(&self, principal: &Principal) -> String {
        match principal.issuer() {
            Some(issuer) if Some(issuer) != self.own_issuer.as_deref() => {
                format!("{issuer}\n{}", principal.subject())
            }
            _ => principal.subject().to_owned(),
        }
    }

    pub(super) fn take(&self, principal: &Principal) -> Option<Slot> {
        let who = self.who(principal);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(who.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            who,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.who) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mcp_core::AuthMethod;

    use super::*;

    #[test]
    fn a_user_is_one_whatever_the_credential_and_slots_free_on_drop() {
        let slots = Slots::new(1).own_issuer("https://me".into());
        let key = Principal::builder("u1", AuthMethod::ApiKey)
            .key_id("k1")
            .build();
        let token = Principal::builder("u1", AuthMethod::Jwt)
            .issuer("https://me")
            .build();
        let external = Principal::builder("u1", AuthMethod::Jwt)
            .issuer("https://idp")
            .build();
        let held = slots.take(&key).unwrap();
        assert!(slots.take(&token).is_none());
        assert!(slots.take(&external).is_some());
        drop(held);
        assert!(slots.take(&token).is_some());
    }
}
