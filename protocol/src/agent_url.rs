//! A URL the control plane may point an agent at: a release download (`update_available`) or
//! the tenant's gateway (`settings`). One rule for both, so neither can be used to send an agent
//! somewhere the other would refuse.

/// Longest URL a command may carry.
pub const MAX_URL_LEN: usize = 2048;

/// A download URL an agent may be pointed at: `https://` with a host, or `http://` to a loopback
/// host only (a control plane on the same machine: `agent-bom up`, tests); never credentials
/// (they would be stored in the command and its audit entry), spaces or control characters.
/// Plain HTTP is tolerable there because the build itself is checked against its signed digest;
/// off the machine it would still leak what is being installed, so it is refused.
pub(crate) fn check_download_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("url {why}"));
    if url.len() > MAX_URL_LEN {
        return bad(&format!("is longer than {MAX_URL_LEN} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    let scheme_is = |scheme: &str| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    let (rest, plain) = if scheme_is("https://") {
        (&url[8..], false)
    } else if scheme_is("http://") {
        (&url[7..], true)
    } else {
        return bad("must be an https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return bad("must not carry credentials");
    }
    if authority.is_empty() || authority.starts_with(':') {
        return bad("needs a host");
    }
    if plain && !is_loopback_authority(authority) {
        return bad("must be an https:// URL (plain http:// only to this machine)");
    }
    Ok(())
}

/// True for `localhost`, `127.x.y.z` and `[::1]`, with or without a port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
