//! JSON Schema validation per event (`schema`, `schema_mode`) with the schemas shipped in
//! `config/schemas/tagmango/`.

use hookrelay::settings::SchemaMode;

use crate::helpers::{
    assert_problem, spawn_from_config, use_schemas, Options, TestApp, TestConfig, TAGMANGO_SAMPLES,
};

const WITHOUT_EMAIL: &str = r#"{"name":"Priya Secretname","phone":919876543210,"courseId":"634fc35ddaf58580e2418c40","lastProgressOn":"2023-11-20T18:30Z"}"#;

async fn spawn_with_schemas(mode: SchemaMode) -> TestApp {
    let mut config = TestConfig::new(&Options::default());
    use_schemas(config.tagmango(), mode);
    spawn_from_config(config).await
}

async fn metrics(app: &TestApp) -> String {
    app.metrics().await
}

#[tokio::test]
async fn every_tagmango_sample_passes_its_schema_in_enforce_mode() {
    let app = spawn_with_schemas(SchemaMode::Enforce).await;

    for event in TAGMANGO_SAMPLES {
        let response = app.post_sample(event).await;

        assert_eq!(response.status().as_u16(), 200, "{event}");
    }
    assert!(metrics(&app)
        .await
        .contains("hookrelay_schema_violations_total{source=\"tagmango\"} 0"));
}

#[tokio::test]
async fn a_body_missing_a_required_field_gets_422_naming_the_pointer_and_no_value() {
    let app = spawn_with_schemas(SchemaMode::Enforce).await;

    let response = app
        .post_json(
            &app.hook_url("course.completed.50"),
            WITHOUT_EMAIL.as_bytes().to_vec(),
        )
        .await;

    let problem = assert_problem(response, 422, "schema_violation").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("/email"), "{detail}");
    for value in ["Secretname", "919876543210", "634fc35d"] {
        assert!(!detail.contains(value), "{detail}");
    }
    assert!(metrics(&app)
        .await
        .contains("hookrelay_schema_violations_total{source=\"tagmango\"} 1"));
}

#[tokio::test]
async fn observe_mode_accepts_a_violating_body_and_counts_it() {
    let app = spawn_with_schemas(SchemaMode::Observe).await;

    let response = app
        .post_json(
            &app.hook_url("course.completed.50"),
            WITHOUT_EMAIL.as_bytes().to_vec(),
        )
        .await;

    assert_eq!(response.status().as_u16(), 200);
    let metrics = metrics(&app).await;
    assert!(
        metrics.contains("hookrelay_schema_violations_total{source=\"tagmango\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("hookrelay_events_accepted_total{source=\"tagmango\"} 1"));
}
