//! A webhook in, its raw bytes in Kafka.

use std::time::Duration;

use crate::helpers::{read_records, sample, spawn_app, TAGMANGO_SAMPLES};

#[tokio::test]
async fn seed_payload_is_published_byte_for_byte_with_cloudevents_headers() {
    let app = spawn_app().await;

    let response = app.post_sample("course.completed.50").await;

    assert_eq!(response.status().as_u16(), 200);
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("request id echoed")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!request_id.is_empty());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    let id = body["id"].as_str().expect("id").to_owned();
    let topic = app.config.topic("course.completed.50");
    assert_eq!(body["topic"], topic.as_str());
    assert_eq!(body["partition"], 0);

    let records = read_records(topic, 1, Duration::from_secs(10)).await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.value, sample("course.completed.50"));
    assert_eq!(record.key.as_deref(), Some(&b"student@example.com"[..]));
    assert_eq!(record.offset, body["offset"].as_i64().unwrap());
    assert_eq!(record.header("ce_specversion"), Some("1.0"));
    assert_eq!(record.header("ce_id"), Some(id.as_str()));
    assert_eq!(record.header("ce_source"), Some("/sources/tagmango"));
    assert_eq!(record.header("ce_type"), Some("course.completed.50"));
    assert_eq!(record.header("content-type"), Some("application/json"));
    assert_eq!(record.header("hookrelay_auth"), Some("token"));
    let time = record.header("ce_time").expect("ce_time");
    let parsed = humantime::parse_rfc3339(time).expect("ce_time is RFC 3339");
    let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
    assert!(
        age < Duration::from_secs(60),
        "ce_time {time} is the receive time"
    );
    assert!(time.ends_with('Z'), "ce_time {time} is UTC");
}

#[tokio::test]
async fn posting_the_same_event_again_gives_the_same_id() {
    let app = spawn_app().await;

    let first: serde_json::Value = app.post_sample_json("course.completed.50").await;
    let second: serde_json::Value = app.post_sample_json("course.completed.50").await;

    assert_eq!(first["id"], second["id"]);
    // A different milestone of the same course progress is a different event.
    let other: serde_json::Value = app
        .post_json(
            &app.hook_url("course.completed.10"),
            sample("course.completed.50"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(first["id"], other["id"]);
}

#[tokio::test]
async fn every_tagmango_sample_is_accepted_and_arrives_byte_exact() {
    let app = spawn_app().await;

    for event in TAGMANGO_SAMPLES {
        let response = app.post_sample(event).await;
        assert_eq!(response.status().as_u16(), 200, "{event}");
        let body: serde_json::Value = response.json().await.unwrap();
        let topic = app.config.topic(event);
        let records = read_records(topic, 1, Duration::from_secs(10)).await;
        assert_eq!(records.len(), 1, "{event}");
        assert_eq!(
            records[0].value,
            sample(event),
            "{event} arrives byte for byte"
        );
        assert_eq!(records[0].header("ce_type"), Some(*event));
        assert_eq!(records[0].header("ce_id"), body["id"].as_str());
    }
}

#[tokio::test]
async fn non_ascii_body_arrives_unchanged() {
    let app = spawn_app().await;
    let body = "{\"name\":\"Zoë Ñandú 学生\",\"email\":\"z@example.com\",\"phone\":\"+91 98\",\"courseId\":\"c1\",\"lastProgressOn\":\"2023-11-20T18:30Z\",\"x\":\"\\u00e9\"}"
        .as_bytes()
        .to_vec();

    let response = app
        .post_json(&app.hook_url("course.completed.50"), body.clone())
        .await;

    assert_eq!(response.status().as_u16(), 200);
    let topic = app.config.topic("course.completed.50");
    let records = read_records(topic, 1, Duration::from_secs(10)).await;
    assert_eq!(records[0].value, body);
    assert_eq!(records[0].key.as_deref(), Some(&b"z@example.com"[..]));
}
