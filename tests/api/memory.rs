//! What a flood of request bodies can take of the relay's memory: each body holds its bytes of
//! its source's `body_memory_bytes` and of the relay's `server.body_memory_bytes` (docs/api.md),
//! so hundreds of connections that declare large bodies and stall before their last byte leave
//! the relay's memory bounded, get 503 at once past the bound, and a sender of another source is
//! served meanwhile.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use hookrelay::settings::{
    default_tolerance_secs, AckMode, AuthSettings, PresetAuthSettings, SourceSettings,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    start_relay_process, stop_relay_process, unique_prefix, Options, TestConfig, TOKEN,
};

const GITHUB_SECRET: &str = "gh-secret-memory-41a0";
/// The shipped configuration's body limit.
const MAX_BODY: usize = 983_040;
const FLOOD: usize = 300;

/// The relay's resident memory, from /proc.
fn rss_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// A connection that declares a `MAX_BODY` body and sends all of it but the last byte; what the
/// relay answered (status), read while the body is being written (the relay may answer and close
/// before it is).
async fn stalled_body(address: String, head: String, body: std::sync::Arc<Vec<u8>>) -> u16 {
    let Ok(stream) = tokio::net::TcpStream::connect(&address).await else {
        return 0;
    };
    let (mut reader, mut writer) = stream.into_split();
    let head = format!("{head}Content-Length: {MAX_BODY}\r\n\r\n");
    let write = async move {
        if writer.write_all(head.as_bytes()).await.is_ok() {
            let _ = writer.write_all(&body[..MAX_BODY - 1]).await;
        }
        // Stalled before the last byte, the connection kept open.
        std::future::pending::<()>().await;
    };
    let read = async move {
        let mut answer = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut answer))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        String::from_utf8_lossy(&answer[..read])
            .split_whitespace()
            .nth(1)
            .and_then(|status| status.parse().ok())
            .unwrap_or(0)
    };
    tokio::select! {
        status = read => status,
        () = write => 0,
    }
}

fn github_signature(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Floods one source with `FLOOD` stalled bodies of the largest size while a real sender of the
/// other source posts; returns (peak RSS growth, the flood's answers, the real sender's status).
async fn flood(
    pid: u32,
    address: &str,
    flooded_head: String,
    real: impl std::future::Future<Output = u16>,
) -> (usize, Vec<u16>, u16) {
    let before = rss_bytes(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(before));
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = tokio::spawn({
        let (peak, watching) = (peak.clone(), watching.clone());
        async move {
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let mut body = vec![b' '; MAX_BODY];
    body[0] = b'{';
    let body = std::sync::Arc::new(body);
    let attackers: Vec<_> = (0..FLOOD)
        .map(|_| {
            tokio::spawn(stalled_body(
                address.to_owned(),
                flooded_head.clone(),
                body.clone(),
            ))
        })
        .collect();
    // While the flood holds what it may.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let real_status = real.await;
    let mut answers = Vec::new();
    for attacker in attackers {
        answers.push(attacker.await.unwrap());
    }
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    watcher.await.unwrap();
    let growth = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    (growth, answers, real_status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_stalled_bodies_leave_memory_bounded_and_the_other_source_served() {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("github.secret");
    std::fs::write(&secret_file, GITHUB_SECRET).unwrap();
    let mut config = TestConfig::new(&Options {
        ack: AckMode::Memory,
        max_body_bytes: MAX_BODY,
        body_timeout_ms: 4_000,
        ..Options::default()
    });
    let mut github = SourceSettings::new(AuthSettings::Github(PresetAuthSettings {
        secrets: vec![format!("file:{}", secret_file.display())],
        tolerance_secs: default_tolerance_secs(),
    }));
    github.topic = format!("{}.{{source}}", unique_prefix());
    config.settings.sources.insert("gh".to_owned(), github);
    let budget = config.settings.server.body_memory_bytes;
    let (mut relay, address) = start_relay_process(&mut config).await;
    let pid = relay.id();
    let client = reqwest::Client::new();

    // Strangers without the secret: their signatures can only be checked once the bodies are in.
    let unsigned = "POST /hooks/gh HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=00000000000000000000000000000000000000000000000000000000000000ff\r\n"
        .to_owned();
    let tagmango = client
        .post(format!(
            "http://{address}/hooks/tagmango/course.completed.50?token={TOKEN}"
        ))
        .header("content-type", "application/json")
        .body(r#"{"email":"m1@example.com","courseId":"c","lastProgressOn":"2023-11-20T18:30Z"}"#);
    let (growth, answers, real) = flood(pid, &address, unsigned, async {
        tagmango.send().await.map_or(0, |r| r.status().as_u16())
    })
    .await;
    let refused_at_once = answers.iter().filter(|status| **status == 503).count();
    eprintln!(
        "unsigned flood: RSS grew {} MiB at most; {refused_at_once} of {FLOOD} refused 503 at once, the others {:?}",
        growth >> 20,
        answers.iter().filter(|s| **s != 503).collect::<std::collections::BTreeSet<_>>()
    );
    assert_eq!(real, 200, "the TagMango sender is served during the flood");
    assert!(
        refused_at_once >= FLOOD - budget / 2 / MAX_BODY,
        "every body past the source's half of the budget is refused at once: {answers:?}"
    );
    // The bound docs/operations.md states: the relay's body memory and 32 MiB (what actix
    // buffers per connection, allocator slack). The flood itself sent 300 × 983 039 bytes
    // (281 MiB; without the budget the relay's RSS grew 431 MiB).
    let bound = budget + 32 * 1024 * 1024;
    assert!(growth < bound, "RSS grew {growth} bytes (bound {bound})");

    // The same with the token, which every TagMango hook URL carries.
    let with_token = format!(
        "POST /hooks/tagmango/course.completed.50?token={TOKEN} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
    );
    let body = br#"{"action":"opened","n":1}"#.to_vec();
    let signed = client
        .post(format!("http://{address}/hooks/gh"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", github_signature(&body))
        .body(body);
    let (growth, answers, real) = flood(pid, &address, with_token, async {
        signed.send().await.map_or(0, |r| r.status().as_u16())
    })
    .await;
    let refused_at_once = answers.iter().filter(|status| **status == 503).count();
    eprintln!(
        "flood with the token: RSS grew {} MiB at most; {refused_at_once} of {FLOOD} refused 503 at once",
        growth >> 20
    );
    assert_eq!(real, 200, "the GitHub sender is served during the flood");
    assert!(
        refused_at_once >= FLOOD - budget / 2 / MAX_BODY,
        "{answers:?}"
    );
    assert!(growth < bound, "RSS grew {growth} bytes (bound {bound})");

    stop_relay_process(&mut relay);
}
