//! What keeps a browser session safe: response headers (a strict Content-Security-Policy with
//! no inline script), the session cookie's attributes, and the same-origin checks every
//! state-changing request passes besides its CSRF token.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Scripts, styles and images from this origin only; no inline script or style, no framing,
/// forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "agent_bom_session";
/// Under TLS: the `__Host-` prefix makes browsers refuse it without Secure, with a Domain, or
/// on another path.
pub const COOKIE_SECURE: &str = "__Host-agent_bom_session";
/// The cookie of a message shown once after a redirect (plain HTTP, and under TLS).
pub const FLASH_COOKIE: &str = "agent_bom_flash";
/// See [`FLASH_COOKIE`].
pub const FLASH_COOKIE_SECURE: &str = "__Host-agent_bom_flash";

/// Add the security headers to every dashboard response.
pub(crate) async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The cookie name in use.
pub(crate) fn cookie_name(secure: bool) -> &'static str {
    if secure { COOKIE_SECURE } else { COOKIE }
}

/// `Set-Cookie` for a new session: HttpOnly, SameSite=Strict, Secure under TLS.
pub(crate) fn session_cookie(id: &str, secure: bool) -> String {
    let mut c = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        cookie_name(secure),
        crate::session::ABSOLUTE_TIMEOUT.as_secs()
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// `Set-Cookie` that ends the session in the browser.
pub(crate) fn clear_cookie(secure: bool) -> String {
    let mut c = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        cookie_name(secure)
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// A cookie's value from the request, if it looks like a sealed value (base64url and dots,
/// within the size browsers keep).
fn sealed_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| {
            *k == name
                && !v.is_empty()
                && v.len() <= crate::session::MAX_COOKIE
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(|(_, v)| v.to_string())
}

/// The sealed session from the request's cookies.
pub(crate) fn session_cookie_value(headers: &HeaderMap, secure: bool) -> Option<String> {
    sealed_cookie(headers, cookie_name(secure))
}

/// The flash cookie's name in use.
fn flash_cookie_name(secure: bool) -> &'static str {
    if secure {
        FLASH_COOKIE_SECURE
    } else {
        FLASH_COOKIE
    }
}

/// `Set-Cookie` for a message shown on the next page (a sealed value, short-lived).
pub(crate) fn flash_cookie(value: &str, secure: bool) -> String {
    let mut c = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        flash_cookie_name(secure),
        crate::session::FLASH_TTL.as_secs()
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// `Set-Cookie` that removes the flash cookie once shown.
pub(crate) fn clear_flash_cookie(secure: bool) -> String {
    let mut c = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        flash_cookie_name(secure)
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// The sealed flash message from the request's cookies.
pub(crate) fn flash_cookie_value(headers: &HeaderMap, secure: bool) -> Option<String> {
    sealed_cookie(headers, flash_cookie_name(secure))
}

/// Whether a state-changing request comes from a page of this origin: `Sec-Fetch-Site`, when
/// the browser sends it, must not be `cross-site` or `same-site`, and `Origin`, when present,
/// must name the host the request was sent to.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Some(origin), Some(host)) = (
        origin.to_str().ok(),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn cookie_attributes() {
        let plain = session_cookie(&"a".repeat(64), false);
        assert!(plain.starts_with("agent_bom_session="));
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        let tls = session_cookie(&"a".repeat(64), true);
        assert!(tls.starts_with("__Host-agent_bom_session=") && tls.ends_with("; Secure"));
    }

    #[test]
    fn session_cookie_must_look_sealed() {
        let value = "v1.AbC-_9";
        let good = HeaderValue::from_str(&format!("x=1; agent_bom_session={value}")).unwrap();
        let mut m = HeaderMap::new();
        m.insert(header::COOKIE, good);
        assert_eq!(session_cookie_value(&m, false).as_deref(), Some(value));
        assert_eq!(
            session_cookie_value(&m, true),
            None,
            "the plain cookie does not count under TLS"
        );
        assert_eq!(
            session_cookie_value(&h(&[("cookie", "agent_bom_session=a b")]), false),
            None
        );
        assert_eq!(
            session_cookie_value(&h(&[("cookie", "agent_bom_session=")]), false),
            None
        );
    }

    #[test]
    fn cross_site_posts_are_refused() {
        assert!(same_origin(&h(&[
            ("host", "cp:8422"),
            ("origin", "http://cp:8422")
        ])));
        assert!(same_origin(&h(&[("host", "cp:8422")])));
        assert!(!same_origin(&h(&[
            ("host", "cp:8422"),
            ("origin", "http://evil")
        ])));
        assert!(!same_origin(&h(&[("host", "cp:8422"), ("origin", "null")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")])));
    }
}
