//! What the relay writes to its log: one line per request with its request id, and never a
//! credential, a signature or the personal data inside a body, even at `debug` level.

use std::process::{Command, Stdio};
use std::time::Duration;

use hmac::{KeyInit, Mac};

use hookrelay::settings::{
    default_tolerance_secs, AckMode, AuthSettings, PresetAuthSettings, SchemaMode, SourceSettings,
};

use crate::helpers::{unique_prefix, use_schemas, wait_for_port, Options, TestConfig, TOKEN};

const NAME: &str = "Priya Secretname";
const EMAIL: &str = "priya.secretname@example.com";
const PHONE: &str = "919876543210";
const GITHUB_SECRET: &str = "gh-secret-5d1c9e";
const WRONG_TOKEN: &str = "wrong-token-93be";

/// (x-request-id, URL, body, headers, expected status)
type Request = (
    &'static str,
    String,
    Vec<u8>,
    Vec<(&'static str, String)>,
    u16,
);

fn person(extra: &str) -> Vec<u8> {
    format!(
        r#"{{"name":"{NAME}","email":"{EMAIL}","phone":{PHONE},"courseId":"c-logs","lastProgressOn":"2023-11-20T18:30Z"{extra}}}"#
    )
    .into_bytes()
}

fn github_signature(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn debug_logs_carry_request_ids_but_no_secret_signature_or_personal_data() {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("github.secret");
    std::fs::write(&secret_file, GITHUB_SECRET).unwrap();
    let mut config = TestConfig::new(&Options {
        ack: AckMode::Memory,
        ..Options::default()
    });
    use_schemas(config.tagmango(), SchemaMode::Enforce);
    let mut github = SourceSettings::new(AuthSettings::Github(PresetAuthSettings {
        secrets: vec![format!("file:{}", secret_file.display())],
        tolerance_secs: default_tolerance_secs(),
    }));
    github.topic = format!("{}.{{source}}", unique_prefix());
    config.settings.sources.insert("gh".to_owned(), github);
    config.on_free_ports();
    let log_path = secrets.path().join("relay.log");
    let mut relay = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["serve", "--config"])
        .arg(&config.path)
        .env_remove("RUST_LOG")
        .env("HOOKRELAY__TELEMETRY__LEVEL", "debug")
        .env("HOOKRELAY__TELEMETRY__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("relay starts");
    let address = format!("127.0.0.1:{}", config.ingress_port());
    tokio::task::spawn_blocking({
        let address = address.clone();
        move || wait_for_port(&address, Duration::from_secs(30))
    })
    .await
    .unwrap();

    let tagmango =
        |token: &str| format!("http://{address}/hooks/tagmango/course.completed.50?token={token}");
    let github = format!("http://{address}/hooks/gh");
    let bad_signature = github_signature(b"another body");
    let good_body = person(r#","action":"opened""#);
    let good_signature = github_signature(&good_body);
    let requests: Vec<Request> = vec![
        ("req-accepted", tagmango(TOKEN), person(""), vec![], 200),
        ("req-duplicate", tagmango(TOKEN), person(""), vec![], 200),
        (
            "req-wrong-token",
            tagmango(WRONG_TOKEN),
            person(""),
            vec![],
            401,
        ),
        (
            "req-malformed",
            tagmango(TOKEN),
            person("")[..60].to_vec(),
            vec![],
            400,
        ),
        (
            "req-schema-violation",
            tagmango(TOKEN),
            format!(r#"{{"name":"{NAME}","phone":{PHONE},"courseId":"c"}}"#).into_bytes(),
            vec![],
            422,
        ),
        (
            "req-bad-signature",
            github.clone(),
            person(""),
            vec![
                ("x-hub-signature-256", bad_signature.clone()),
                ("x-github-event", "push".to_owned()),
            ],
            401,
        ),
        (
            "req-signed",
            github.clone(),
            good_body,
            vec![
                ("x-hub-signature-256", good_signature.clone()),
                ("x-github-event", "push".to_owned()),
            ],
            200,
        ),
    ];
    // A sender that writes the token's delimiter wrongly, or pastes the token as a segment, puts
    // it in the path: a 404 whose log line must not carry it.
    let base = format!("http://{address}/hooks");
    let mut requests = requests;
    for (request_id, url) in [
        (
            "req-token-pct3f",
            format!("{base}/tagmango/course.completed.50%3Ftoken={TOKEN}"),
        ),
        (
            "req-token-amp",
            format!("{base}/tagmango/course.completed.50&token={TOKEN}"),
        ),
        (
            "req-token-semicolon",
            format!("{base}/tagmango/course.completed.50;token={TOKEN}"),
        ),
        (
            "req-token-segment",
            format!("{base}/tagmango/course.completed.50/token={TOKEN}"),
        ),
        ("req-token-as-event", format!("{base}/tagmango/{TOKEN}")),
        (
            "req-token-in-source",
            format!("{base}/tagmango%3Ftoken={TOKEN}/course.completed.50"),
        ),
        ("req-token-as-source", format!("{base}/{TOKEN}")),
    ] {
        requests.push((request_id, url, person(""), vec![], 404));
    }
    let client = reqwest::Client::new();
    for (request_id, url, body, headers, status) in &requests {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-request-id", *request_id)
            .body(body.clone());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), *status, "{request_id}");
    }
    drop(client);
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(relay.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    tokio::task::spawn_blocking(move || relay.wait())
        .await
        .unwrap()
        .unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains(r#""level":"DEBUG""#),
        "debug lines are written:\n{log}"
    );
    for (request_id, ..) in &requests {
        assert!(
            log.contains(request_id),
            "{request_id} is not in the log:\n{log}"
        );
    }
    for secret in [
        TOKEN,
        WRONG_TOKEN,
        GITHUB_SECRET,
        &bad_signature[7..],
        &good_signature[7..],
        NAME,
        "Secretname",
        EMAIL,
        PHONE,
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}
