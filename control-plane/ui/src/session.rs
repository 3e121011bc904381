//! Browser sessions as sealed cookies, and one-time sign-in links.
//!
//! A session lives in its cookie, sealed with AES-256-GCM under the dashboard's session key
//! (authenticated encryption: a changed byte is refused, and the credential inside is never
//! readable by the browser or anyone who copies the cookie without the key). Every replica of
//! the companion that holds the same key (a shared secret file) accepts it, and it survives a
//! restart; nothing about a session is kept in memory except caches of API answers.
//!
//! Expiry holds without server state: the cookie carries its sign-in time and last use (wall
//! clock), checked on every request; the last use is refreshed by re-sealing at most every
//! [`REFRESH_AFTER`]. Ending a session (sign-out, or the API answering 401 because the key was
//! revoked or expired) clears the cookie and records the session's id as ended in this
//! process until it would have expired anyway. A revoked key ends every session of it on every
//! replica at its next API call (the API refuses it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A session unused for this long is gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The cookie is re-sealed with a new last-use time when the one it carries is this old.
pub const REFRESH_AFTER: Duration = Duration::from_secs(5 * 60);
/// A one-time sign-in link works once, within this long.
pub const LINK_TTL: Duration = Duration::from_secs(10 * 60);
/// A flash message cookie lives this long (one redirect).
pub const FLASH_TTL: Duration = Duration::from_secs(120);
/// Largest sealed cookie; browsers keep about 4 KiB per cookie. An OIDC ID token too large for
/// it is refused at sign-in with a clear message rather than silently dropped by the browser.
pub const MAX_COOKIE: usize = 3800;
/// Session ids remembered as ended (sign-out), and sessions whose API answers are cached.
pub const MAX_TRACKED: usize = 100_000;
/// Unused sign-in links held at once.
const MAX_LINKS: usize = 1_000;
/// Shortest session-key file accepted (bytes of secret text).
pub const MIN_KEY_FILE_BYTES: usize = 32;
/// The session key's file name in the data directory of `agent-bom serve` and `up`.
pub const KEY_FILE: &str = "ui-session.key";
/// Version prefix of sealed values.
const SEAL_PREFIX: &str = "v1.";

/// A bearer credential (API key or OIDC token). Never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
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

/// Errors loading the session key.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    /// The file could not be read.
    #[error("cannot read the session key file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file is too short to be a secret.
    #[error(
        "the session key file {path} holds {len} bytes; it needs at least {MIN_KEY_FILE_BYTES} random bytes (e.g. `openssl rand -base64 48 > {path}`)"
    )]
    TooShort {
        /// The file.
        path: String,
        /// Its secret's length.
        len: usize,
    },
}

/// The keys that seal sessions: the first seals, every one opens (rotation: put the new secret
/// first, keep the old one below it until the sessions it sealed have expired).
pub struct SessionKey {
    keys: Vec<RandomizedNonceKey>,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({} keys)", self.keys.len())
    }
}

/// The AEAD key of one secret: SHA-256 of a label and the secret (any printable secret of
/// enough entropy works; the label keeps this key apart from any other use of the secret).
fn derive(secret: &[u8]) -> RandomizedNonceKey {
    let mut material = b"agent-bom dashboard session key v1\0".to_vec();
    material.extend_from_slice(secret);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
    match RandomizedNonceKey::new(&AES_256_GCM, digest.as_ref()) {
        Ok(k) => k,
        // A 32-byte key is always accepted by AES-256-GCM.
        Err(_) => unreachable!("AES-256-GCM takes a 32-byte key"),
    }
}

impl SessionKey {
    /// A random key of this process alone: sessions end when it restarts and other replicas
    /// do not accept them.
    pub fn ephemeral() -> Self {
        Self {
            keys: vec![derive(random_token().as_bytes())],
        }
    }

    /// Keys from secret text: one secret per non-empty line, the first seals.
    pub fn from_secret_text(text: &str, path: &str) -> Result<Self, SessionKeyError> {
        let secrets: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let shortest = secrets.iter().map(|s| s.len()).min().unwrap_or(0);
        if shortest < MIN_KEY_FILE_BYTES {
            return Err(SessionKeyError::TooShort {
                path: path.to_string(),
                len: shortest,
            });
        }
        Ok(Self {
            keys: secrets.iter().map(|s| derive(s.as_bytes())).collect(),
        })
    }

