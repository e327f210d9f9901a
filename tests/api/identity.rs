//! Event identity with the shipped configuration: two different occurrences of any documented
//! TagMango event are both published, an exact resend is answered "duplicate" and not published.

use std::time::Duration;

use serde_json::{json, Value};

use hookrelay::settings::AckMode;

use crate::helpers::{
    broker, read_records, sample, spawn_app_with, spawn_from_config, Options, PrivateBroker,
    TestConfig, TOKEN,
};

/// Every event TagMango documents, with the sample its body is shaped after and the fields
/// that differ between two occurrences for the same person.
const DOCUMENTED: &[(&str, &str, &[&str])] = &[
    (
        "course.completed.10",
        "course.completed.50",
        &["/lastProgressOn"],
    ),
    (
        "course.completed.50",
        "course.completed.50",
        &["/lastProgressOn"],
    ),
    (
        "course.completed.100",
        "course.completed.50",
        &["/lastProgressOn"],
    ),
    (
        "course.completed.all",
        "course.completed.50",
        &["/lastProgressOn"],
    ),
    ("course.completed", "course.completed.50", &["/courseId"]),
    (
        "order.created.completed",
        "order.created.completed",
        &["/orderId", "/id"],
    ),
    (
        "order.created.initiated",
        "order.created.completed",
        &["/orderId", "/id"],
    ),
    (
        "order.created.failed",
        "order.created.completed",
        &["/orderId", "/id"],
    ),
    (
        "order.recurring.created",
        "order.recurring.created",
        &["/orderId", "/id"],
    ),
    (
        "subscription.expired",
        "subscription.expired",
        &["/lastPurchaseDate"],
    ),
    ("user.deleted", "user.deleted", &["/_id"]),
    ("webinar.created.single", "", &["/webinarId"]),
    ("webinar.created.recurring", "", &["/webinarFromTime"]),
    (
        "webinar.reminder.all",
        "webinar.reminder.15min",
        &["/webinarFromTime"],
    ),
    (
        "webinar.reminder.15min",
        "webinar.reminder.15min",
        &["/webinarFromTime"],
    ),
    (
        "webinar.reminder.1day",
        "webinar.reminder.15min",
        &["/webinarFromTime"],
    ),
    (
        "webinar.completed.all",
        "webinar.completed.all",
        &["/webinarId"],
    ),
];

/// A webinar.created body (TagMango documents no example).
fn webinar_created() -> Value {
    json!({
        "webinar": "Live Q&A",
        "webinarId": "65a1b2c3d4e5f6a7b8c9d0e1",
        "webinarLink": "https://example.com/live",
        "timezone": "Asia/Kolkata",
        "webinarFromTime": "2025-02-03T12:30:00.000Z",
        "webinarToTime": "2025-02-03T13:30:00.000Z",
    })
}

/// Another occurrence: the same person, other values in `fields`.
fn other_occurrence(mut body: Value, fields: &[&str]) -> Value {
    for field in fields {
        let value = body.pointer_mut(field).unwrap_or_else(|| panic!("{field}"));
        *value = match value {
            Value::String(text) if text.contains('T') && text.starts_with("20") => {
                Value::String(text.replacen("20", "21", 1))
            }
            Value::String(text) => Value::String(format!("{text}-2")),
            Value::Number(number) => json!(number.as_f64().unwrap() + 1.0),
            other => panic!("{field} is {other}"),
        };
    }
    body
}

async fn post(app: &crate::helpers::TestApp, event: &str, body: &[u8]) -> Value {
    let response = app.post_json(&app.hook_url(event), body.to_vec()).await;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 200, "{event}: {answer}");
    answer
}

#[tokio::test]
async fn every_documented_tagmango_event_tells_occurrences_apart_and_spots_resends() {
    let app = spawn_from_config(TestConfig::shipped(&broker().address)).await;
    let mut expected = Vec::new();
    for &(event, shaped_after, fields) in DOCUMENTED {
        let first: Value = if shaped_after.is_empty() {
            webinar_created()
        } else {
            serde_json::from_slice(&sample(shaped_after)).unwrap()
        };
        let second = other_occurrence(first.clone(), fields);
        assert_eq!(first["email"], second["email"], "same person");
        let first = serde_json::to_vec(&first).unwrap();
        let second = serde_json::to_vec(&second).unwrap();

        let one = post(&app, event, &first).await;
        let two = post(&app, event, &second).await;
        let again = post(&app, event, &first).await;

        assert_eq!(one["status"], "accepted", "{event}: {one}");
        assert_eq!(
            two["status"], "accepted",
            "{event}: a second occurrence: {two}"
        );
        assert_ne!(one["id"], two["id"], "{event}");
        assert_eq!(again["id"], one["id"], "{event}");
        let mut ids = vec![
            one["id"].as_str().unwrap().to_owned(),
            two["id"].as_str().unwrap().to_owned(),
        ];
        if event == "course.completed.all" || event == "course.completed" {
            // No window (two milestones within one minute are byte for byte the same): an exact
            // resend is published again, with the same id.
            assert_eq!(again["status"], "accepted", "{event}: {again}");
            ids.push(ids[0].clone());
        } else {
            assert_eq!(
                again["status"], "duplicate",
                "{event}: an exact resend: {again}"
            );
        }
        expected.push((app.config.topic(event), ids));
    }

    // Two failed payment attempts of one order within the same minute (same orderId and
    // orderTime, another attempt id and amount) are two events.
    let mut attempt: Value = serde_json::from_slice(&sample("order.created.completed")).unwrap();
    attempt["orderId"] = json!("order_attempts");
    let retried = other_occurrence(attempt.clone(), &["/id", "/amountPayable"]);
    for body in [attempt, retried] {
        let answer = post(
            &app,
            "order.created.failed",
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(
            answer["status"], "accepted",
            "a second failed attempt: {answer}"
        );
        let failed = expected
            .iter_mut()
            .find(|(topic, _)| topic.ends_with(".order.created.failed"))
            .unwrap();
        failed.1.push(answer["id"].as_str().unwrap().to_owned());
    }

    // Every occurrence of every event is in Kafka, the resends answered "duplicate" are not.
    let reads = expected
        .iter()
        .map(|(topic, ids)| read_records(topic.clone(), ids.len() + 1, Duration::from_secs(3)));
    let records = futures_util::future::join_all(reads).await;
    for ((topic, ids), records) in expected.iter().zip(records) {
        let mut got: Vec<String> = records
            .iter()
            .map(|record| record.header("ce_id").unwrap().to_owned())
            .collect();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want, "{topic}");
    }
}

