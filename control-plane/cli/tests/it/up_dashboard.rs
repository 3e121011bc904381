//! `agent-bom up` lands a new user on the dashboard: the real binary prints a one-time sign-in
//! link, and a real headless Chromium that opens it sees the dashboard with this machine on it.
//! The time from starting `up` to that page is printed (the target is 10 s; it is measured, not
//! asserted, on this shared machine).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agent_bom_tests::browser::{self, Browser};
use agent_bom_tests::process::server_bin;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_a_sign_in_link_that_lands_on_this_machine() {
    if !browser::available() && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPED: chromium and chromedriver are not installed");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let home = agent_bom_tests::fixture::copy_to_temp(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/home-linux"),
    );
    let started = Instant::now();
    let mut child = tokio::process::Command::new(server_bin())
        .args([
            "up",
            "--api-listen",
            "127.0.0.1:0",
            "--collector-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--home")
        .arg(home.path())
        .args(["--rescan-interval", "1"])
        .env("AGENT_BOM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start agent-bom up");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let link = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(url) = line.trim().strip_prefix("http://")
                && url.contains("/ui/login/link/")
            {
                return format!("http://{url}");
            }
        }
        panic!("up exited without a sign-in link:\n{printed}");
    })
    .await
    .expect("up printed its sign-in link");
    // Keep draining so `up` never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert!(
        !link.contains("abk_"),
        "the link carries a one-time token, not the admin key"
    );

    let b = Browser::start().await;
    b.goto(&link).await;
    // This machine's name as the control plane knows it (what the dashboard must show).
    let api = link
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let key = std::fs::read_to_string(data.path().join("bootstrap-admin.key"))
        .unwrap()
        .trim()
        .to_string();
    let hostname = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((200, list)) =
                agent_bom_tests::process::http_get(&api, "/v1/fleet/endpoints", &key)
                && let Some(h) = list["items"][0]["hostname"].as_str()
            {
                return h.to_string();
            }
            assert!(Instant::now() < deadline, "the local agent never reported");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = b
            .find_within("[data-testid=recent-endpoints]", Duration::ZERO)
            .await
            && b.text(&t).await.contains(&hostname)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed this machine: {}",
            b.text_of_body().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        b.goto(
            &link
                .split("/ui/")
                .next()
                .map(|base| format!("{base}/ui/"))
                .unwrap(),
        )
        .await;
    }
    eprintln!(
        "agent-bom up: dashboard showing this machine {:?} after start",
        started.elapsed()
    );
    assert!(
        b.text(&b.find("[data-testid=tenant]").await)
            .await
            .contains("default")
    );
    if std::env::var_os("AGENT_BOM_UPDATE_DOCS").is_some() {
        b.screenshot(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/ui"),
            "up-first-run",
        )
        .await;
    }
    // The link works once.
    b.clear_cookies().await;
    b.goto(&link).await;
    assert!(
        b.text(&b.find("[data-testid=login-error]").await)
            .await
            .contains("used already")
    );
    b.quit().await;
    child.kill().await.ok();
}
