//! Adversarial tests of the collector's resource control (issue #11): what a peer that has
//! proved nothing can make a real collector hold, handshake slots that idle connections cannot
//! squat, and the uplink's ALPN required on both transports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_bom_agent::tls::{PinnedCaVerifier, enrollment_config};
use agent_bom_agent::uplink;
use agent_bom_collector::CollectorConfig;
use agent_bom_protocol::{AgentMessage, CollectorMessage, MAX_FRAME_LEN, PROTOCOL_VERSION};
use agent_bom_tests::harness::{PATIENCE, TestServer, test_collector_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest frame the protocol allows, shaped to cost an unprotected decoder the most: an
/// `enroll` whose unknown field is an array of millions of one-byte elements (serde's
/// internally tagged decoding copied it into a tree of ~32 bytes per element).
fn hostile_frame() -> Vec<u8> {
    padded_frame(&[
        ("kind", Field::Str("enroll")),
        ("token", Field::Str("abe_000000000000_x")),
        ("csr_pem", Field::Str("x")),
        ("hostname", Field::Str("h")),
        ("protocol_version", Field::Int(u64::from(PROTOCOL_VERSION))),
    ])
}

/// A field of a hand-made MessagePack map.
enum Field {
    Str(&'static str),
    Int(u64),
    EmptyArray,
}

/// A frame of exactly [`MAX_FRAME_LEN`] bytes: a map of `fields` and a `padding` array of
/// one-byte elements filling the rest (MessagePack by hand: short strings are `0xa0 | len`
/// then the bytes, small integers one byte, `0xdd` an array with a 32-bit length).
fn padded_frame(fields: &[(&str, Field)]) -> Vec<u8> {
    fn short_str(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 32);
        out.push(0xa0 | s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    let mut body = Vec::with_capacity(MAX_FRAME_LEN as usize);
    body.push(0x80 | u8::try_from(fields.len() + 1).unwrap());
    for (key, value) in fields {
        short_str(&mut body, key);
        match value {
            Field::Str(s) => short_str(&mut body, s),
            Field::Int(n) => {
                body.push(0xcf);
                body.extend_from_slice(&n.to_be_bytes());
            }
            Field::EmptyArray => body.push(0x90),
        }
    }
    short_str(&mut body, "padding");
    let elements = MAX_FRAME_LEN as usize - body.len() - 5;
    body.push(0xdd);
    body.extend_from_slice(&(elements as u32).to_be_bytes());
    body.resize(MAX_FRAME_LEN as usize, 0);
    let mut frame = MAX_FRAME_LEN.to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn pinned(pin: &str) -> rustls::ClientConfig {
    enrollment_config(Arc::new(PinnedCaVerifier::new(Some(pin.to_string()))))
}

/// Send `frame` on a new QUIC connection without a client certificate; whatever the collector
/// answers (or how it hangs up) is ignored.
async fn send_quic(collector: &str, pin: &str, frame: Arc<Vec<u8>>) {
    let Ok((endpoint, conn)) = uplink::connect(collector, pinned(pin)).await else {
        return;
    };
    if let Ok((mut send, mut recv)) = conn.open_bi().await {
        tokio::select! {
            _ = send.write_all(&frame) => {}
            _ = recv.read_to_end(64 * 1024) => {}
        }
    }
    conn.close(0u32.into(), b"");
    drop(endpoint);
}

/// Send `frame` on a new TLS/TCP connection without a client certificate.
async fn send_tcp(collector: SocketAddr, pin: &str, frame: Arc<Vec<u8>>) {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pinned(pin)));
    let Ok(tcp) = tokio::net::TcpStream::connect(collector).await else {
        return;
    };
    let name =
        rustls::pki_types::ServerName::try_from(agent_bom_protocol::COLLECTOR_SERVER_NAME).unwrap();
    let Ok(tls) = connector.connect(name, tcp).await else {
        return;
    };
    let (mut reader, mut writer) = tokio::io::split(tls);
    let mut reply = Vec::new();
    tokio::select! {
        _ = writer.write_all(&frame) => {}
        _ = reader.read_to_end(&mut reply) => {}
    }
}

/// Resident and peak resident memory of a process, in bytes (Linux).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const MIB: u64 = 1024 * 1024;
const ADMIN_KEY: &str = "abk_f1f2f3f4f5f6_0123456789abcdef0123456789abcdef0123456789abcdef";
/// What a burst of unauthenticated frames may add to the collector's memory (issue #11).
const BURST_BUDGET: u64 = 64 * MIB;

/// 1,000 maximum-size frames from peers without a certificate (half over QUIC, half over
/// TLS/TCP, 50 at a time, against a handshake budget of 8 so that some are admitted and some
/// refused) against a real `agent-bom serve`: its peak resident memory stays within 64 MiB of
/// its idle level. Before, the collector read and decoded each frame whole
/// (one such frame took it from 36 MB to 288 MB).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_frames_cannot_make_the_collector_hold_memory() {
    const FRAMES: usize = 1_000;
    const AT_ONCE: usize = 50;
    let data = tempfile::tempdir().unwrap();
    let served = agent_bom_tests::process::serve(&agent_bom_tests::process::ServeArgs {
        data_dir: data.path(),
        api: "127.0.0.1:0",
        collector: "127.0.0.1:0",
        admin_key: ADMIN_KEY,
        // A small handshake budget, so that the burst goes through every path: admitted,
        // asked to prove its address (QUIC Retry), and refused (on TLS/TCP, refusals are
        // answered after reading the peer's first frame).
        extra: &["--max-handshakes", "8"],
        env: &[],
    });
    let pid = served.child.0.id();
    let collector: SocketAddr = served.collector.parse().unwrap();
    let pin = std::fs::read_to_string(data.path().join("ca.pin")).unwrap();
    let pin = pin.trim().to_string();
    let frame = Arc::new(hostile_frame());

    // Warm up both transports with one small frame each, then take the idle level.
    let small = Arc::new(agent_bom_protocol::encode(&AgentMessage::Ping).unwrap());
    send_quic(&served.collector, &pin, small.clone()).await;
    send_tcp(collector, &pin, small).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, _) = memory(pid);
    let started = std::time::Instant::now();
    let mut peak = idle;
    let mut sent = 0;
    while sent < FRAMES {
        let batch: Vec<_> = (0..AT_ONCE)
            .map(|i| {
                let (frame, pin, addr) = (frame.clone(), pin.clone(), served.collector.clone());
                tokio::spawn(async move {
                    let send = async {
                        if i % 2 == 0 {
                            send_quic(&addr, &pin, frame).await;
                        } else {
                            send_tcp(addr.parse().unwrap(), &pin, frame).await;
                        }
                    };
                    let _ = tokio::time::timeout(PATIENCE, send).await;
                })
            })
            .collect();
        for task in batch {
            task.await.unwrap();
        }
        sent += AT_ONCE;
        let (rss, hwm) = memory(pid);
        peak = peak.max(rss).max(hwm);
        // Bounded even against a collector that does hold what it is sent.
        assert!(
            peak - idle < BURST_BUDGET,
            "after {sent} frames the collector grew from {} MiB to a peak of {} MiB",
            idle / MIB,
            peak / MIB
        );
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, hwm) = memory(pid);
    peak = peak.max(hwm);
    eprintln!(
        "collector memory under {FRAMES} unauthenticated {} MiB frames: idle {:.1} MiB, peak {:.1} MiB (+{:.1}), after {:.1} MiB; burst took {elapsed:?}",
        MAX_FRAME_LEN as u64 / MIB,
        idle as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        (peak - idle) as f64 / MIB as f64,
        after as f64 / MIB as f64,
    );
    assert!(peak - idle < BURST_BUDGET);
    // The collector still serves.
    let api = served.api.clone();
    let health = tokio::task::spawn_blocking(move || {
        agent_bom_tests::process::http_get(&api, "/healthz", ADMIN_KEY)
    })
    .await
    .unwrap();
    assert_eq!(health.map(|(status, _)| status), Some(200));
}

