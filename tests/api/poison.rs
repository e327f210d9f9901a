//! What Kafka cannot take is refused up front (413), and what it refuses for good later goes to
//! the dead letters instead of blocking every record behind it.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::Value;

use hookrelay::settings::{AckMode, SchemaMode};

use crate::helpers::{
    assert_problem, broker, free_port, read_records, read_topic_from, sample, spawn_from_config,
    use_schemas, Options, TestConfig, TOKEN,
};

/// A course.completed.50 body of exactly `len` bytes (valid for its schema).
fn course_body_of(len: usize, email: &str) -> Vec<u8> {
    let head = format!(
        "{{\"email\":\"{email}\",\"courseId\":\"c1\",\"lastProgressOn\":\"2023-11-20T18:30Z\",\"pad\":\""
    );
    let tail = "\"}";
    assert!(len >= head.len() + tail.len());
    let mut body = head.into_bytes();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// The value of the series of `name` whose labels include every one of `labels` (`key="value"`).
pub fn metric_value(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn bodies_at_and_past_the_limits_of_the_shipped_configuration() {
    let app = spawn_from_config(TestConfig::shipped(&broker().address)).await;
    let url = app.hook_url("course.completed.50");
    let limit = 983_040;

    // At the body limit: accepted, and Kafka has it byte for byte.
    let at_limit = course_body_of(limit, "big@example.com");
    let response = app.post_json(&url, at_limit.clone()).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await.unwrap()
    );
    let records = read_records(
        app.config.topic("course.completed.50"),
        1,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(records.len(), 1);
    assert!(records[0].value == at_limit, "the value is the body");

    // One byte past it: 413 before anything is stored.
    let past = course_body_of(limit + 1, "big@example.com");
    assert_problem(app.post_json(&url, past).await, 413, "payload_too_large").await;

    // Within the body limit, but the record key (the email) makes it too large for Kafka's
    // message.max.bytes: 413 too, never a 200 for a record Kafka cannot take.
    let email = format!("{}@example.com", "e".repeat(400_000));
    let too_large_record = course_body_of(700_000, &email);
    let body = assert_problem(
        app.post_json(&url, too_large_record).await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("1000000"),
        "{body}"
    );

    // The relay goes on.
    app.accept_unique("course.completed.50").await;
}

#[test]
fn check_config_refuses_a_body_limit_kafka_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        r#"
[server]
max_body_bytes = 1048576

[sources.open]
auth = { type = "none" }
max_body_bytes = 2000000
"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("server.max_body_bytes: 1048576 bytes cannot be published"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sources.open.max_body_bytes: 2000000"),
        "{stderr}"
    );
}

