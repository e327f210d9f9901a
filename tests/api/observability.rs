//! What an operator sees: exact counters, a scrape promtool accepts, and dashboards and alerts
//! that only query metrics the relay exports.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{repo_path, sample, spawn_app, TOKEN};

fn promtool() -> Command {
    if Command::new("promtool").arg("--version").output().is_err() {
        panic!(
            "promtool is not installed: run scripts/test (it installs Debian's prometheus \
             package) or `apt-get install prometheus`"
        );
    }
    Command::new("promtool")
}

async fn scrape(app: &crate::helpers::TestApp) -> String {
    app.metrics().await
}

/// The value of one series, by its exact text (`name{labels}`).
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} is not in the scrape:\n{scrape}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn counters_equal_the_requests_sent_per_source_and_status() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.accept_unique("course.completed.50").await;
    }
    app.accept_sample("course.completed.50").await;
    app.accept_sample("course.completed.50").await; // duplicate
    for _ in 0..2 {
        assert_eq!(app.post_with_wrong_token().await.status().as_u16(), 401);
    }
    let bad = app
        .post_json(&app.hook_url("course.completed.50"), b"{nope".to_vec())
        .await;
    assert_eq!(bad.status().as_u16(), 400);
    let unknown = format!("{}/hooks/nosuch?token={TOKEN}", app.address);
    assert_eq!(
        app.post_json(&unknown, b"{}".to_vec())
            .await
            .status()
            .as_u16(),
        404
    );

    let metrics = scrape(&app).await;

    let series = |name: &str| value(&metrics, name);
    assert_eq!(
        series("hookrelay_http_requests_total{source=\"tagmango\",status=\"200\"}"),
        5.0
    );
    assert_eq!(
        series("hookrelay_http_requests_total{source=\"tagmango\",status=\"401\"}"),
        2.0
    );
    assert_eq!(
        series("hookrelay_http_requests_total{source=\"tagmango\",status=\"400\"}"),
        1.0
    );
    assert_eq!(
        series("hookrelay_http_requests_total{source=\"_unknown\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        series("hookrelay_events_accepted_total{source=\"tagmango\"}"),
        4.0
    );
    assert_eq!(
        series("hookrelay_duplicates_total{source=\"tagmango\"}"),
        1.0
    );
    assert_eq!(
        series("hookrelay_kafka_records_delivered_total{source=\"tagmango\"}"),
        4.0
    );
    assert_eq!(
        series("hookrelay_kafka_records_failed_total{source=\"tagmango\"}"),
        0.0
    );
    assert_eq!(
        series("hookrelay_rejections_total{reason=\"invalid_credentials\",source=\"tagmango\"}"),
        2.0
    );
    assert_eq!(
        series("hookrelay_rejections_total{reason=\"invalid_json\",source=\"tagmango\"}"),
        1.0
    );
    assert_eq!(
        series("hookrelay_rejections_total{reason=\"unknown_source\",source=\"_unknown\"}"),
        1.0
    );
    assert_eq!(
        series("hookrelay_http_request_duration_seconds_count{source=\"tagmango\"}"),
        8.0
    );
    assert_eq!(
        series("hookrelay_http_request_body_bytes_count{source=\"tagmango\"}"),
        6.0
    );
    assert_eq!(series("hookrelay_http_requests_in_flight"), 0.0);
    assert_eq!(series("hookrelay_ready"), 1.0);
    assert_eq!(
        series(&format!(
            "hookrelay_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
}

#[tokio::test]
async fn promtool_finds_no_problem_in_a_scrape_after_traffic() {
    let app = spawn_app().await;
    app.accept_sample("course.completed.50").await;
    app.post_with_wrong_token().await;
    let metrics = scrape(&app).await;

    let mut check = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();

    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool check metrics: {report}");
    assert!(report.trim().is_empty(), "promtool check metrics: {report}");
}

#[test]
fn alert_rules_pass_promtool() {
    let output = promtool()
        .args(["check", "rules"])
        .arg(repo_path("config/prometheus/alerts.yml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `hookrelay_...` names in a text, without histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("hookrelay_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let app = spawn_app().await;
    // Labelled series appear once something happened: one accepted and one refused request.
    app.accept_unique("course.completed.50").await;
    app.post_with_wrong_token().await;
    let exported: BTreeSet<String> = scrape(&app)
        .await
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    // Series created on first use (per broker) are declared in the metrics module even when
    // no statistics arrived yet.
    let declared = std::fs::read_to_string(repo_path("src/metrics.rs")).unwrap();
    let declared = metric_names(&declared);

    for file in [
        "config/grafana/dashboards/hookrelay.json",
        "config/prometheus/alerts.yml",
    ] {
        let queried = metric_names(&std::fs::read_to_string(repo_path(file)).unwrap());
        assert!(!queried.is_empty(), "{file} queries hookrelay metrics");
        for name in queried {
            assert!(
                exported.contains(&name)
                    || (declared.contains(&name) && name.starts_with("hookrelay_kafka_broker_")),
                "{file} queries {name}, which the relay does not export"
            );
        }
    }
}

/// The OpenAPI description (`config/openapi.json`) matches the real routes: every status the
/// relay answers in a scripted run is documented for its route, with the documented media type,
/// and every documented route exists.
#[tokio::test]
async fn the_openapi_description_matches_the_routes_and_status_codes() {
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path("config/openapi.json")).unwrap())
            .unwrap();
    let mut config = crate::helpers::TestConfig::new(&crate::helpers::Options {
        max_body_bytes: 1024,
        ..crate::helpers::Options::default()
    });
    config.tagmango().rate_limit = Some(hookrelay::settings::RateLimitSettings {
        per_second: 1,
        burst: Some(100),
    });
    let app = crate::helpers::spawn_from_config(config).await;
    let event_url = app.hook_url("course.completed.50");
    let no_event_url = format!("{}/hooks/tagmango?token={TOKEN}", app.address);
    let json = |body: &[u8]| body.to_vec();
    let mut observed: Vec<(&str, &str, reqwest::Response)> = vec![
        (
            "/hooks/{source}/{event}",
            "post",
            app.post_unique("course.completed.50").await,
        ),
        (
            "/hooks/{source}/{event}",
            "post",
            app.post_json(&event_url, json(b"{")).await,
        ),
        (
            "/hooks/{source}/{event}",
            "post",
            app.post_json(
                &event_url.replace(TOKEN, "x"),
                sample("course.completed.50"),
            )
            .await,
        ),
        (
            "/hooks/{source}/{event}",
            "post",
            app.post_json(&format!("{}/hooks/nosuch/e", app.address), json(b"{}"))
                .await,
        ),
        (
            "/hooks/{source}/{event}",
            "post",
            app.post_json(&event_url, vec![b' '; 2048]).await,
        ),
        (
            "/hooks/{source}",
            "post",
            app.post_json(&no_event_url, json(b"{}")).await,
        ),
    ];
    observed.push((
        "/hooks/{source}/{event}",
        "post",
        app.client
            .post(&event_url)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap(),
    ));
    observed.push((
        "/hooks/{source}/{event}",
        "post",
        app.client.get(&event_url).send().await.unwrap(),
    ));
    for (path, method) in [("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get")] {
        let response = app.admin_get(path).await;
        observed.push((path, method, response));
    }

    let reload = app
        .client
        .post(format!("{}/-/reload", app.admin_address))
        .send()
        .await
        .unwrap();
    observed.push(("/-/reload", "post", reload));

    let documented_routes: std::collections::BTreeSet<String> =
        spec["paths"].as_object().unwrap().keys().cloned().collect();
    let exercised_routes: std::collections::BTreeSet<String> = observed
        .iter()
        .map(|(path, _, _)| path.to_string())
        .collect();
    assert_eq!(
        documented_routes, exercised_routes,
        "every documented route is exercised"
    );
    let mut statuses = std::collections::BTreeSet::new();
    for (path, method, response) in observed {
        let status = response.status().as_u16().to_string();
        let media = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned();
        let documented = &spec["paths"][path][method]["responses"][&status];
        // 405 is answered on the hook paths for any other method; it is documented under post.
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which config/openapi.json does not document"
        );
        if let Some(content) = documented["content"].as_object() {
            assert!(
                content.contains_key(&media),
                "{method} {path} {status} answered {media}, documented {:?}",
                content.keys()
            );
        }
        statuses.insert(status);
    }
    for status in ["200", "400", "401", "404", "405", "413", "415"] {
        assert!(
            statuses.contains(status),
            "the scripted run produced {status}"
        );
    }
}