/// An enrolled device sends 12 maximum-size `proxy_events` frames padded with millions of
/// one-byte elements in an unknown field, 4 streams at a time, to a real `agent-bom serve`:
/// the collector decodes them in place, so its peak resident memory grows by at most about
/// four times the 32 MiB in flight (the frames themselves, their buffers' growth, the
/// streams' windows). Before, each frame was copied into a tree of ~32 bytes per byte (about
/// 256 MiB a frame).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_device_cannot_make_the_collector_hold_memory_either() {
    let data = tempfile::tempdir().unwrap();
    let served = agent_bom_tests::process::serve(
        &agent_bom_tests::process::ServeArgs::on_loopback(data.path(), ADMIN_KEY),
    );
    let pid = served.child.0.id();
    let pin = std::fs::read_to_string(data.path().join("ca.pin")).unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let out = agent_bom_tests::process::enroll(
        &served.collector,
        pin.trim(),
        data.path(),
        state_dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = agent_bom_state::StateDir::open(state_dir.path()).unwrap();
    let (_endpoint, conn) = uplink::connect(&served.collector, uplink::device_tls(&state).unwrap())
        .await
        .unwrap();
    let hello = AgentMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "test".into(),
        capabilities: vec![],
    };
    let welcome = uplink::exchange(&conn, &hello).await.unwrap();
    assert!(
        matches!(welcome, CollectorMessage::Welcome { .. }),
        "{welcome:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, _) = memory(pid);

    let mut peak = idle;
    for round in 0..3u64 {
        let sends: Vec<_> = (0..4u64)
            .map(|i| {
                let conn = conn.clone();
                let frame = padded_frame(&[
                    ("kind", Field::Str("proxy_events")),
                    ("seq", Field::Int(round * 4 + i + 1)),
                    ("events", Field::EmptyArray),
                ]);
                tokio::spawn(async move {
                    let (mut send, mut recv) = conn.open_bi().await.unwrap();
                    send.write_all(&frame).await.unwrap();
                    let _ = send.finish();
                    let reply: CollectorMessage =
                        tokio::time::timeout(PATIENCE, agent_bom_protocol::read_frame(&mut recv))
                            .await
                            .expect("no answer")
                            .unwrap();
                    reply
                })
            })
            .collect();
        for send in sends {
            let reply = send.await.unwrap();
            assert!(matches!(reply, CollectorMessage::Ack { .. }), "{reply:?}");
        }
        let (rss, hwm) = memory(pid);
        peak = peak.max(rss).max(hwm);
        assert!(
            peak - idle < 4 * 4 * u64::from(MAX_FRAME_LEN),
            "after {} frames the collector grew from {} MiB to a peak of {} MiB",
            (round + 1) * 4,
            idle / MIB,
            peak / MIB
        );
    }
    eprintln!(
        "collector memory under 12 padded 8 MiB frames of an enrolled device: idle {:.1} MiB, peak {:.1} MiB (+{:.1})",
        idle as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        (peak - idle) as f64 / MIB as f64,
    );
}

