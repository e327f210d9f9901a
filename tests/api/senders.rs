//! Senders as they really behave, and what an attacker without the secret cannot do: drain a
//! source's rate limit, choose the event id, turn a credential into data; Slack's URL
//! verification, Shopify's newer header names, Standard Webhooks secrets without padding.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use hookrelay::settings::RateLimitSettings;

use crate::auth::{spawn_signed_relay, spawn_signed_relay_with, Sender};
use crate::helpers::{assert_problem, read_records};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Unsigned requests never use up a signed source's rate: after a flood of them the real
/// sender's request is accepted, not answered 429.
#[tokio::test]
async fn unsigned_requests_cannot_drain_a_signed_source_s_rate_limit() {
    let relay = spawn_signed_relay_with(|source| {
        source.rate_limit = Some(RateLimitSettings {
            per_second: 1,
            burst: Some(2),
        })
    })
    .await;
    for sender in [Sender::Github, Sender::StandardWebhooks, Sender::Slack] {
        for _ in 0..10 {
            let response = relay.post(sender.source(), &[], b"{}").await;
            assert_eq!(response.status().as_u16(), 401, "{sender:?}");
        }
        let body = br#"{"id":"evt_1","type":"invoice.paid","event_id":"Ev1","event":{"type":"app_mention"}}"#;
        let signed = relay
            .post(sender.source(), &sender.headers(body, now()), body)
            .await;
        assert_eq!(
            signed.status().as_u16(),
            200,
            "{sender:?}: the real sender after a flood of unsigned requests"
        );
    }
}

/// A request verified with the `svix-*` headers takes its id from `svix-id`: an unsigned
/// `webhook-id` beside it, naming another id, is refused.
#[tokio::test]
async fn an_unsigned_id_of_the_other_header_family_cannot_name_the_event() {
    let relay = spawn_signed_relay().await;
    let body =
        br#"{"id":"evt_1","type":"invoice.paid","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    let signed = Sender::StandardWebhooks.headers(body, now());
    // The same signature under the svix- names.
    let svix: Vec<(String, String)> = signed
        .iter()
        .map(|(name, value)| (name.replace("webhook-", "svix-"), value.clone()))
        .collect();
    let response = relay.post("standard", &svix, body).await;
    assert_eq!(response.status().as_u16(), 200, "svix- names alone");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["id"], "msg_2mK1");

    let mut forged = svix.clone();
    forged.push(("webhook-id".to_owned(), "msg_attacker_chosen".to_owned()));
    assert_problem(
        relay.post("standard", &forged, body).await,
        401,
        "invalid_signature",
    )
    .await;

    // A repeated id header (the signed one first, another after) is refused too.
    let mut repeated = Sender::StandardWebhooks.headers(body, now());
    repeated.push(("webhook-id".to_owned(), "msg_attacker_chosen".to_owned()));
    assert_problem(
        relay.post("standard", &repeated, body).await,
        401,
        "invalid_signature",
    )
    .await;

    // The same id under both names is no conflict.
    let mut both = svix;
    both.push(("webhook-id".to_owned(), "msg_2mK1".to_owned()));
    assert_eq!(
        relay.post("standard", &both, body).await.status().as_u16(),
        200
    );
}

