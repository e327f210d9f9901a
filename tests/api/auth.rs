//! Every auth type against a running relay: a request signed the way the sender's documentation
//! describes is published; tampered, truncated, stale or foreign-signed requests are refused with
//! their problem code. Signatures here are computed from the documented algorithms, not with the
//! relay's code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{KeyInit, Mac};

use hookrelay::settings::{
    default_tolerance_secs, AuthSettings, BasicAuthSettings, HmacAuthSettings, PresetAuthSettings,
    SourceSettings,
};

use crate::helpers::{
    assert_problem, read_records, spawn_from_config, unique_prefix, Options, TestApp, TestConfig,
};

const OLD_SECRET: &str = "old-signing-secret";
pub const NEW_SECRET: &str = "new-signing-secret";
/// Standard Webhooks secrets: `whsec_` + base64 of the key.
const OLD_WHSEC: &str = "whsec_b2xkLXN0YW5kYXJkLWtleQ==";
pub const NEW_WHSEC: &str = "whsec_bmV3LXN0YW5kYXJkLWtleQ==";
const BASIC_USER: &str = "relay";
const BODY: &[u8] =
    br#"{"id":"evt_1","type":"invoice.paid","event_id":"Ev1","event":{"type":"app_mention"}}"#;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha512(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The senders under test, each a source of one relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Github,
    Shopify,
    Slack,
    Stripe,
    StandardWebhooks,
    /// `type = "hmac"`: SHA-512, base64, prefix `sig=`, `{timestamp}.{body}`.
    Hmac,
}

pub const SENDERS: &[Sender] = &[
    Sender::Github,
    Sender::Shopify,
    Sender::Slack,
    Sender::Stripe,
    Sender::StandardWebhooks,
    Sender::Hmac,
];