/// A first frame larger than the pre-authentication limit is refused from its header: the
/// peer hears `malformed_frame` before it has sent the body (before, the collector waited for
/// and decoded up to 8 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_first_frame_is_refused_from_its_header() {
    let server = TestServer::start(None).await;
    let (_endpoint, conn) = uplink::connect(&server.collector.to_string(), pinned(&server.ca_pin))
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    // Only the header of a 1 MiB frame: the answer must come without the body.
    send.write_all(&(1024u32 * 1024).to_be_bytes())
        .await
        .unwrap();
    let reply: CollectorMessage =
        tokio::time::timeout(PATIENCE, agent_bom_protocol::read_frame(&mut recv))
            .await
            .expect("no answer before the body was sent")
            .unwrap();
    match reply {
        CollectorMessage::Error { code, message, .. } => {
            assert_eq!(code, agent_bom_protocol::ErrorCode::MalformedFrame);
            assert!(message.contains("exceeds"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    server.stop().await;
}

/// A TCP connection from `source` that completes no handshake and sends nothing.
async fn idle_tcp(source: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// A TCP-only forwarder: QUIC to it fails, so an agent enrolling through it uses TLS/TCP.
async fn tcp_only_forwarder(target: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

/// One host opens more idle TCP connections than the collector has handshake slots and never
/// speaks. Agents still enroll over QUIC (its own budget) and over TLS/TCP from another
/// address (one address holds at most its share), and the idle connections are cut at the
/// handshake deadline. Before, they held the slots QUIC shared for the whole request timeout
/// and agents were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_squat_the_handshake_slots() {
    let config = CollectorConfig {
        max_handshakes: 16,
        max_opening_per_source: 8,
        handshake_timeout: Duration::from_secs(2),
        // Far beyond the test's patience: only the handshake deadline can free the slots.
        request_timeout: Duration::from_secs(600),
        ..test_collector_config()
    };
    let server = TestServer::start_with_collector(None, config).await;
    let mut squatters = Vec::new();
    for _ in 0..48 {
        squatters.push(idle_tcp("127.0.0.2", server.collector).await);
    }
    // Let the collector accept them all before the agents come.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let over_quic = server.enroll_device().await;
    assert!(!over_quic.record.agent_id.is_empty());
    let forwarder = tcp_only_forwarder(server.collector).await;
    let over_tcp = server.enroll_device_via(&forwarder.to_string()).await;
    assert!(!over_tcp.record.agent_id.is_empty());

    // Every idle connection is closed by the collector, long before the request timeout.
    for mut idle in squatters {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(PATIENCE, async {
            loop {
                match idle.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "an idle connection kept its slot");
    }
    server.stop().await;
}

/// A TLS client that offers no ALPN completes the handshake (rustls lets it through) but is
/// never served; before, its enrollment request was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_without_the_alpn_is_refused() {
    let server = TestServer::start(None).await;
    let mut config = pinned(&server.ca_pin);
    config.alpn_protocols.clear();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.collector)
        .await
        .unwrap();
    let name =
        rustls::pki_types::ServerName::try_from(agent_bom_protocol::COLLECTOR_SERVER_NAME).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let enroll = AgentMessage::Enroll {
        protocol_version: PROTOCOL_VERSION,
        token: server.enrollment_token.clone(),
        csr_pem: "x".into(),
        hostname: "h".into(),
        prior_identity: None,
    };
    let _ = tls
        .write_all(&agent_bom_protocol::encode(&enroll).unwrap())
        .await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut reply))
        .await
        .expect("the connection was neither answered nor closed");
    assert!(
        reply.is_empty(),
        "answered a client without ALPN ({} bytes, {read:?})",
        reply.len()
    );

    // Over QUIC, the handshake itself fails.
    let mut config = pinned(&server.ca_pin);
    config.alpn_protocols.clear();
    assert!(
        uplink::connect(&server.collector.to_string(), config)
            .await
            .is_err()
    );
    server.stop().await;
}

fn detection(tool: &str, reasons: Vec<String>) -> agent_bom_protocol::ProxyEvent {
    agent_bom_protocol::ProxyEvent {
        ts_ms: 1_800_000_000_000,
        kind: "call".into(),
        server_id: "srv".into(),
        tool: Some(tool.into()),
        decision: "block".into(),
        reasons,
        ..Default::default()
    }
}

/// Hand `events` in as one `proxy_events` batch of an enrolled device; expects the ack.
async fn hand_in(
    server: &TestServer,
    device: &agent_bom_tests::harness::EnrolledDevice,
    seq: u64,
    events: Vec<agent_bom_protocol::ProxyEvent>,
) {
    let tls = uplink::device_tls(&device.state).unwrap();
    let (_endpoint, conn) = uplink::connect(&server.collector.to_string(), tls)
        .await
        .unwrap();
    let hello = AgentMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "test".into(),
        capabilities: vec![],
    };
    let welcome = uplink::exchange(&conn, &hello).await.unwrap();
    assert!(
        matches!(welcome, CollectorMessage::Welcome { .. }),
        "{welcome:?}"
    );
    let reply = uplink::exchange(
        &conn,
        &AgentMessage::ProxyEvents {
            seq,
            events,
            dropped: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(reply, CollectorMessage::Ack { seq });
    conn.close(0u32.into(), b"done");
}

/// Devices hand in floods of detections (each became a hash-chained audit entry): 20,000
/// identical ones in one frame, and hundreds of distinct ones with oversized reasons. The audit
/// log grows by at most each device's detection budget, repeated detections are folded,
/// details are clipped, what was refused is counted on the endpoint, a `/v1/audit` page stays
/// within its byte bound, and the chain still verifies. Before, one frame added 20,000
/// entries and one page reached 147 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_cannot_flood_the_audit_log() {
    use agent_bom_collector::ingress::DEFAULT_DETECTIONS_PER_MINUTE;

    let server = TestServer::start(None).await;
    let key = server.admin_key.clone();
    let first = server.enroll_device().await;
    let second = server.enroll_device().await;
    hand_in(
        &server,
        &first,
        1,
        vec![detection("exfiltrate", vec!["secret in arguments".into()]); 20_000],
    )
    .await;
    let oversized = |device: usize| {
        (0..700)
            .map(|i| detection(&format!("tool-{device}-{i}"), vec!["r".repeat(400); 20]))
            .collect::<Vec<_>>()
    };
    hand_in(&server, &first, 2, oversized(1)).await;
    hand_in(&server, &second, 1, oversized(2)).await;

    // Read the whole log page by page.
    let mut entries = Vec::new();
    let mut after = 0;
    let mut a_page_was_cut_by_bytes = false;
    loop {
        let r = server
            .get(
                &format!("/v1/audit?action=proxy.detection&limit=1000&after={after}"),
                Some(&key),
            )
            .await;
        assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
        assert!(
            r.text.len() <= 4 * 1024 * 1024 + 64 * 1024,
            "a page of {} bytes",
            r.text.len()
        );
        let items = r.json["items"].as_array().unwrap().clone();
        if items.len() < 1000 && r.json["next_after"].is_i64() {
            a_page_was_cut_by_bytes = true;
        }
        entries.extend(items);
        match r.json["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    let budget = DEFAULT_DETECTIONS_PER_MINUTE as usize;
    assert!(
        entries.len() <= 2 * budget,
        "{} detection entries from two devices",
        entries.len()
    );
    assert!(entries.len() >= budget, "{} entries", entries.len());
    assert!(a_page_was_cut_by_bytes, "no page was bounded by bytes");
    for e in &entries {
        let reasons = e["detail"]["reasons"].as_array().unwrap();
        assert!(reasons.len() <= 16, "{} reasons", reasons.len());
        assert!(reasons.iter().all(|r| r.as_str().unwrap().len() <= 256));
    }
    assert!(
        entries
            .iter()
            .any(|e| e["detail"]["reasons"].to_string().contains("(folded)")),
        "no folded detection"
    );
    let detail = server
        .get(
            &format!("/v1/fleet/endpoints/{}", first.record.agent_id),
            Some(&key),
        )
        .await;
    assert!(
        detail.json["events_dropped"].as_i64().unwrap() >= 100,
        "{}",
        detail.json["events_dropped"]
    );
    let verified = server.get("/v1/audit/verify", Some(&key)).await;
    assert_eq!(verified.json["ok"], true, "{}", verified.text);
    server.stop().await;
}
