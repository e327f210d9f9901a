//! `hookrelay register` against a local fake of TagMango's integration API: the documented call
//! for each event, one line per event, secrets never printed, and hook URLs that deliver.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hookrelay::settings::{RegisterSettings, TAGMANGO_REGISTER_API_URL};

use crate::helpers::{
    free_port, read_records, sample, spawn_app_with, Options, TestConfig, TAGMANGO_SAMPLES, TOKEN,
};

const API_KEY: &str = "tm-api-key-5c1e9b";
pub const API_PATH: &str = "/api/v1/integration/webhook/webhook";

/// One call the fake API received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: serde_json::Value,
}

/// A stand-in for the registration API: records every call and answers with the given
/// statuses in turn (the last one repeats). Its answers echo the request body, as an API that
/// returns the created hook would, so that masking is put to the test.
pub struct FakeApi {
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    server: actix_web::dev::ServerHandle,
}

impl FakeApi {
    pub fn start(statuses: &'static [u16]) -> FakeApi {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{API_PATH}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            let recorded = recorded.clone();
            App::new().default_service(web::to(move |request: HttpRequest, body: web::Bytes| {
                let recorded = recorded.clone();
                async move {
                    let mut calls = recorded.lock().unwrap();
                    let status = statuses[calls.len().min(statuses.len() - 1)];
                    calls.push(Call {
                        method: request.method().to_string(),
                        path: request.uri().to_string(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|(name, value)| {
                                (name.to_string(), value.to_str().unwrap_or("").to_owned())
                            })
                            .collect(),
                        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                    });
                    let echoed = String::from_utf8_lossy(&body).into_owned();
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .content_type("application/json")
                        .body(format!("{{\"status\":{status},\"request\":{echoed}}}"))
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeApi {
            url,
            calls,
            server: handle,
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

/// A test configuration whose TagMango source registers at `api_url`.
fn config_registering_at(api_url: &str) -> TestConfig {
    with_register("env:HOOKRELAY_TEST_API_KEY", api_url)
}

/// A test configuration with `register = { api_key, api_url }` on the TagMango source.
fn with_register(api_key: &str, api_url: &str) -> TestConfig {
    let mut config = TestConfig::new(&Options::default());
    config.tagmango().register = Some(RegisterSettings {
        api_key: api_key.to_owned(),
        api_url: api_url.to_owned(),
    });
    config.save();
    config
}

/// Runs `hookrelay register` off the async runtime (the fake API answers on it).
async fn register(config: &TestConfig, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    command
        .args(["register", "--config"])
        .arg(&config.path)
        .args(["--source", "tagmango"])
        .args(args)
        .env("HOOKRELAY_TEST_API_KEY", API_KEY);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_no_secret(output: &Output) {
    let (stdout, stderr) = text(output);
    for secret in [TOKEN, API_KEY] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed:\n{stdout}\n{stderr}"
        );
    }
}

#[tokio::test]
async fn register_makes_the_documented_call_for_each_event_and_reports_each_outcome() {
    let api = FakeApi::start(&[201, 401, 500]);
    let config = config_registering_at(&api.url);
    let events = [
        "course.completed.50",
        "order.created.completed",
        "user.deleted",
    ];
    let output = register(
        &config,
        &[
            "--public-url",
            "https://relay.example.com/",
            "--event",
            events[0],
            "--event",
            events[1],
            "--event",
            events[2],
            "--course",
            "64f1c0ffee",
        ],
    )
    .await;
    let (stdout, stderr) = text(&output);

    let calls = api.calls();
    assert_eq!(calls.len(), 3, "one call per event, a failure stops none");
    for (call, event) in calls.iter().zip(events) {
        assert_eq!(call.method, "POST");
        assert_eq!(call.path, API_PATH);
        assert_eq!(call.headers["accept"], "application/json");
        assert_eq!(call.headers["content-type"], "application/json");
        assert_eq!(call.headers["x-api-key"], API_KEY);
        assert_eq!(
            call.body,
            serde_json::json!({
                "hookUrl": format!("https://relay.example.com/hooks/tagmango/{event}?token={TOKEN}"),
                "event": event,
                "course": "64f1c0ffee",
            })
        );
    }
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("course.completed.50 201 ok "),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("order.created.completed 401 FAILED "),
        "{stdout}"
    );
    assert!(lines[2].starts_with("user.deleted 500 FAILED "), "{stdout}");
    // The API's answer is shown, with the token it echoes hidden.
    assert!(lines[0].contains("token=<token hidden>"), "{stdout}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 of 3 events not registered"), "{stderr}");
    assert_no_secret(&output);
}

#[tokio::test]
async fn registered_hook_urls_deliver_every_event_to_kafka() {
    let api = FakeApi::start(&[200]);
    let app = spawn_app_with(Options::default()).await;
    // The relay under test, registered at the fake API with its own address as the public URL
    // (same source and token as the relay's configuration).
    let registering = config_registering_at(&api.url);
    let output = register(
        &registering,
        &["--public-url", &app.address, "--allow-http"],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), TAGMANGO_SAMPLES.len(), "{stdout}");
    assert_no_secret(&output);

    let calls = api.calls();
    let mut registered: Vec<String> = calls
        .iter()
        .map(|call| call.body["event"].as_str().unwrap().to_owned())
        .collect();
    registered.sort();
    let mut expected: Vec<String> = TAGMANGO_SAMPLES.iter().map(|e| e.to_string()).collect();
    expected.sort();
    assert_eq!(registered, expected, "every event of the source's list");

    // Each hook URL as TagMango would use it: the sample body, no header but content-type.
    for call in &calls {
        let event = call.body["event"].as_str().unwrap();
        let hook_url = call.body["hookUrl"].as_str().unwrap();
        let response = app.post_json(hook_url, sample(event)).await;
        assert_eq!(response.status(), 200, "{event} at {hook_url}");
    }
    for event in TAGMANGO_SAMPLES {
        let records = read_records(app.config.topic(event), 1, Duration::from_secs(10)).await;
        assert_eq!(records.len(), 1, "{event} in Kafka");
        assert_eq!(records[0].value, sample(event), "{event}: the raw bytes");
    }
}

#[tokio::test]
async fn an_unreachable_api_is_named_for_every_event() {
    let closed = format!("http://127.0.0.1:{}{API_PATH}", free_port());
    let config = config_registering_at(&closed);
    let output = register(
        &config,
        &[
            "--public-url",
            "https://relay.example.com",
            "-e",
            "course.completed.50",
            "-e",
            "user.deleted",
        ],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, event) in lines.iter().zip(["course.completed.50", "user.deleted"]) {
        assert!(
            line.starts_with(&format!("{event} - FAILED cannot reach {closed}: ")),
            "{line}"
        );
        assert!(line.to_lowercase().contains("connection refused"), "{line}");
    }
    assert_no_secret(&output);
}

#[tokio::test]
async fn register_refuses_plain_http_and_its_dry_run_calls_nothing_and_hides_secrets() {
    let api = FakeApi::start(&[200]);
    let config = config_registering_at(&api.url);

    let plain = register(&config, &["--public-url", "http://relay.example.com"]).await;
    let (_, stderr) = text(&plain);
    assert_eq!(plain.status.code(), Some(2));
    assert!(stderr.contains("is not https://"), "{stderr}");

    let unknown = register(
        &config,
        &[
            "--public-url",
            "https://relay.example.com",
            "-e",
            "course.started",
        ],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown)
        .1
        .contains("\"course.started\" is not in sources.tagmango.events"));

    let dry = register(
        &config,
        &[
            "--public-url",
            "https://relay.example.com",
            "-e",
            "user.deleted",
            "--dry-run",
        ],
    )
    .await;
    let (stdout, _) = text(&dry);
    assert_eq!(dry.status.code(), Some(0));
    assert!(
        stdout.contains("-H 'x-api-key: <api key hidden>'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"hookUrl\":\"https://relay.example.com/hooks/tagmango/user.deleted?token=<token hidden>\""),
        "{stdout}"
    );
    assert!(stdout.contains(&api.url), "{stdout}");
    assert_no_secret(&dry);

    let shown = register(
        &config,
        &[
            "--public-url",
            "https://relay.example.com",
            "-e",
            "user.deleted",
            "--dry-run",
            "--show-secrets",
        ],
    )
    .await;
    let (stdout, _) = text(&shown);
    assert!(
        stdout.contains(&format!("x-api-key: {API_KEY}")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("?token={TOKEN}")), "{stdout}");
    assert!(api.calls().is_empty(), "a dry run calls nothing");

    let two_filters = register(
        &config,
        &[
            "--public-url",
            "https://relay.example.com",
            "--course",
            "1",
            "--mango",
            "2",
        ],
    )
    .await;
    assert_eq!(
        two_filters.status.code(),
        Some(2),
        "--course and --mango exclude each other"
    );

    // An API key no header can carry is a configuration problem, found before any call.
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    command
        .args(["register", "--config"])
        .arg(&config.path)
        .args([
            "--source",
            "tagmango",
            "--public-url",
            "https://relay.example.com",
        ])
        .env("HOOKRELAY_TEST_API_KEY", "line\nbreak");
    let broken_key = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let (_, stderr) = text(&broken_key);
    assert_eq!(broken_key.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("sources.tagmango.register.api_key: the key holds a line break"),
        "{stderr}"
    );
    assert!(api.calls().is_empty(), "nothing was sent");
}

#[test]
fn check_config_refuses_register_settings_it_cannot_use() {
    let cases = [
        (
            ("literal-key", TAGMANGO_REGISTER_API_URL),
            "sources.tagmango.register.api_key: a secret must be written as env:NAME or file:/path",
        ),
        (
            ("env:K", "ftp://example.com"),
            "sources.tagmango.register.api_url: ftp is not an HTTP(S) URL",
        ),
    ];
    for ((api_key, api_url), expected) in cases {
        let config = with_register(api_key, api_url);
        let output = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["check-config", "--config"])
            .arg(&config.path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