impl Sender {
    pub fn source(self) -> &'static str {
        match self {
            Sender::Github => "github",
            Sender::Shopify => "shopify",
            Sender::Slack => "slack",
            Sender::Stripe => "stripe",
            Sender::StandardWebhooks => "standard",
            Sender::Hmac => "generic",
        }
    }

    fn auth(self, dir: &std::path::Path) -> AuthSettings {
        let (old, new) = match self {
            Sender::StandardWebhooks => (OLD_WHSEC, NEW_WHSEC),
            _ => (OLD_SECRET, NEW_SECRET),
        };
        let secrets = vec![
            secret_file(dir, &format!("{}-old", self.source()), old),
            secret_file(dir, &format!("{}-new", self.source()), new),
        ];
        let preset = PresetAuthSettings {
            secrets: secrets.clone(),
            tolerance_secs: default_tolerance_secs(),
        };
        match self {
            Sender::Github => AuthSettings::Github(preset),
            Sender::Shopify => AuthSettings::Shopify(preset),
            Sender::Slack => AuthSettings::Slack(preset),
            Sender::Stripe => AuthSettings::Stripe(preset),
            Sender::StandardWebhooks => AuthSettings::StandardWebhooks(preset),
            Sender::Hmac => AuthSettings::Hmac(HmacAuthSettings {
                header: "x-signature".to_owned(),
                algorithm: "sha512".to_owned(),
                encoding: "base64".to_owned(),
                prefix: "sig=".to_owned(),
                signed: "{timestamp}.{body}".to_owned(),
                timestamp_header: Some("x-timestamp".to_owned()),
                tolerance_secs: default_tolerance_secs(),
                secrets,
            }),
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Sender::Github => "hmac-github",
            Sender::Shopify => "hmac-shopify",
            Sender::Slack => "hmac-slack",
            Sender::Stripe => "hmac-stripe",
            Sender::StandardWebhooks => "standard-webhooks",
            Sender::Hmac => "hmac",
        }
    }

    /// The source of this sender: its auth and what its test requests need besides.
    fn settings(self, dir: &std::path::Path, prefix: &str) -> SourceSettings {
        let mut source = SourceSettings::new(self.auth(dir));
        source.topic = format!("{prefix}.{{source}}");
        match self {
            Sender::Github => {
                source.forward_headers = vec!["X-GitHub-Event".to_owned(), "x-trace-id".to_owned()]
            }
            Sender::Hmac => {
                source.event_from = Some("/type".to_owned());
                source.event_id_from = Some("header:x-trace-id".to_owned());
            }
            _ => {}
        }
        source
    }

    /// The `ce_id` and `ce_type` each sender's test request gets (see [`BODY`]).
    fn expected_metadata(self) -> (&'static str, &'static str) {
        match self {
            Sender::Github => ("msg_2mK1", "push"),
            Sender::Shopify => ("msg_2mK1", "orders.create"),
            Sender::Slack => ("Ev1", "app_mention"),
            Sender::Stripe => ("evt_1", "invoice.paid"),
            Sender::StandardWebhooks => ("msg_2mK1", "standard.webhook"),
            Sender::Hmac => ("trace-42", "invoice.paid"),
        }
    }

    fn signs_timestamp(self) -> bool {
        !matches!(self, Sender::Github | Sender::Shopify)
    }

    fn secret(self, new: bool) -> Vec<u8> {
        match (self, new) {
            (Sender::StandardWebhooks, false) => whsec_key(OLD_WHSEC),
            (Sender::StandardWebhooks, true) => whsec_key(NEW_WHSEC),
            (_, false) => OLD_SECRET.as_bytes().to_vec(),
            (_, true) => NEW_SECRET.as_bytes().to_vec(),
        }
    }

    /// The raw signature bytes, as each sender's documentation computes them.
    fn signature(self, key: &[u8], body: &[u8], timestamp: i64, id: &str) -> Vec<u8> {
        let message = match self {
            Sender::Github | Sender::Shopify => body.to_vec(),
            Sender::Slack => [format!("v0:{timestamp}:").as_bytes(), body].concat(),
            Sender::Stripe | Sender::Hmac => [format!("{timestamp}.").as_bytes(), body].concat(),
            Sender::StandardWebhooks => [format!("{id}.{timestamp}.").as_bytes(), body].concat(),
        };
        match self {
            Sender::Hmac => hmac_sha512(key, &message),
            _ => hmac_sha256(key, &message),
        }
    }

    /// The signature header's value for these raw signatures (several for rotation lists).
    fn render(self, signatures: &[String], timestamp: i64) -> String {
        match self {
            Sender::Github => format!("sha256={}", signatures[0]),
            Sender::Shopify => signatures[0].clone(),
            Sender::Slack => format!("v0={}", signatures[0]),
            Sender::Hmac => format!("sig={}", signatures[0]),
            Sender::Stripe => {
                let list: Vec<String> = signatures.iter().map(|s| format!("v1={s}")).collect();
                format!("t={timestamp},{}", list.join(","))
            }
            Sender::StandardWebhooks => {
                let list: Vec<String> = signatures.iter().map(|s| format!("v1,{s}")).collect();
                list.join(" ")
            }
        }
    }

    fn encode(self, signature: &[u8]) -> String {
        match self {
            Sender::Github | Sender::Slack | Sender::Stripe => hex::encode(signature),
            Sender::Shopify | Sender::StandardWebhooks | Sender::Hmac => b64(signature),
        }
    }

    fn signature_header(self) -> &'static str {
        match self {
            Sender::Github => "x-hub-signature-256",
            Sender::Shopify => "x-shopify-hmac-sha256",
            Sender::Slack => "x-slack-signature",
            Sender::Stripe => "stripe-signature",
            Sender::StandardWebhooks => "webhook-signature",
            Sender::Hmac => "x-signature",
        }
    }

    /// Headers of a correctly signed request with the given key(s).
    pub fn headers_with(
        self,
        keys: &[&[u8]],
        body: &[u8],
        timestamp: i64,
        id: &str,
    ) -> Vec<(String, String)> {
        let signatures: Vec<String> = keys
            .iter()
            .map(|key| self.encode(&self.signature(key, body, timestamp, id)))
            .collect();
        let mut headers = vec![(
            self.signature_header().to_owned(),
            self.render(&signatures, timestamp),
        )];
        match self {
            Sender::Slack => {
                headers.push(("x-slack-request-timestamp".into(), timestamp.to_string()))
            }
            Sender::Hmac => headers.push(("x-timestamp".into(), timestamp.to_string())),
            Sender::StandardWebhooks => {
                headers.push(("webhook-id".into(), id.to_owned()));
                headers.push(("webhook-timestamp".into(), timestamp.to_string()));
            }
            Sender::Github => {
                headers.push(("x-github-delivery".into(), id.to_owned()));
                headers.push(("x-github-event".into(), "push".to_owned()));
            }
            Sender::Shopify => {
                headers.push(("x-shopify-event-id".into(), id.to_owned()));
                headers.push(("x-shopify-topic".into(), "orders/create".to_owned()));
            }
            Sender::Stripe => {}
        }
        headers
    }

    pub fn headers(self, body: &[u8], timestamp: i64) -> Vec<(String, String)> {
        self.headers_with(&[&self.secret(true)], body, timestamp, "msg_2mK1")
    }
}