    /// Keys from a secret file (see [`Self::from_secret_text`]).
    pub fn from_file(path: &std::path::Path) -> Result<Self, SessionKeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| SessionKeyError::Read {
            path: shown.clone(),
            error,
        })?;
        Self::from_secret_text(&text, &shown)
    }

    /// The key of `path`, first writing a fresh random secret there (mode 0600) when the file
    /// does not exist: what `agent-bom serve` and `up` keep in their data directory, so a
    /// restart keeps everyone signed in.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self, SessionKeyError> {
        if !path.exists() {
            let mut secret = [0u8; 48];
            if aws_lc_rs::rand::fill(&mut secret).is_err() {
                panic!("no system randomness available for the session key");
            }
            let text = format!("{}\n", URL_SAFE_NO_PAD.encode(secret));
            agent_bom_protocol::secure_file::write_private(path, text.as_bytes()).map_err(
                |error| SessionKeyError::Read {
                    path: path.display().to_string(),
                    error,
                },
            )?;
        }
        Self::from_file(path)
    }

    /// Seal `plain` for the purpose `aad` (the cookie's name): `v1.` + base64url(nonce,
    /// ciphertext, tag).
    fn seal(&self, aad: &str, plain: &[u8]) -> Option<String> {
        let mut in_out = plain.to_vec();
        let nonce = self.keys[0]
            .seal_in_place_append_tag(Aad::from(aad.as_bytes()), &mut in_out)
            .ok()?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&in_out);
        Some(format!("{SEAL_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Open a sealed value; `None` if it was changed, sealed for another purpose or under a
    /// key this process does not hold.
    fn open(&self, aad: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(SEAL_PREFIX)?)
            .ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut in_out = body.to_vec();
            key.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut in_out)
                .ok()
                .map(|plain| plain.to_vec())
        })
    }
}

/// What a sealed session cookie holds.
#[derive(Serialize, Deserialize)]
struct Sealed {
    /// Random id: the key of caches and of the ended-sessions list; never a credential.
    sid: String,
    cred: Credential,
    csrf: String,
    /// Sign-in and last use, Unix seconds.
    iat: u64,
    seen: u64,
}

/// What a page needs of a session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The session's random id (not the cookie).
    pub sid: String,
    /// Sent to the API on every call.
    pub credential: Credential,
    /// The synchronizer token every state-changing form carries.
    pub csrf: String,
    /// `GET /v1/me` and when it was fetched (`None`: not yet by this process).
    pub me: Value,
    pub me_at: Option<Instant>,
    /// `GET /v1/posture/counts` and when it was fetched (the navigation's input).
    pub posture: Option<(Instant, Value)>,
    issued: u64,
    seen: u64,
}

impl Session {
    /// Whether the cookie should be re-sealed with a fresh last-use time.
    pub(crate) fn needs_refresh(&self) -> bool {
        unix_now().saturating_sub(self.seen) >= REFRESH_AFTER.as_secs()
    }
}

/// A message carried across one redirect (in its own sealed cookie).
#[derive(Debug, Clone)]
pub(crate) struct Flash {
    /// `ok` or `error`.
    pub kind: &'static str,
    pub text: String,
    /// A secret shown once (a new API key), in a copyable field.
    pub secret: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SealedFlash {
    /// The session it belongs to: another session cannot show it.
    sid: String,
    at: u64,
    ok: bool,
    text: String,
    secret: Option<String>,
}

struct Cached {
    me: Value,
    me_at: Instant,
    used: Instant,
}

struct Link {
    credential: Credential,
    created: Instant,
}

/// The session key, caches of API answers per session, sessions ended here, unused links.
pub(crate) struct Sessions {
    key: SessionKey,
    cached: Mutex<HashMap<String, Cached>>,
    /// Ended session ids and when they would have expired (Unix seconds).
    ended: Mutex<HashMap<String, u64>>,
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Purposes of sealed values (the AEAD's associated data): a session cookie cannot be replayed
/// as a flash cookie or the other way round.
const SESSION_PURPOSE: &str = "session";
const FLASH_PURPOSE: &str = "flash";

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The credential makes a cookie larger than browsers keep.
    #[error(
        "the sign-in token is too large for a browser cookie ({0} bytes sealed; at most {MAX_COOKIE}); ask the identity provider for a smaller ID token (fewer claims)"
    )]
    TooLarge(usize),
    /// Sealing failed (no randomness).
    #[error("the session could not be sealed")]
    Seal,
}

