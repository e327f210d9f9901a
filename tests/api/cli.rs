//! The command line as an operator uses it.

use std::process::{Command, Output};
use std::time::Duration;

use crate::helpers::{read_topic, spawn_app, Options, TestConfig};

fn hookrelay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("hookrelay runs")
}

/// `hookrelay tail` for the first record of `topic` (waiting up to 10 s).
fn tail_one(config: &str, topic: &str) -> Output {
    hookrelay(
        &[
            "tail",
            "--config",
            config,
            "--topic",
            topic,
            "--max",
            "1",
            "--idle-exit-ms",
            "10000",
        ],
        &[],
    )
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const GOOD: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"

[sources.tagmango]
events = ["course.completed.50"]
auth = { type = "token", in = "query", name = "token", secrets = ["env:HOOKRELAY_TEST_TOKEN"] }
idempotency = { fields = ["/courseId", "/email", "/lastProgressOn"] }
key = "/email"

[sources.open]
auth = { type = "none" }
"#;

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, GOOD);
    let output = hookrelay(
        &["check-config", "--config", &path],
        &[("HOOKRELAY_TEST_TOKEN", "t")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("webhooks.tagmango.course.completed.50"),
        "{stdout}"
    );
    assert!(!stdout.contains("HOOKRELAY_TEST_TOKEN=t"));
}