fn whsec_key(secret: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap()
}

fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    format!("file:{}", path.display())
}

/// A relay with one source per sender (plus `basic`), each publishing to `{prefix}.{source}`.
pub struct SignedRelay {
    pub app: TestApp,
    pub prefix: String,
    _secrets: tempfile::TempDir,
}

pub async fn spawn_signed_relay() -> SignedRelay {
    spawn_signed_relay_with(|_| {}).await
}

/// [`spawn_signed_relay`] with `edit` applied to each source.
pub async fn spawn_signed_relay_with(edit: impl Fn(&mut SourceSettings)) -> SignedRelay {
    let secrets = tempfile::tempdir().unwrap();
    let prefix = unique_prefix();
    let config = signed_relay_config(secrets.path(), &prefix, edit);
    let app = spawn_from_config(config).await;
    SignedRelay {
        app,
        prefix,
        _secrets: secrets,
    }
}

/// The TagMango source, one source per sender and `basic`, their secrets in `dir`.
fn signed_relay_config(
    dir: &std::path::Path,
    prefix: &str,
    edit: impl Fn(&mut SourceSettings),
) -> TestConfig {
    let mut config = TestConfig::new(&Options::default());
    let mut sources = Vec::new();
    for sender in SENDERS {
        sources.push((sender.source(), sender.settings(dir, prefix)));
    }
    let mut basic = SourceSettings::new(AuthSettings::Basic(BasicAuthSettings {
        user: BASIC_USER.to_owned(),
        secrets: vec![
            secret_file(dir, "basic-old", OLD_SECRET),
            secret_file(dir, "basic-new", NEW_SECRET),
        ],
    }));
    basic.topic = format!("{prefix}.{{source}}");
    sources.push(("basic", basic));
    for (name, mut source) in sources {
        edit(&mut source);
        config.settings.sources.insert(name.to_owned(), source);
    }
    config
}

/// Every auth scheme, and the other settings tests write, come back unchanged from the file the
/// tests write for reloads and the CLI; so does the shipped configuration as tests adapt it.
#[test]
fn the_settings_tests_write_load_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = signed_relay_config(dir.path(), "it-round-trip", |source| {
        source.rate_limit = Some(hookrelay::settings::RateLimitSettings {
            per_second: 3,
            burst: None,
        });
        source.allow_ips = Some(vec!["10.0.0.0/8".to_owned()]);
        source.ack = Some(hookrelay::settings::AckMode::Memory);
    });
    config.settings.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
    config.settings.server.tls = Some(hookrelay::settings::TlsSettings {
        cert: "file:/etc/hookrelay/cert.pem".to_owned(),
        key: "file:/etc/hookrelay/key.pem".to_owned(),
    });
    config.settings.server.body_timeout_ms = Duration::from_millis(1_234);
    config.settings.delivery.dead_letter_topic = Some("it-round-trip.dead".to_owned());
    config
        .settings
        .kafka
        .options
        .insert("message.timeout.ms".to_owned(), "2000".to_owned());
    config.assert_file_round_trips();
    TestConfig::shipped("127.0.0.1:9092").assert_file_round_trips();
}