impl Sessions {
    /// Sessions sealed with `key`.
    pub(crate) fn new(key: SessionKey) -> Self {
        Self {
            key,
            cached: Mutex::new(HashMap::new()),
            ended: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    fn seal_session(&self, sealed: &Sealed) -> Result<String, StartError> {
        let plain = serde_json::to_vec(sealed).map_err(|_| StartError::Seal)?;
        let cookie = self
            .key
            .seal(SESSION_PURPOSE, &plain)
            .ok_or(StartError::Seal)?;
        if cookie.len() > MAX_COOKIE {
            return Err(StartError::TooLarge(cookie.len()));
        }
        Ok(cookie)
    }

    /// Start a session; returns the cookie value.
    pub(crate) fn create(&self, credential: Credential, me: Value) -> Result<String, StartError> {
        let now = unix_now();
        let sealed = Sealed {
            sid: random_token(),
            cred: credential,
            csrf: random_token(),
            iat: now,
            seen: now,
        };
        let cookie = self.seal_session(&sealed)?;
        self.cache_me(&sealed.sid, me);
        Ok(cookie)
    }

    /// The live session of a cookie: opened, unexpired and not ended here.
    pub(crate) fn get(&self, cookie: &str) -> Option<Session> {
        if cookie.len() > MAX_COOKIE {
            return None;
        }
        let plain = self.key.open(SESSION_PURPOSE, cookie)?;
        let sealed: Sealed = serde_json::from_slice(&plain).ok()?;
        let now = unix_now();
        if now.saturating_sub(sealed.seen) >= IDLE_TIMEOUT.as_secs()
            || now.saturating_sub(sealed.iat) >= ABSOLUTE_TIMEOUT.as_secs()
        {
            return None;
        }
        if self
            .ended
            .lock()
            .is_ok_and(|ended| ended.contains_key(&sealed.sid))
        {
            return None;
        }
        let (me, me_at) = match self.cached.lock() {
            Ok(mut cached) => match cached.get_mut(&sealed.sid) {
                Some(c) => {
                    c.used = Instant::now();
                    (c.me.clone(), Some(c.me_at))
                }
                None => (Value::Null, None),
            },
            Err(_) => (Value::Null, None),
        };
        Some(Session {
            sid: sealed.sid,
            credential: sealed.cred,
            csrf: sealed.csrf,
            me,
            me_at,
            posture: None,
            issued: sealed.iat,
            seen: sealed.seen,
        })
    }

    /// The session's cookie re-sealed with its last use now.
    pub(crate) fn refreshed(&self, session: &Session) -> Option<String> {
        self.seal_session(&Sealed {
            sid: session.sid.clone(),
            cred: session.credential.clone(),
            csrf: session.csrf.clone(),
            iat: session.issued,
            seen: unix_now(),
        })
        .ok()
    }

    /// Remember `/v1/me` for a session (this process only; another replica asks again).
    pub(crate) fn cache_me(&self, sid: &str, me: Value) {
        if let Ok(mut cached) = self.cached.lock() {
            if cached.len() >= MAX_TRACKED && !cached.contains_key(sid) {
                // The least recently used goes: a cache miss only costs one API call.
                if let Some(oldest) = cached
                    .iter()
                    .min_by_key(|(_, c)| c.used)
                    .map(|(k, _)| k.clone())
                {
                    cached.remove(&oldest);
                }
            }
            let now = Instant::now();
            cached.insert(
                sid.to_string(),
                Cached {
                    me,
                    me_at: now,
                    used: now,
                },
            );
        }
    }

    /// End a session: its cookie is refused here from now on (the caller clears it in the
    /// browser).
    pub(crate) fn end(&self, session: &Session) {
        if let Ok(mut cached) = self.cached.lock() {
            cached.remove(&session.sid);
        }
        let expires = session.issued + ABSOLUTE_TIMEOUT.as_secs();
        if let Ok(mut ended) = self.ended.lock() {
            let now = unix_now();
            ended.retain(|_, e| *e > now);
            if ended.len() >= MAX_TRACKED
                && let Some(soonest) = ended
                    .iter()
                    .min_by_key(|(_, e)| **e)
                    .map(|(k, _)| k.clone())
            {
                ended.remove(&soonest);
            }
            ended.insert(session.sid.clone(), expires);
        }
    }

    /// A flash message for the next page of `session`, as a cookie value.
    pub(crate) fn seal_flash(&self, session: &Session, flash: Flash) -> Option<String> {
        let plain = serde_json::to_vec(&SealedFlash {
            sid: session.sid.clone(),
            at: unix_now(),
            ok: flash.kind == "ok",
            text: flash.text,
            secret: flash.secret,
        })
        .ok()?;
        self.key
            .seal(FLASH_PURPOSE, &plain)
            .filter(|c| c.len() <= MAX_COOKIE)
    }

    /// The flash message of a cookie, if it belongs to `session` and is recent.
    pub(crate) fn open_flash(&self, session: &Session, cookie: &str) -> Option<Flash> {
        let plain = self.key.open(FLASH_PURPOSE, cookie)?;
        let sealed: SealedFlash = serde_json::from_slice(&plain).ok()?;
        (sealed.sid == session.sid && unix_now().saturating_sub(sealed.at) < FLASH_TTL.as_secs())
            .then_some(Flash {
                kind: if sealed.ok { "ok" } else { "error" },
                text: sealed.text,
                secret: sealed.secret,
            })
    }

    /// A one-time sign-in link token for `credential`, valid for [`LINK_TTL`] (in this
    /// process: `agent-bom up` prints it for the dashboard it runs).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(SessionKey::ephemeral())
    }

    #[test]
    fn a_link_works_once() {
        let s = sessions();
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
    fn a_sealed_session_opens_with_the_same_key_only_and_ends() {
        let secret = "0123456789abcdef0123456789abcdef-shared";
        let a = Sessions::new(SessionKey::from_secret_text(secret, "k").unwrap());
        let cookie = a
            .create(Credential::new("abk_secret"), Value::Null)
            .unwrap();
        assert!(
            !cookie.contains("abk_secret"),
            "the credential is encrypted"
        );
        let session = a.get(&cookie).expect("opens");
        assert_eq!(session.credential.expose(), "abk_secret");

        // Another replica (or this one after a restart) with the same key accepts it.
        let b = Sessions::new(SessionKey::from_secret_text(secret, "k").unwrap());
        assert!(b.get(&cookie).is_some());
        // Another key does not.
        assert!(sessions().get(&cookie).is_none());

        // A changed byte anywhere is refused.
        let mut tampered = cookie.clone().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert!(a.get(&String::from_utf8(tampered).unwrap()).is_none());

        // A flash cookie cannot stand in for a session cookie.
        let flash = a
            .seal_flash(
                &session,
                Flash {
                    kind: "ok",
                    text: "done".into(),
                    secret: None,
                },
            )
            .unwrap();
        assert!(a.get(&flash).is_none());
        assert_eq!(a.open_flash(&session, &flash).unwrap().text, "done");

        a.end(&session);
        assert!(a.get(&cookie).is_none(), "ended here");
    }

    #[test]
    fn expired_sessions_are_refused() {
        let s = sessions();
        let now = unix_now();
        let idle = s
            .seal_session(&Sealed {
                sid: random_token(),
                cred: Credential::new("k"),
                csrf: random_token(),
                iat: now - 3600,
                seen: now - IDLE_TIMEOUT.as_secs(),
            })
            .unwrap();
        assert!(s.get(&idle).is_none(), "idle too long");
        let old = s
            .seal_session(&Sealed {
                sid: random_token(),
                cred: Credential::new("k"),
                csrf: random_token(),
                iat: now - ABSOLUTE_TIMEOUT.as_secs(),
                seen: now,
            })
            .unwrap();
        assert!(s.get(&old).is_none(), "past the absolute timeout");
    }

    #[test]
    fn key_files_rotate_and_refuse_short_secrets() {
        let old = "old-secret-old-secret-old-secret-0001";
        let new = "new-secret-new-secret-new-secret-0002";
        let before = Sessions::new(SessionKey::from_secret_text(old, "k").unwrap());
        let cookie = before.create(Credential::new("k"), Value::Null).unwrap();
        let rotated =
            Sessions::new(SessionKey::from_secret_text(&format!("{new}\n{old}\n"), "k").unwrap());
        assert!(rotated.get(&cookie).is_some(), "old sessions still open");
        let fresh = rotated.create(Credential::new("k"), Value::Null).unwrap();
        assert!(before.get(&fresh).is_none(), "new sessions use the new key");
        assert!(matches!(
            SessionKey::from_secret_text("short", "k"),
            Err(SessionKeyError::TooShort { .. })
        ));
        assert!(SessionKey::from_secret_text("\n\n", "k").is_err());
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
