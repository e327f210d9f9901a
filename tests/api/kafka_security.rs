//! Kafka as managed clusters run it: a SASL_SSL listener (SCRAM-SHA-512 users, a broker
//! certificate from a CA made for the test), and ACLs enforced by KRaft's StandardAuthorizer.
//! The relay gets in only with the right password over TLS it trusts; when either is wrong it
//! says so once, `broker` sources refuse, `spool` sources keep every event until it is fixed; a
//! topic Kafka does not let it write fills the dead-letter topic, not the spool.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hookrelay::settings::AckMode;

use crate::broker::{cluster_id, free_port, node_dir, KafkaNode};
use crate::helpers::{
    read_topic_from, repo_path, spawn_from_config, start_relay_process_logging, stop_relay_process,
    Options, TestConfig, TOKEN,
};

const USER: &str = "relay-writer";
const PASSWORD: &str = "scram-pass-9d41";
const WRONG_PASSWORD: &str = "wrong-pass-77c2";

/// One broker with a PLAINTEXT listener (the test's own, as the ANONYMOUS super user) and a
/// SASL_SSL one (the relay's), shared by the tests of this module.
struct SecureKafka {
    /// PLAINTEXT, for the test: creating ACLs, reading records back.
    plain: String,
    /// SASL_SSL, for the relay.
    secure: String,
    /// `ca.pem` (signed the broker's certificate) and `other-ca.pem` (did not).
    certificates: tempfile::TempDir,
    _node: KafkaNode,
}

fn secure_kafka() -> &'static SecureKafka {
    static KAFKA: OnceLock<SecureKafka> = OnceLock::new();
    KAFKA.get_or_init(|| {
        let certificates = tempfile::tempdir().unwrap();
        let keystore = write_certificates(&certificates);
        let (plain, secure, controller) = (free_port(), free_port(), free_port());
        let properties = [
            format!(
                "listeners=PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{secure},CONTROLLER://127.0.0.1:{controller}"
            ),
            format!("advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{secure}"),
            "sasl.enabled.mechanisms=SCRAM-SHA-512".to_owned(),
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
            "ssl.keystore.type=PEM".to_owned(),
            format!("ssl.keystore.location={}", keystore.display()),
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_owned(),
            // The PLAINTEXT and controller listeners authenticate nobody: the test and the
            // node itself.
            "super.users=User:ANONYMOUS".to_owned(),
        ];
        let mut extra = vec!["--scram".to_owned(), format!("{USER}={PASSWORD}")];
        for property in properties {
            extra.extend(["--set".to_owned(), property]);
        }
        let mut node = KafkaNode::spawn(
            node_dir(),
            1,
            plain,
            controller,
            &format!("1@127.0.0.1:{controller}"),
            &cluster_id(),
            &extra,
        );
        node.wait_ready();
        let plain = node.address.clone();
        // Every test's topics start with "it-" (unique_prefix).
        acl(
            &plain,
            &[
                "--add", "--allow-principal", &format!("User:{USER}"),
                "--operation", "Write", "--operation", "Describe", "--operation", "Create",
                "--operation", "DescribeConfigs",
                "--resource-pattern-type", "prefixed", "--topic", "it-",
            ],
        );
        SecureKafka {
            plain,
            secure: format!("127.0.0.1:{secure}"),
            certificates,
            _node: node,
        }
    })
}

/// A CA, a broker certificate it signs for 127.0.0.1 (the broker's PEM keystore: key and chain),
/// and a second CA that signed nothing; returns the keystore's path.
fn write_certificates(dir: &tempfile::TempDir) -> PathBuf {
    let ca = |name: &str| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    };
    let (trusted, other) = (ca("hookrelay test CA"), ca("another CA"));
    let broker_key = rcgen::KeyPair::generate().unwrap();
    let broker =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&broker_key, &trusted)
            .unwrap();
    std::fs::write(dir.path().join("ca.pem"), trusted.pem()).unwrap();
    std::fs::write(dir.path().join("other-ca.pem"), other.pem()).unwrap();
    let keystore = dir.path().join("broker.pem");
    std::fs::write(
        &keystore,
        format!("{}{}", broker_key.serialize_pem(), broker.pem()),
    )
    .unwrap();
    keystore
}