impl SignedRelay {
    pub fn url(&self, source: &str) -> String {
        format!("{}/hooks/{source}", self.app.address)
    }

    pub fn topic(&self, source: &str) -> String {
        format!("{}.{source}", self.prefix)
    }

    pub async fn post(
        &self,
        source: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .post(self.url(source))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send().await.unwrap()
    }
}

fn replace_header(headers: &mut [(String, String)], name: &str, value: String) {
    for header in headers.iter_mut() {
        if header.0 == name {
            header.1 = value.clone();
        }
    }
}

#[tokio::test]
async fn each_sender_signed_as_documented_is_published_with_its_auth_method() {
    let relay = spawn_signed_relay().await;
    for sender in SENDERS {
        let response = relay
            .post(sender.source(), &sender.headers(BODY, now()), BODY)
            .await;
        assert_eq!(response.status().as_u16(), 200, "{sender:?}");
        let topic = relay.topic(sender.source());
        let records = read_records(topic, 1, Duration::from_secs(10)).await;
        assert_eq!(records.len(), 1, "{sender:?}");
        assert_eq!(records[0].value, BODY, "{sender:?}");
        assert_eq!(
            records[0].header("hookrelay_auth"),
            Some(sender.method()),
            "{sender:?}"
        );
        let metadata = [
            "x-github-event",
            "x-github-delivery",
            "x-shopify-event-id",
            "x-shopify-topic",
            "webhook-id",
        ];
        let signature_headers = sender.headers(BODY, now());
        let signature_headers = signature_headers
            .iter()
            .map(|(name, _)| name)
            .filter(|name| !metadata.contains(&name.as_str()));
        for name in signature_headers {
            assert!(
                records[0].header(&format!("http_{name}")).is_none()
                    && records[0].header(name).is_none(),
                "{sender:?}: {name} is never forwarded"
            );
        }
    }
}

#[tokio::test]
async fn a_changed_body_byte_is_refused_as_invalid_signature() {
    let relay = spawn_signed_relay().await;
    for sender in SENDERS {
        let headers = sender.headers(BODY, now());
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 0x01;
        let response = relay.post(sender.source(), &headers, &tampered).await;
        let body = assert_problem(response, 401, "invalid_signature").await;
        assert!(!body.to_string().contains(&headers[0].1), "{sender:?}");
    }
}