/// Each broken file exits 2 and names the key path and the reason.
#[test]
fn check_config_names_the_key_and_reason_of_each_problem() {
    type Environment = &'static [(&'static str, &'static str)];
    let cases: &[(&str, String, Environment, &str)] = &[
        ("missing secret", GOOD.to_owned(), &[], "sources.tagmango.auth.secrets[0]: environment variable HOOKRELAY_TEST_TOKEN is not set"),
        ("literal secret", GOOD.replace("env:HOOKRELAY_TEST_TOKEN", "hunter2"), &[], "sources.tagmango.auth.secrets[0]: a secret must be written as env:NAME or file:/path"),
        ("bad listen address", format!("[server]\nlisten = \"localhost\"\n{GOOD}"), &[("HOOKRELAY_TEST_TOKEN", "t")], "server.listen: "),
        ("admin on the ingress port", format!("[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n{GOOD}"), &[("HOOKRELAY_TEST_TOKEN", "t")], "server.admin_listen: must differ from server.listen"),
        ("unknown placeholder", GOOD.replace("[sources.open]", "[sources.open]\ntopic = \"webhooks.{tenant}\""), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open.topic: unknown placeholder {tenant}"),
        ("empty source list", "[kafka]\nbrokers = \"127.0.0.1:9092\"\n".to_owned(), &[], "sources: no source is configured"),
        ("unknown key", GOOD.replace("[kafka]", "[kafka]\nbrokerz = \"x\""), &[("HOOKRELAY_TEST_TOKEN", "t")], "kafka.brokerz: unknown field: found `brokerz`"),
        ("auth omitted", GOOD.replace("auth = { type = \"none\" }", ""), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open: missing field `auth`"),
        ("unknown ack mode", format!("[delivery]\nack = \"disk\"\n{GOOD}"), &[("HOOKRELAY_TEST_TOKEN", "t")], "delivery.ack: unknown variant: found `disk`"),
        ("rate limit of zero", GOOD.replace("key = \"/email\"", "key = \"/email\"\nrate_limit = { per_second = 0 }"), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.tagmango.rate_limit.per_second: must be at least 1"),
        ("bad whsec secret", GOOD.replace("auth = { type = \"none\" }", "auth = { type = \"standard-webhooks\", secrets = [\"env:HOOKRELAY_TEST_WHSEC\"] }"), &[("HOOKRELAY_TEST_TOKEN", "t"), ("HOOKRELAY_TEST_WHSEC", "whsec_%%%")], "sources.open.auth.secrets[0]: not a Standard Webhooks secret: expected whsec_ followed by base64"),
        ("unknown hmac algorithm", GOOD.replace("auth = { type = \"none\" }", "auth = { type = \"hmac\", header = \"x-sig\", algorithm = \"md5\", secrets = [\"env:HOOKRELAY_TEST_TOKEN\"] }"), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open.auth.algorithm: unknown algorithm \"md5\": use sha256, sha1 or sha512"),
        ("timestamp without header", GOOD.replace("auth = { type = \"none\" }", "auth = { type = \"hmac\", header = \"x-sig\", signed = \"{timestamp}.{body}\", secrets = [\"env:HOOKRELAY_TEST_TOKEN\"] }"), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open.auth.timestamp_header: required when the signed content contains {timestamp}"),
        ("unknown auth type", GOOD.replace("auth = { type = \"none\" }", "auth = { type = \"oauth\" }"), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open.auth.type: unknown variant: found `oauth`"),
        ("forwarded signature header", GOOD.replace("auth = { type = \"none\" }", "auth = { type = \"github\", secrets = [\"env:HOOKRELAY_TEST_TOKEN\"] }\nforward_headers = [\"X-Hub-Signature-256\"]"), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open.forward_headers[0]: \"X-Hub-Signature-256\" carries credentials or a signature and is never forwarded"),
        ("forwarded authorization", GOOD.replace("auth = { type = \"none\" }", "auth = { type = \"none\" }\nforward_headers = [\"Authorization\"]"), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open.forward_headers[0]: \"Authorization\" carries credentials"),
        ("bad event_from", GOOD.replace("auth = { type = \"none\" }", "auth = { type = \"none\" }\nevent_from = \"type\""), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open.event_from: \"type\" is not a JSON pointer"),
        ("bad allow_ips network", GOOD.replace("auth = { type = \"none\" }", "auth = { type = \"none\" }\nallow_ips = [\"10.0.0.0/8\", \"10.0.0.0/33\"]"), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open.allow_ips[1]: \"10.0.0.0/33\" is not a network"),
        ("empty allow_ips", GOOD.replace("auth = { type = \"none\" }", "auth = { type = \"none\" }\nallow_ips = []"), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.open.allow_ips: an empty list would refuse every request"),
        ("bad trusted proxy", format!("[server]\ntrusted_proxies = [\"proxy.internal\"]\n{GOOD}"), &[("HOOKRELAY_TEST_TOKEN", "t")], "server.trusted_proxies[0]: \"proxy.internal\" is not an IP address"),
        ("missing schema file", GOOD.replace("key = \"/email\"", "key = \"/email\"\nschema = \"no/such/dir/{event}.json\""), &[("HOOKRELAY_TEST_TOKEN", "t")], "sources.tagmango.schema: event course.completed.50: cannot read the schema no/such/dir/course.completed.50.json"),
        ("bad environment override", GOOD.to_owned(), &[("HOOKRELAY_TEST_TOKEN", "t"), ("HOOKRELAY__SERVER__BODY_TIMEOUT_MS", "soon")], "server.body_timeout_ms: "),
    ];
    for (name, text, env, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(&dir, text);
        let output = hookrelay(&["check-config", "--config", &path], env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
    }
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, GOOD);
    let output = hookrelay(
        &["check-config", "--config", &path],
        &[
            ("HOOKRELAY_TEST_TOKEN", "t"),
            ("HOOKRELAY__SOURCES__OPEN__TOPIC", "{source}.from-env"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("open.from-env"), "{stdout}");
}

#[test]
fn serve_refuses_to_start_when_topics_are_missing() {
    let config = TestConfig::new(&Options {
        create_topics: false,
        ..Options::default()
    });
    let output = hookrelay(
        &["serve", "--config", &config.path.display().to_string()],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("these Kafka topics do not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&config.topic("course.completed.50")),
        "{stderr}"
    );
}

#[tokio::test]
async fn tail_prints_key_headers_and_value() {
    let app = spawn_app().await;
    app.accept_sample("course.completed.50").await;
    let topic = app.config.topic("course.completed.50");
    let config = app.config.path.display().to_string();
    let records = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || read_topic(&topic, 1, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 1);

    let output = tokio::task::spawn_blocking(move || tail_one(&config, &topic))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout.contains("key: student@example.com"), "{stdout}");
    assert!(stdout.contains("ce_type: course.completed.50"), "{stdout}");
    assert!(
        stdout.contains("\"courseId\": \"634fc35ddaf58580e2418c40\""),
        "{stdout}"
    );
}

/// `tail` and `spool status` read only the Kafka and spool settings: an operator runs them on a
/// host where the senders' secrets are not available.
#[tokio::test]
async fn tail_and_spool_status_run_without_the_senders_secrets() {
    let mut app = spawn_app().await;
    app.accept_sample("course.completed.50").await;
    let topic = app.config.topic("course.completed.50");
    app.config
        .set_token_secrets(vec!["env:HOOKRELAY_TEST_NEVER_SET".to_owned()]);
    let config = app.config.path.display().to_string();

    let (check, tail, status) = tokio::task::spawn_blocking(move || {
        (
            hookrelay(&["check-config", "--config", &config], &[]),
            tail_one(&config, &topic),
            hookrelay(&["spool", "status", "--config", &config], &[]),
        )
    })
    .await
    .unwrap();

    // The secret really is missing: the relay itself would not start with this file.
    assert_eq!(check.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("HOOKRELAY_TEST_NEVER_SET"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let stdout = String::from_utf8_lossy(&tail.stdout);
    assert_eq!(
        tail.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    assert!(stdout.contains("key: student@example.com"), "{stdout}");
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(stdout.starts_with("spool:"), "{stdout}");
}