/// A spool that holds a record Kafka refuses for good (here: one accepted by an earlier
/// configuration with a larger message.max.bytes) must not wedge: the record goes to the
/// dead-letter directory, everything behind it is delivered, and the operator can read it back.
#[tokio::test]
async fn a_record_kafka_refuses_for_good_does_not_block_the_spool() {
    // An earlier run: records up to 2 MB, Kafka unreachable, so they stay in the spool.
    let config = TestConfig::new(&Options {
        brokers: format!("127.0.0.1:{}", free_port()),
        ack: AckMode::Spool,
        max_body_bytes: 1_500_000,
        create_topics: false,
        shutdown_timeout_ms: 500,
        kafka_options: &[("message.max.bytes", "2000000")],
        ..Options::default()
    });
    let earlier = spawn_from_config(config).await;
    let url = earlier.hook_url("course.completed.50");
    let big = course_body_of(1_200_000, "big@example.com");
    let mut ids = Vec::new();
    for body in [
        sample("course.completed.50"),
        big.clone(),
        course_body_of(500, "after@example.com"),
    ] {
        let response = earlier.post_json(&url, body).await;
        assert_eq!(response.status().as_u16(), 200);
        let answer: Value = response.json().await.unwrap();
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    let mut config = earlier.stop_keeping_config().await;

    // Now with the defaults and a reachable broker.
    config.use_shared_broker();
    config.settings.server.max_body_bytes = 65_536;
    config.settings.kafka.options.clear();
    let path = config.path.clone();
    let topic = config.topic("course.completed.50");
    let app = spawn_from_config(config).await;

    let records = read_records(topic, 2, Duration::from_secs(15)).await;
    let delivered: HashSet<&str> = records
        .iter()
        .filter_map(|record| record.header("ce_id"))
        .collect();
    assert_eq!(
        delivered,
        HashSet::from([ids[0].as_str(), ids[2].as_str()]),
        "the records around it arrive"
    );
    app.accept_unique("course.completed.50").await;

    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "hookrelay_dead_letters_total",
            &["reason=\"record_too_large\"", "source=\"tagmango\""]
        ),
        Some(1.0),
        "{metrics}"
    );

    let hookrelay = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["spool", "dead", "--config"])
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    };
    let list = hookrelay(&["list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{listed}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 1, "{listed}");
    assert!(
        lines[0].contains("record_too_large") && lines[0].contains("1200000 bytes"),
        "{listed}"
    );
    let seq = lines[0].split('\t').next().unwrap().to_owned();
    let show = hookrelay(&["show", &seq]);
    assert!(show.status.success());
    assert!(show.stdout == big, "show prints the body byte for byte");
    assert!(
        String::from_utf8_lossy(&show.stderr).contains(&ids[1]),
        "the headers name its id"
    );
    // Kafka still refuses it: retry keeps it.
    let retry = hookrelay(&["retry", &seq]);
    assert_eq!(
        retry.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    let drop = hookrelay(&["drop", &seq]);
    assert!(drop.status.success());
    assert!(String::from_utf8_lossy(&hookrelay(&["list"]).stdout).is_empty());
}

/// A permanent refusal (injected: the broker calls the record invalid) sends the record to the
/// dead-letter topic with the reason and its intended topic; the records behind it flow.
#[tokio::test]
async fn a_record_refused_for_good_goes_to_the_dead_letter_topic() {
    let cluster = MockCluster::new(1).unwrap();
    let mut config = TestConfig::new(&Options {
        brokers: cluster.bootstrap_servers(),
        ack: AckMode::Spool,
        create_topics: false,
        ..Options::default()
    });
    let dead_topic = format!("{}.dead", config.prefix);
    config.settings.delivery.dead_letter_topic = Some(dead_topic.clone());
    for event in crate::helpers::TAGMANGO_SAMPLES {
        cluster.create_topic(&config.topic(event), 1, 1).unwrap();
    }
    cluster.create_topic(&dead_topic, 1, 1).unwrap();
    let topic = config.topic("course.completed.50");
    let app = spawn_from_config(config).await;
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD],
    );

    let refused = app.post_sample_json("course.completed.50").await;
    let brokers = cluster.bootstrap_servers();
    let dead = tokio::task::spawn_blocking({
        let (brokers, dead_topic) = (brokers.clone(), dead_topic.clone());
        move || read_topic_from(&brokers, &dead_topic, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(
        dead.len(),
        1,
        "the refused record is on the dead-letter topic"
    );
    assert_eq!(dead[0].header("ce_id"), refused["id"].as_str());
    assert_eq!(
        dead[0].header("hookrelay_dead_reason"),
        Some("invalid_record")
    );
    assert_eq!(dead[0].header("hookrelay_dead_topic"), Some(topic.as_str()));
    assert!(dead[0].value == sample("course.completed.50"));

    let next = app.post_unique("course.completed.50").await;
    assert_eq!(next.status().as_u16(), 200);
    let records = tokio::task::spawn_blocking(move || {
        read_topic_from(&brokers, &topic, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let metrics = app.metrics().await;
    assert_eq!(
        records.len(),
        1,
        "the next record reaches its topic: {:?}",
        metrics
            .lines()
            .filter(|line| line.starts_with("hookrelay_kafka")
                || line.starts_with("hookrelay_spool")
                || line.starts_with("hookrelay_forwarder"))
            .collect::<Vec<_>>()
    );
}

/// `dead_letter_refused`: an authentic event the relay refuses is answered 4xx and kept on the
/// dead-letter topic; an unauthenticated one is never kept.
#[tokio::test]
async fn authentic_events_refused_by_their_schema_are_kept_as_dead_letters() {
    let mut config = TestConfig::new(&Options {
        ack: AckMode::Spool,
        ..Options::default()
    });
    let dead_topic = format!("{}.dead", config.prefix);
    config.settings.delivery.dead_letter_topic = Some(dead_topic.clone());
    config.tagmango().dead_letter_refused = true;
    use_schemas(config.tagmango(), SchemaMode::Enforce);
    let app = spawn_from_config(config).await;
    let url = app.hook_url("course.completed.50");

    let no_email = br#"{"courseId":"c1","lastProgressOn":"2023-11-20T18:30Z"}"#.to_vec();
    assert_problem(
        app.post_json(&url, no_email.clone()).await,
        422,
        "schema_violation",
    )
    .await;
    let not_json = b"{\"courseId\": ".to_vec();
    assert_problem(
        app.post_json(&url, not_json.clone()).await,
        400,
        "invalid_json",
    )
    .await;
    let wrong_token = url.replace(TOKEN, "wrong");
    assert_problem(
        app.post_json(&wrong_token, no_email.clone()).await,
        401,
        "invalid_credentials",
    )
    .await;

    let kept = read_records(dead_topic, 3, Duration::from_secs(5)).await;
    assert_eq!(
        kept.len(),
        2,
        "the two authentic refusals, not the unauthenticated one"
    );
    assert!(kept[0].value == no_email);
    assert_eq!(
        kept[0].header("hookrelay_dead_reason"),
        Some("schema_violation")
    );
    assert_eq!(kept[0].header("ce_type"), Some("course.completed.50"));
    assert!(kept[1].value == not_json);
    assert_eq!(
        kept[1].header("hookrelay_dead_reason"),
        Some("invalid_json")
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "hookrelay_dead_letters_total",
            &["reason=\"schema_violation\"", "source=\"tagmango\""]
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// Where the cluster tells a topic's `max.message.bytes` and it is below the producer's limit,
/// the smaller one decides: a record the topic would refuse is refused up front with 413.
#[tokio::test]
async fn a_topic_that_takes_smaller_records_refuses_larger_ones_up_front() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;

    let config = TestConfig::new(&Options {
        ack: AckMode::Spool,
        ..Options::default()
    });
    let topic = config.topic("course.completed.50");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker().address)
        .create()
        .unwrap();
    let small =
        NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "5000");
    let created = admin
        .create_topics([&small], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let app = spawn_from_config(config).await;
    let url = app.hook_url("course.completed.50");

    let body = assert_problem(
        app.post_json(&url, course_body_of(6_000, "s@example.com"))
            .await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("4939"), "{body}");
    let fits = app
        .post_json(&url, course_body_of(3_000, "s@example.com"))
        .await;
    assert_eq!(fits.status().as_u16(), 200);
    let records = read_records(topic, 1, Duration::from_secs(15)).await;
    assert_eq!(records.len(), 1);
}