#[tokio::test]
async fn the_shipped_configuration_has_no_identity_warnings() {
    let config = TestConfig::shipped(&broker().address);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check-config", "--config"])
        .arg(&config.path)
        .output()
        .expect("check-config runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("warning"), "{stdout}");
}

#[test]
fn check_config_warns_when_a_sample_lacks_an_identity_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    let text = format!(
        r#"
[sources.tagmango]
events = ["course.completed.50", "order.created.completed"]
auth = {{ type = "token", in = "query", name = "token", secrets = ["env:HOOKRELAY_IDENTITY_TOKEN"] }}
idempotency = {{ fields = ["/courseId", "/email", "/lastProgressOn"] }}
samples = "{}/samples/{{source}}/{{event}}.json"
"#,
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("HOOKRELAY_IDENTITY_TOKEN", TOKEN)
        .output()
        .expect("check-config runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "a warning is not an error: {stdout}"
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("warning"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stdout}");
    for field in ["/courseId", "/lastProgressOn"] {
        assert!(
            warnings
                .iter()
                .any(|line| line.contains("order.created.completed") && line.contains(field)),
            "{stdout}"
        );
    }
}

/// Memory mode: a record Kafka never acknowledged must not make its resend a "duplicate".
#[tokio::test]
async fn memory_mode_remembers_an_id_only_once_kafka_has_the_record() {
    let broker = PrivateBroker::start();
    let app = spawn_app_with(Options {
        ack: AckMode::Memory,
        kafka_options: &[("message.timeout.ms", "1500")],
        ..Options {
            brokers: broker.address.clone(),
            ..Options::default()
        }
    })
    .await;
    let body = sample("course.completed.50");
    let url = app.hook_url("course.completed.50");

    broker.pause();
    let lost = post(&app, "course.completed.50", &body).await;
    assert_eq!(lost["status"], "accepted");
    // librdkafka gives the record up after message.timeout.ms.
    tokio::time::sleep(Duration::from_secs(4)).await;
    broker.resume();

    // The resend is published (a 503 while the relay sees Kafka again is retried).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let resent = loop {
        let response = app.post_json(&url, body.clone()).await;
        if response.status().as_u16() == 200 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(resent["status"], "accepted", "{resent}");
    assert_eq!(resent["id"], lost["id"]);
    let records = crate::helpers::read_topic_from_async(
        broker.address.clone(),
        app.config.topic("course.completed.50"),
    )
    .await;
    assert_eq!(records.len(), 1, "the resend is in Kafka");

    // Once Kafka has acknowledged it (the report comes a moment after the 200), a resend is a
    // duplicate.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let again = post(&app, "course.completed.50", &body).await;
        if again["status"] == "duplicate" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never a duplicate: {again}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Some TagMango events fire several times with the same body (webinar.reminder.all 1 day, 30
/// and 15 minutes before a session; course.completed.all at each milestone; webinar.completed.all
/// once per session of a recurring webinar): their windows must be shorter than the time between
/// two of them, or the later ones are answered "duplicate" and lost.
#[test]
fn the_shipped_windows_are_shorter_than_the_period_of_same_body_events() {
    let config = TestConfig::shipped(&broker().address);
    let loaded =
        hookrelay::config::Config::load(&config.path).unwrap_or_else(|error| panic!("{error}"));
    let tagmango = loaded
        .sources
        .iter()
        .find(|source| source.name.as_str() == "tagmango")
        .unwrap();
    let ttl =
        |event: &str| tagmango.dedup_ttl(&hookrelay::source::EventType::parse(event).unwrap());
    assert!(ttl("webinar.reminder.all") < Duration::from_secs(15 * 60));
    assert!(ttl("webinar.completed.all") < Duration::from_secs(30 * 60));
    assert_eq!(ttl("course.completed.all"), Duration::ZERO);
    assert_eq!(ttl("course.completed"), Duration::ZERO);
    // Events that fire once per occurrence keep the day-long window.
    for event in [
        "webinar.reminder.15min",
        "course.completed.50",
        "order.created.failed",
    ] {
        assert_eq!(ttl(event), Duration::from_secs(86_400), "{event}");
    }
}