/// Kafka's own ACL tool, on the PLAINTEXT listener.
fn acl(plain: &str, args: &[&str]) {
    let output = Command::new("bash")
        .arg(repo_path("scripts/kafka-tool"))
        .args([
            "org.apache.kafka.tools.AclCommand",
            "--bootstrap-server",
            plain,
        ])
        .args(args)
        .output()
        .expect("scripts/kafka-tool runs");
    assert!(
        output.status.success(),
        "AclCommand {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A relay on the SASL_SSL listener with `password` (from a file, as a secret reference) and
/// trusting `ca` (`ca.pem` or `other-ca.pem`).
fn secure_config(ack: AckMode, password: &str, ca: &str) -> TestConfig {
    let kafka = secure_kafka();
    let mut config = TestConfig::new(&Options {
        ack,
        ..Options::on(kafka.secure.clone())
    });
    let password_file = config.file("kafka.password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let ca_file = kafka.certificates.path().join(ca);
    for (key, value) in [
        ("security.protocol", "SASL_SSL".to_owned()),
        ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
        ("sasl.username", USER.to_owned()),
        ("sasl.password", format!("file:{}", password_file.display())),
        ("ssl.ca.location", ca_file.display().to_string()),
    ] {
        config.settings.kafka.options.insert(key.to_owned(), value);
    }
    config.save();
    config
}

/// What loading `config` refuses (it must be refused).
fn load_errors(config: &TestConfig) -> String {
    match hookrelay::config::Config::from_settings(config.settings.clone()) {
        Ok(_) => panic!("the configuration is refused at load"),
        Err(errors) => errors.to_string(),
    }
}

async fn read_back(topic: String, count: usize) -> Vec<hookrelay::tail::TailRecord> {
    let plain = secure_kafka().plain.clone();
    tokio::task::spawn_blocking(move || {
        read_topic_from(&plain, &topic, count, Duration::from_secs(20))
    })
    .await
    .unwrap()
}

/// Polls the admin listener's `/readyz` until its JSON mentions `needle`; the last answer.
async fn readyz_naming(admin: &str, needle: &str) -> (u16, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = reqwest::get(format!("{admin}/readyz")).await.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        if body.to_string().contains(needle) || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn sasl_ssl_with_the_right_credentials_delivers() {
    let config = secure_config(AckMode::Broker, PASSWORD, "ca.pem");
    let topic = config.topic("course.completed.50");
    let app = spawn_from_config(config).await;
    let answer: serde_json::Value = app
        .post_unique("course.completed.50")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "accepted", "{answer}");
    let records = read_back(topic, 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].header("ce_id"), answer["id"].as_str());
}

#[tokio::test]
async fn a_literal_kafka_password_is_refused_at_load() {
    let mut config = secure_config(AckMode::Spool, PASSWORD, "ca.pem");
    config
        .settings
        .kafka
        .options
        .insert("sasl.password".to_owned(), PASSWORD.to_owned());
    let errors = load_errors(&config);
    assert!(
        errors.contains("kafka.options.\"sasl.password\""),
        "{errors}"
    );
    assert!(errors.contains("env:NAME or file:/path"), "{errors}");
    assert!(
        !errors.contains(PASSWORD),
        "the password is not repeated: {errors}"
    );
}

/// librdkafka's own messages repeat a refused property's value: a misspelt key holding a
/// password, or a secret for a mechanism this build lacks, is refused at load naming the key
/// only, and never reaches a Kafka client.
#[tokio::test]
async fn a_kafka_property_librdkafka_refuses_is_named_without_its_value() {
    let mut config = secure_config(AckMode::Spool, PASSWORD, "ca.pem");
    let secret_file = config.file("oidc.secret");
    std::fs::write(&secret_file, "oidc-secret-5c2e").unwrap();
    let options = &mut config.settings.kafka.options;
    options.insert("sasl.pasword".to_owned(), PASSWORD.to_owned());
    options.insert(
        "sasl.oauthbearer.client.secret".to_owned(),
        format!("file:{}", secret_file.display()),
    );
    let errors = load_errors(&config);
    assert!(
        errors.contains("kafka.options.\"sasl.pasword\""),
        "{errors}"
    );
    assert!(errors.contains("librdkafka does not accept it"), "{errors}");
    for secret in [PASSWORD, "oidc-secret-5c2e"] {
        assert!(!errors.contains(secret), "{secret} in: {errors}");
    }
}

/// A wrong password in `spool` mode: accepted events wait in the spool, the log names the cause
/// a few times, not at every reconnection, and never the password; fixing the password file
/// takes a restart (a reload lists `kafka.options` as needing one), and then every event waiting
/// is delivered.
#[tokio::test]
async fn a_wrong_password_is_named_the_spool_keeps_every_event_and_a_restart_delivers_them() {
    let mut config = secure_config(AckMode::Spool, WRONG_PASSWORD, "ca.pem");
    let topic = config.topic("course.completed.50");
    let log_path = config.file("relay.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let (mut relay, address) = start_relay_process_logging(&mut config, log).await;
    let admin = format!("http://{}", config.settings.server.admin_listen);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..5 {
        let answer: serde_json::Value = client
            .post(format!("http://{address}/hooks/tagmango/course.completed.50?token={TOKEN}"))
            .header("content-type", "application/json")
            .body(format!(
                "{{\"email\":\"w{n}@example.com\",\"courseId\":\"c\",\"lastProgressOn\":\"2023-11-20T18:30Z\"}}"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer["status"], "accepted",
            "a spool source accepts: {answer}"
        );
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = readyz_naming(&admin, "Authentication failed").await;
    assert_eq!(status, 200, "a spool-only relay stays ready: {body}");
    assert!(
        body["degraded"]
            .to_string()
            .contains("Authentication failed"),
        "/readyz names the cause: {body}"
    );
    // Long enough for librdkafka to reconnect and fail several times.
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop_relay_process(&mut relay);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let naming = text
        .lines()
        .filter(|line| line.contains("Authentication failed"))
        .count();
    assert!(
        (1..=3).contains(&naming),
        "the cause is named, not repeated at every reconnection ({naming} lines):\n{text}"
    );
    assert!(
        !text.contains(WRONG_PASSWORD),
        "no password in the log:\n{text}"
    );

    std::fs::write(config.file("kafka.password"), PASSWORD).unwrap();
    let log = std::fs::File::create(&log_path).unwrap();
    let (mut relay, _) = start_relay_process_logging(&mut config, log).await;
    let records = read_back(topic, ids.len()).await;
    stop_relay_process(&mut relay);
    let mut delivered: Vec<&str> = records.iter().filter_map(|r| r.header("ce_id")).collect();
    delivered.sort_unstable();
    ids.sort_unstable();
    assert_eq!(
        delivered, ids,
        "every event the spool kept is delivered after the restart"
    );
}

#[tokio::test]
async fn a_wrong_password_makes_broker_sources_refuse_with_503_and_readyz_say_why() {
    let app = spawn_from_config(secure_config(AckMode::Broker, WRONG_PASSWORD, "ca.pem")).await;
    let (status, body) = readyz_naming(&app.admin_address, "Authentication failed").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_string().contains("Authentication failed"),
        "/readyz names the cause: {body}"
    );
    let response = app.post_unique("course.completed.50").await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(WRONG_PASSWORD) && !text.contains(USER),
        "{text}"
    );
}

#[tokio::test]
async fn an_untrusted_broker_certificate_is_named_and_spool_sources_keep_accepting() {
    let app = spawn_from_config(secure_config(AckMode::Spool, PASSWORD, "other-ca.pem")).await;
    let (status, body) = readyz_naming(&app.admin_address, "certificate verify failed").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["degraded"]
            .to_string()
            .contains("certificate verify failed"),
        "/readyz names the cause: {body}"
    );
    let answer: serde_json::Value = app
        .post_unique("course.completed.50")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "accepted", "{answer}");
}

/// An ACL that denies the relay writes to one topic: Kafka's TOPIC_AUTHORIZATION_FAILED for
/// real. Its records become dead letters with reason `not_authorized`; the other topics flow.
#[tokio::test]
async fn a_topic_kafka_denies_becomes_dead_letters_while_the_others_flow() {
    let mut config = secure_config(AckMode::Spool, PASSWORD, "ca.pem");
    let dead_topic = format!("{}.dead", config.prefix);
    config.settings.delivery.dead_letter_topic = Some(dead_topic.clone());
    let (denied, allowed) = (
        config.topic("user.deleted"),
        config.topic("course.completed.50"),
    );
    acl(
        &secure_kafka().plain,
        &[
            "--add",
            "--deny-principal",
            &format!("User:{USER}"),
            "--operation",
            "Write",
            "--topic",
            &denied,
        ],
    );
    let app = spawn_from_config(config).await;
    let refused = app.post_sample_json("user.deleted").await;
    assert_eq!(
        refused["status"], "accepted",
        "the spool took it: {refused}"
    );
    let dead = read_back(dead_topic, 1).await;
    assert_eq!(dead.len(), 1, "the denied record is a dead letter");
    assert_eq!(dead[0].header("ce_id"), refused["id"].as_str());
    assert_eq!(
        dead[0].header("hookrelay_dead_reason"),
        Some("not_authorized")
    );
    assert_eq!(
        dead[0].header("hookrelay_dead_topic"),
        Some(denied.as_str())
    );

    let flowing = app.post_sample_json("course.completed.50").await;
    let records = read_back(allowed, 1).await;
    assert_eq!(records.len(), 1, "the other topic flows");
    assert_eq!(records[0].header("ce_id"), flowing["id"].as_str());
}
