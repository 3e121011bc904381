//! `agent-bom ui --api URL --listen ADDR`, the command the chart runs for the UI companion: the
//! real binary in front of a real `agent-bom serve`, signed in with an API key over plain HTTP
//! (sign-in form, session cookie, a page with the tenant), its security headers, and a clear
//! error for a bad API URL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use agent_bom_tests::process::{KillOnDrop, ServeArgs, server_bin};

const ADMIN_KEY: &str = "abk_d1d2d3d4d5d6_0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn the_companion_serves_the_dashboard_in_front_of_a_remote_api() {
    let data = tempfile::tempdir().unwrap();
    let served = agent_bom_tests::process::serve(&ServeArgs {
        data_dir: data.path(),
        api: "127.0.0.1:0",
        collector: "127.0.0.1:0",
        admin_key: ADMIN_KEY,
        // Cluster mode: the API alone, the dashboard as its own process.
        extra: &["--no-dashboard"],
        env: &[],
    });
    let mut child = Command::new(server_bin())
        .args([
            "ui",
            "--api",
            &format!("http://{}", served.api),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("AGENT_BOM_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _child = KillOnDrop(child);
    let base = line
        .trim()
        .strip_prefix("agent-bom dashboard: ")
        .and_then(|r| r.split("/ui/").next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();

    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("http://{}/ui/login", served.api))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "--no-dashboard serves the API alone");
    // Unauthenticated: to the sign-in form, which carries the security headers.
    let r = http.get(format!("{base}/ui/")).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    let r = http.get(format!("{base}/ui/login")).send().unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    // A wrong key is refused; the right one starts a session.
    let r = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("api_key=abk_000000000000_00")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &base)
        .body(format!("api_key={ADMIN_KEY}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text());
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(ADMIN_KEY), "the cookie is not the key");
    let session = cookie.split(';').next().unwrap().to_string();
    let page = http
        .get(format!("{base}/ui/"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("Tenant <strong>default</strong>"), "{page}");

    // A bad API URL is a clear error, not a crash.
    let out = Command::new(server_bin())
        .args(["ui", "--api", "cp.internal", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must start with http:// or https://"), "{err}");
}

/// Start `agent-bom ui` with `args` after `ui`; its base URL and the process.
fn companion(args: &[&str]) -> (String, KillOnDrop) {
    let mut child = Command::new(server_bin())
        .arg("ui")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("AGENT_BOM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("agent-bom dashboard: ")
        .and_then(|r| r.split("/ui/").next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    (base, KillOnDrop(child))
}

/// The API behind TLS with a private CA (an internal ingress): `--api-ca` makes the companion
/// trust it, and without it the companion refuses the API's certificate (there is no switch
/// that turns verification off) and says so at sign-in.
#[test]
fn the_companion_reaches_a_tls_api_through_its_private_ca() {
    let data = tempfile::tempdir().unwrap();
    let served = agent_bom_tests::process::serve(&ServeArgs {
        data_dir: data.path(),
        api: "127.0.0.1:0",
        collector: "127.0.0.1:0",
        admin_key: ADMIN_KEY,
        extra: &["--no-dashboard"],
        env: &[],
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let front = runtime.block_on(agent_bom_tests::tls_front::TlsFront::start(
        served.api.parse().unwrap(),
    ));
    let ca = data.path().join("api-ca.pem");
    std::fs::write(&ca, &front.ca_pem).unwrap();
    let api = format!("https://127.0.0.1:{}", front.addr.port());
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_in = |base: &str| {
        http.post(format!("{base}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("api_key={ADMIN_KEY}"))
            .send()
            .unwrap()
    };

    let (base, _trusting) = companion(&["--api", &api, "--api-ca", ca.to_str().unwrap()]);
    let r = sign_in(&base);
    assert_eq!(r.status(), 303, "{:?}", r.text());
    let session = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(format!("{base}/ui/"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("Tenant <strong>default</strong>"), "{page}");

    let (base, _untrusting) = companion(&["--api", &api]);
    let r = sign_in(&base);
    assert_eq!(r.status(), 502, "the API's certificate is not trusted");
    let text = r.text().unwrap();
    assert!(text.contains("could not be reached"), "{text}");
    drop(front);
}
