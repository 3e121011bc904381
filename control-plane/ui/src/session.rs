//! Browser sessions and one-time sign-in links, in this process's memory.
//!
//! The browser holds only a random session id (an HttpOnly cookie); the credential it signed in
//! with (an API key or an OIDC token) stays here and is sent to the API as a bearer token. Ids
//! and link tokens are looked up by their SHA-256, so the map never holds a usable secret as a
//! key and a lookup's timing says nothing about a stored id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A session unused for this long is gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// A one-time sign-in link works once, within this long.
pub const LINK_TTL: Duration = Duration::from_secs(10 * 60);
/// Sessions held at once; beyond it the oldest is dropped (a flood of sign-ins cannot grow
/// memory without bound).
pub const MAX_SESSIONS: usize = 10_000;
/// Unused sign-in links held at once.
const MAX_LINKS: usize = 1_000;

/// A bearer credential (API key or OIDC token). Never printed.
#[derive(Clone)]
pub struct Credential(String);

impl Credential {
    /// Wrap a credential.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// What a page needs of a session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Sent to the API on every call.
    pub credential: Credential,
    /// The synchronizer token every state-changing form carries.
    pub csrf: String,
    /// `GET /v1/me` and when it was fetched.
    pub me: Value,
    pub me_at: Instant,
    /// `GET /v1/posture/counts` and when it was fetched (the navigation's input).
    pub posture: Option<(Instant, Value)>,
    /// One message shown on the next page (after a redirect), e.g. a key shown once.
    pub flash: Option<Flash>,
    created: Instant,
    last_used: Instant,
}

/// A message carried across one redirect.
#[derive(Debug, Clone)]
pub(crate) struct Flash {
    /// `ok` or `error`.
    pub kind: &'static str,
    pub text: String,
    /// A secret shown once (a new API key), in a copyable field.
    pub secret: Option<String>,
}

struct Link {
    credential: Credential,
    created: Instant,
}

/// The sessions and unused sign-in links.
#[derive(Default)]
pub(crate) struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    links: Mutex<HashMap<String, Link>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

/// 32 random bytes as hex.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // aws-lc's DRBG; a failure here means the platform has no entropy, and then no token is
    // better than a guessable one.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        panic!("no system randomness available for session tokens");
    }
    hex::encode(bytes)
}

fn digest(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// Equal in time that depends only on the length.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

impl Sessions {
    /// Start a session; returns the id for the cookie.
    pub(crate) fn create(&self, credential: Credential, me: Value) -> String {
        let id = random_token();
        let now = Instant::now();
        let session = Session {
            credential,
            csrf: random_token(),
            me,
            me_at: now,
            posture: None,
            flash: None,
            created: now,
            last_used: now,
        };
        if let Ok(mut map) = self.sessions.lock() {
            map.retain(|_, s| alive(s, now));
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
            map.insert(digest(&id), session);
        }
        id
    }

    /// The live session of a cookie id (refreshing its idle timer).
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.sessions.lock().ok()?;
        let key = digest(id);
        let session = map.get_mut(&key)?;
        if !alive(session, now) {
            map.remove(&key);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    /// Change a live session in place (cached API answers, a flash message).
    pub(crate) fn update(&self, id: &str, change: impl FnOnce(&mut Session)) {
        if let Ok(mut map) = self.sessions.lock()
            && let Some(s) = map.get_mut(&digest(id))
        {
            change(s);
        }
    }

    /// Take the flash message of a session.
    pub(crate) fn take_flash(&self, id: &str) -> Option<Flash> {
        let mut map = self.sessions.lock().ok()?;
        map.get_mut(&digest(id))?.flash.take()
    }

    /// End a session.
    pub(crate) fn remove(&self, id: &str) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(&digest(id));
        }
    }

    /// A one-time sign-in link token for `credential`, valid for [`LINK_TTL`].
    pub(crate) fn create_link(&self, credential: Credential) -> String {
        let token = random_token();
        let now = Instant::now();
        if let Ok(mut links) = self.links.lock() {
            links.retain(|_, l| now.duration_since(l.created) < LINK_TTL);
            if links.len() < MAX_LINKS {
                links.insert(
                    digest(&token),
                    Link {
                        credential,
                        created: now,
                    },
                );
            }
        }
        token
    }

    /// Consume a sign-in link: its credential, once, if it has not expired.
    pub(crate) fn redeem_link(&self, token: &str) -> Option<Credential> {
        let link = self.links.lock().ok()?.remove(&digest(token))?;
        (link.created.elapsed() < LINK_TTL).then_some(link.credential)
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_used) < IDLE_TIMEOUT
        && now.duration_since(s.created) < ABSOLUTE_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_works_once() {
        let s = Sessions::default();
        let token = s.create_link(Credential::new("abk_secret"));
        assert!(s.redeem_link("not-the-token").is_none());
        assert_eq!(
            s.redeem_link(&token)
                .map(|c| c.expose().to_string())
                .as_deref(),
            Some("abk_secret")
        );
        assert!(s.redeem_link(&token).is_none(), "a link is single-use");
    }

    #[test]
    fn sessions_are_found_by_id_only_and_end() {
        let s = Sessions::default();
        let id = s.create(Credential::new("k"), Value::Null);
        assert!(s.get(&id).is_some());
        assert!(s.get(&random_token()).is_none());
        s.remove(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn credentials_do_not_print() {
        assert_eq!(
            format!("{:?}", Credential::new("abk_secret")),
            "Credential(<redacted>)"
        );
    }

    #[test]
    fn tokens_compare_in_full() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