fn check_config(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("HOOKRELAY_SENDERS_TOKEN", "t0ken")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_refuses_credentials_as_key_event_id_or_event_type() {
    for (setting, key) in [
        ("key = \"header:authorization\"", "sources.hooks.key"),
        ("key = \"header:x-token\"", "sources.hooks.key"),
        (
            "event_id_from = \"header:x-token\"",
            "sources.hooks.event_id_from",
        ),
        ("event_from = \"header:cookie\"", "sources.hooks.event_from"),
    ] {
        let (code, stderr) = check_config(&format!(
            "[sources.hooks]\nauth = {{ type = \"token\", in = \"header\", name = \"x-token\", secrets = [\"env:HOOKRELAY_SENDERS_TOKEN\"] }}\n{setting}\n"
        ));
        assert_eq!(code, Some(2), "{setting}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains("carries credentials"),
            "{setting}: {stderr}"
        );
    }
    let (code, stderr) = check_config(
        "[sources.hooks]\nauth = { type = \"github\", secrets = [\"env:HOOKRELAY_SENDERS_TOKEN\"] }\nkey = \"header:x-hub-signature-256\"\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
}

/// Slack saves a Request URL only when the signed `url_verification` request gets its challenge
/// back; it is a handshake, not an event.
#[tokio::test]
async fn slack_url_verification_is_answered_with_the_challenge_and_not_published() {
    let relay = spawn_signed_relay().await;
    let body = br#"{"token":"legacy","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let unsigned = relay.post("slack", &[], body).await;
    assert_eq!(unsigned.status().as_u16(), 401, "only after the signature");

    let response = relay
        .post("slack", &Sender::Slack.headers(body, now()), body)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let metrics = relay.app.metrics().await;
    assert!(
        metrics.contains("hookrelay_handshakes_total{source=\"slack\"} 1"),
        "{metrics}"
    );
    let records = read_records(relay.topic("slack"), 1, Duration::from_secs(3)).await;
    assert!(records.is_empty(), "nothing published");
}

/// Shopify's newer deliveries name the headers without `X-`.
#[tokio::test]
async fn shopify_headers_without_the_x_prefix_are_accepted() {
    let relay = spawn_signed_relay().await;
    let body =
        br#"{"id":"evt_1","type":"invoice.paid","event_id":"Ev1","event":{"type":"app_mention"}}"#;
    let plain: Vec<(String, String)> = Sender::Shopify
        .headers(body, now())
        .into_iter()
        .map(|(name, value)| (name.trim_start_matches("x-").to_owned(), value))
        .collect();
    assert!(plain.iter().any(|(name, _)| name == "shopify-hmac-sha256"));
    let response = relay.post("shopify", &plain, body).await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["id"], "msg_2mK1", "shopify-event-id names the event");
    let records = read_records(relay.topic("shopify"), 1, Duration::from_secs(10)).await;
    assert_eq!(records[0].header("ce_type"), Some("orders.create"));
}

#[test]
fn standard_webhooks_secrets_without_padding_are_accepted() {
    // "old-standard-key" is 16 bytes: its base64 ends in "==".
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        "[sources.hooks]\nauth = { type = \"standard-webhooks\", secrets = [\"env:HOOKRELAY_SENDERS_WHSEC\"] }\n",
    )
    .unwrap();
    for secret in [
        "whsec_b2xkLXN0YW5kYXJkLWtleQ==",
        "whsec_b2xkLXN0YW5kYXJkLWtleQ",
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["check-config", "--config"])
            .arg(&path)
            .env("HOOKRELAY_SENDERS_WHSEC", secret)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{secret}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `Expect: 100-continue`: a request the head checks refuse gets its final status without an
/// interim "100 Continue", so the client never sends the body (RFC 9110 §10.1.1); one that
/// passes them gets "100 Continue", then its answer.
#[tokio::test]
async fn a_request_that_will_be_refused_gets_no_100_continue() {
    use crate::helpers::{sample, spawn_app, TOKEN};
    use std::io::{Read, Write};

    let app = spawn_app().await;
    let address = app.socket_address();
    let body = sample("course.completed.50");
    let head = |query: &str, content_type: &str, length: usize| {
        format!(
            "POST /hooks/tagmango/course.completed.50{query} HTTP/1.1\r\nHost: relay\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        )
    };
    let first_answer = move |head: String| {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let mut buffer = [0u8; 4096];
        let read = stream.read(&mut buffer).unwrap();
        (
            String::from_utf8_lossy(&buffer[..read]).into_owned(),
            stream,
        )
    };
    for (what, head, status) in [
        (
            "wrong token",
            head("?token=wrong", "application/json", body.len()),
            "401",
        ),
        ("no token", head("", "application/json", body.len()), "401"),
        (
            "declared length over the limit",
            head(&format!("?token={TOKEN}"), "application/json", 10_000_000),
            "413",
        ),
        (
            "unaccepted content type",
            head(&format!("?token={TOKEN}"), "text/plain", body.len()),
            "415",
        ),
    ] {
        let (answer, _) = tokio::task::spawn_blocking(move || first_answer(head))
            .await
            .unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: the first answer is {answer:?}"
        );
        assert!(!answer.contains("100 Continue"), "{what}: {answer:?}");
    }

    let good = head(&format!("?token={TOKEN}"), "application/json", body.len());
    let (answer, mut stream) = tokio::task::spawn_blocking(move || first_answer(good))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer:?}");
    let answer = tokio::task::spawn_blocking(move || {
        stream.write_all(&body).unwrap();
        crate::helpers::read_response(&mut stream)
    })
    .await
    .unwrap();
    assert!(
        answer.contains("200 OK") || answer.starts_with("HTTP/1.1 200"),
        "{answer:?}"
    );
}

/// A chunked request refused from its head is answered and its connection closed: a client
/// without credentials cannot keep the connection (or send further requests on it) by
/// trickling chunks after its refusal.
#[tokio::test]
async fn a_chunked_request_refused_from_its_head_has_its_connection_closed() {
    use std::io::{Read, Write};

    let app = crate::helpers::spawn_app().await;
    let address = app.socket_address();
    for expect in ["", "Expect: 100-continue\r\n"] {
        let closed = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let head = format!(
                "POST /hooks/tagmango/course.completed.50?token=wrong HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n{expect}\r\n"
            );
            stream.write_all(head.as_bytes()).unwrap();
            let answer = crate::helpers::read_response(&mut stream);
            assert!(answer.starts_with("HTTP/1.1 401"), "{expect:?}: {answer:?}");
            let started = std::time::Instant::now();
            let mut rest = [0u8; 64];
            // A trickled chunk must not keep it open.
            let _ = stream.write_all(b"1\r\n{\r\n");
            let closed = matches!(stream.read(&mut rest), Ok(0));
            (closed, started.elapsed())
        })
        .await
        .unwrap();
        assert!(
            closed.0 && closed.1 < Duration::from_secs(4),
            "{expect:?}: the connection is closed after the refusal ({:?})",
            closed.1
        );
    }
}