#[tokio::test]
async fn truncated_emptied_overlong_or_misencoded_signatures_are_refused() {
    let relay = spawn_signed_relay().await;
    for sender in SENDERS {
        let good = sender.headers(BODY, now());
        let value = good[0].1.clone();
        let mutations = [
            value[..value.len() - 2].to_owned(),
            format!("{value}00"),
            // A character outside every encoding's alphabet inside the signature (replacing only
            // lowercase hex letters left a base64 signature without any unchanged: flaky).
            {
                let mut misencoded = value.clone();
                let at = value.len() - 5;
                misencoded.replace_range(at..at + 1, "!");
                misencoded
            },
            match sender {
                Sender::Github => "sha256=".to_owned(),
                Sender::Shopify => "=".to_owned(),
                Sender::Slack => "v0=".to_owned(),
                Sender::Hmac => "sig=".to_owned(),
                Sender::Stripe => format!("t={},v1=", now()),
                Sender::StandardWebhooks => "v1,".to_owned(),
            },
        ];
        for mutated in mutations {
            let mut headers = good.clone();
            replace_header(&mut headers, sender.signature_header(), mutated.clone());
            let response = relay.post(sender.source(), &headers, BODY).await;
            assert_eq!(response.status().as_u16(), 401, "{sender:?} {mutated}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["code"], "invalid_signature", "{sender:?} {mutated}");
        }
        let without: Vec<_> = good
            .iter()
            .filter(|(name, _)| name != sender.signature_header())
            .cloned()
            .collect();
        let response = relay.post(sender.source(), &without, BODY).await;
        assert_problem(response, 401, "missing_signature").await;
    }
}

#[tokio::test]
async fn an_unknown_signature_version_is_refused() {
    let relay = spawn_signed_relay().await;
    for sender in SENDERS {
        let good = sender.headers(BODY, now());
        let value = &good[0].1;
        let foreign = match sender {
            Sender::Github => value.replacen("sha256=", "sha1=", 1),
            Sender::Shopify => continue,
            Sender::Slack => value.replacen("v0=", "v1=", 1),
            Sender::Hmac => value.replacen("sig=", "sag=", 1),
            Sender::Stripe => value.replacen("v1=", "v0=", 1),
            Sender::StandardWebhooks => value.replacen("v1,", "v2,", 1),
        };
        let mut headers = good.clone();
        replace_header(&mut headers, sender.signature_header(), foreign);
        let response = relay.post(sender.source(), &headers, BODY).await;
        assert_problem(response, 401, "invalid_signature").await;
    }
}

#[tokio::test]
async fn timestamps_301_seconds_old_or_ahead_are_stale() {
    let relay = spawn_signed_relay().await;
    for sender in SENDERS.iter().filter(|sender| sender.signs_timestamp()) {
        for offset in [-301, 301] {
            let headers = sender.headers(BODY, now() + offset);
            let response = relay.post(sender.source(), &headers, BODY).await;
            assert_problem(response, 401, "stale_timestamp").await;
        }
        let headers = sender.headers(BODY, now() - 250);
        let response = relay.post(sender.source(), &headers, BODY).await;
        assert_eq!(
            response.status().as_u16(),
            200,
            "{sender:?} within tolerance"
        );
    }
}

#[tokio::test]
async fn either_configured_secret_is_accepted_during_a_rotation() {
    let relay = spawn_signed_relay().await;
    for sender in SENDERS {
        for new in [false, true] {
            let headers = sender.headers_with(&[&sender.secret(new)], BODY, now(), "msg_rot");
            let response = relay.post(sender.source(), &headers, BODY).await;
            assert_eq!(response.status().as_u16(), 200, "{sender:?} new={new}");
        }
        let headers = sender.headers_with(&[b"unknown-secret"], BODY, now(), "msg_rot");
        let response = relay.post(sender.source(), &headers, BODY).await;
        assert_problem(response, 401, "invalid_signature").await;
    }
}

#[tokio::test]
async fn a_header_listing_an_unknown_and_a_configured_signature_passes() {
    let relay = spawn_signed_relay().await;
    for sender in [Sender::Stripe, Sender::StandardWebhooks] {
        for configured in [sender.secret(false), sender.secret(true)] {
            let headers =
                sender.headers_with(&[b"retired-secret", &configured], BODY, now(), "msg_roll");
            let response = relay.post(sender.source(), &headers, BODY).await;
            assert_eq!(response.status().as_u16(), 200, "{sender:?}");
        }
    }
}

#[tokio::test]
async fn basic_auth_accepts_either_password_and_refuses_others() {
    let relay = spawn_signed_relay().await;
    let basic = |user: &str, password: &str| {
        vec![(
            "authorization".to_owned(),
            format!("Basic {}", b64(format!("{user}:{password}").as_bytes())),
        )]
    };
    for password in [OLD_SECRET, NEW_SECRET] {
        let response = relay
            .post("basic", &basic(BASIC_USER, password), BODY)
            .await;
        assert_eq!(response.status().as_u16(), 200);
    }
    let wrong = relay.post("basic", &basic(BASIC_USER, "nope"), BODY).await;
    assert_problem(wrong, 401, "invalid_credentials").await;
    let other_user = relay.post("basic", &basic("admin", OLD_SECRET), BODY).await;
    assert_problem(other_user, 401, "invalid_credentials").await;
    let garbled = vec![("authorization".to_owned(), "Basic !!!".to_owned())];
    assert_problem(
        relay.post("basic", &garbled, BODY).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_problem(
        relay.post("basic", &[], BODY).await,
        401,
        "missing_credentials",
    )
    .await;
    let topic = relay.topic("basic");
    let records = read_records(topic, 2, Duration::from_secs(10)).await;
    assert_eq!(records[0].header("hookrelay_auth"), Some("basic"));
}

#[tokio::test]
async fn each_sender_s_own_event_id_and_type_reach_the_record() {
    let relay = spawn_signed_relay().await;
    for sender in SENDERS {
        let mut headers = sender.headers(BODY, now());
        headers.push(("x-trace-id".to_owned(), "trace-42".to_owned()));
        let response = relay.post(sender.source(), &headers, BODY).await;
        assert_eq!(response.status().as_u16(), 200, "{sender:?}");
        let answer: serde_json::Value = response.json().await.unwrap();
        let (id, event) = sender.expected_metadata();
        assert_eq!(answer["id"], id, "{sender:?}");
        let topic = relay.topic(sender.source());
        let records = read_records(topic, 1, Duration::from_secs(10)).await;
        let record = &records[0];
        assert_eq!(record.header("ce_id"), Some(id), "{sender:?}");
        assert_eq!(record.header("ce_type"), Some(event), "{sender:?}");
        if *sender == Sender::Github {
            assert_eq!(record.header("http_x-github-event"), Some("push"));
            assert_eq!(record.header("http_x-trace-id"), Some("trace-42"));
        } else {
            assert_eq!(record.header("http_x-trace-id"), None, "{sender:?}");
        }
    }
}

#[tokio::test]
async fn an_overlong_sender_event_type_is_refused_with_400() {
    let relay = spawn_signed_relay().await;
    let body = format!(r#"{{"type":"{}"}}"#, "x".repeat(300)).into_bytes();
    let headers = Sender::Stripe.headers(&body, now());
    let response = relay.post("stripe", &headers, &body).await;
    assert_problem(response, 400, "invalid_event_type").await;
}

/// Splits a POSIX shell command line of plain words and single-quoted strings.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match (quoted, c) {
            (true, '\'') => quoted = false,
            (true, c) => word.push(c),
            (false, '\'') => {
                quoted = true;
                in_word = true;
            }
            (false, '\\') => {}
            (false, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (false, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[tokio::test]
async fn the_command_printed_by_sign_is_accepted_for_every_auth_type() {
    let relay = spawn_signed_relay().await;
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body.json");
    std::fs::write(&body_path, crate::helpers::sample("course.completed.50")).unwrap();
    let mut targets: Vec<(&str, Option<&str>)> = SENDERS
        .iter()
        .map(|sender| (sender.source(), None))
        .collect();
    targets.push(("basic", None));
    targets.push(("tagmango", Some("course.completed.50")));
    for (source, event) in targets {
        let config = relay.app.config.path.display().to_string();
        let mut args = vec![
            "sign",
            "--config",
            &config,
            "--source",
            source,
            "--body",
            body_path.to_str().unwrap(),
            "--url",
            &relay.app.address,
        ];
        if let Some(event) = event {
            args.extend(["--event", event]);
        }
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{source}");
        let words = shell_words(&String::from_utf8(output.stdout).unwrap());
        assert_eq!(&words[..3], ["curl", "-sS", "-X"], "{source}");
        let mut request = relay.app.client.post(&words[4]);
        let mut rest = words[5..].iter();
        while let Some(flag) = rest.next() {
            let value = rest.next().unwrap();
            match flag.as_str() {
                "-H" => {
                    let (name, value) = value.split_once(": ").unwrap();
                    request = request.header(name, value);
                }
                "--data-binary" => {
                    let path = value.strip_prefix('@').unwrap();
                    request = request.body(std::fs::read(path).unwrap());
                }
                other => panic!("unexpected curl flag {other}"),
            }
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{source}");
    }
}
