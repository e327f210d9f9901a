//! Configuration reload: secrets rotate without a failed request; a bad file changes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookrelay::settings::AckMode;

use crate::helpers::{spawn_from_config, Options, TestConfig, TOKEN};

const NEW_TOKEN: &str = "rotated-token-91c2";

/// Sets the tagmango source's secrets in the configuration file to the given token files.
fn set_secrets(config: &mut TestConfig, files: &[&std::path::Path]) {
    let secrets = files
        .iter()
        .map(|file| format!("file:{}", file.display()))
        .collect();
    config.set_token_secrets(secrets);
}

fn token_file(config: &TestConfig, name: &str, token: &str) -> std::path::PathBuf {
    let path = config.file(name);
    std::fs::write(&path, token).unwrap();
    path
}

/// Posts with `token` until `stop`, and returns the statuses seen.
fn keep_posting(
    address: String,
    token: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<u16>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let mut statuses = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = format!("{{\"email\":\"r{n}-{token}@example.com\",\"courseId\":\"c\",\"lastProgressOn\":\"t\"}}");
                let status = client
                    .post(format!("http://{address}/hooks/tagmango/course.completed.50?token={token}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
                    .unwrap_or(0);
                statuses.push(status);
            }
            statuses
        })
    })
}

fn hangup(pid: u32) {
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) }, 0);
}

async fn status_with(address: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .post(format!(
            "http://{address}/hooks/tagmango/course.completed.50?token={token}"
        ))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"email\":\"probe-{}@example.com\"}}",
            uuid::Uuid::now_v7()
        ))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn wait_for_status(address: &str, token: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_with(address, token).await != status {
        assert!(
            Instant::now() < deadline,
            "token {token} never got {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rotating_a_secret_with_sighup_fails_no_request_and_a_bad_file_changes_nothing() {
    let mut config = TestConfig::new(&Options::default());
    let old_file = config.file("tagmango.token");
    let new_file = token_file(&config, "tagmango.new.token", NEW_TOKEN);
    let (mut relay, address) = crate::helpers::start_relay_process(&mut config).await;
    assert_eq!(status_with(&address, NEW_TOKEN).await, 401);

    // Step 1: both secrets, while requests with the old one keep flowing.
    let stop_old = Arc::new(AtomicBool::new(false));
    let old_stream = keep_posting(address.clone(), TOKEN, stop_old.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    set_secrets(&mut config, &[&old_file, &new_file]);
    hangup(relay.id());
    wait_for_status(&address, NEW_TOKEN, 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Step 2: only the new secret, while requests with the new one keep flowing.
    let stop_new = Arc::new(AtomicBool::new(false));
    let new_stream = keep_posting(address.clone(), NEW_TOKEN, stop_new.clone());
    stop_old.store(true, Ordering::Relaxed);
    let old_statuses = old_stream.join().unwrap();
    set_secrets(&mut config, &[&new_file]);
    hangup(relay.id());
    wait_for_status(&address, TOKEN, 401).await;

    // A file that does not pass the checks (an unknown key): refused, the relay keeps its
    // configuration.
    let good = std::fs::read_to_string(&config.path).unwrap();
    std::fs::write(
        &config.path,
        good.replace("[kafka]", "[kafka]\nbrokerz = 1"),
    )
    .unwrap();
    hangup(relay.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_new.store(true, Ordering::Relaxed);
    let new_statuses = new_stream.join().unwrap();
    assert_eq!(status_with(&address, NEW_TOKEN).await, 200);
    let admin = config.settings.server.admin_listen;
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    relay.kill().unwrap();
    relay.wait().unwrap();

    assert!(
        old_statuses.len() > 5 && new_statuses.len() > 5,
        "requests flowed during the reloads"
    );
    assert!(
        old_statuses.iter().all(|&status| status == 200),
        "old token: {old_statuses:?}"
    );
    assert!(
        new_statuses.iter().all(|&status| status == 200),
        "new token: {new_statuses:?}"
    );
    assert!(
        metrics.contains("hookrelay_config_reload_success 0"),
        "{metrics}"
    );
}

/// While every source acknowledges at the spool the producer's threads run at background
/// priority; a source moved to `broker` needs them at full priority, which only a restart gives.
#[tokio::test]
async fn a_source_leaving_the_spool_is_reported_as_needing_a_restart() {
    let mut app = spawn_from_config(TestConfig::new(&Options {
        ack: AckMode::Spool,
        ..Options::default()
    }))
    .await;
    app.config.tagmango().ack = Some(AckMode::Broker);
    app.config.save();
    let outcome = app.reload().await;
    assert_eq!(outcome["status"], "reloaded");
    assert_eq!(
        outcome["restart_required"],
        serde_json::json!(["sources.tagmango.ack"])
    );
    // It is served meanwhile, in broker mode.
    app.accept_unique("course.completed.50").await;
}

#[tokio::test]
async fn reload_over_http_reports_what_needs_a_restart_and_refuses_a_bad_file() {
    let mut app = spawn_from_config(TestConfig::new(&Options::default())).await;
    let path = app.config.path.clone();
    app.config.settings.server.body_timeout_ms = Duration::from_secs(3);
    app.config.settings.server.workers = 3;
    app.config.save();
    let reload = || {
        app.client
            .post(format!("{}/-/reload", app.admin_address))
            .send()
    };

    let response = reload().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let outcome: serde_json::Value = response.json().await.unwrap();
    assert_eq!(outcome["status"], "reloaded");
    assert_eq!(
        outcome["restart_required"],
        serde_json::json!(["server.workers"])
    );

    std::fs::write(&path, "[sources]\n").unwrap();
    let response = reload().await.unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let outcome: serde_json::Value = response.json().await.unwrap();
    assert_eq!(outcome["status"], "failed");
    assert!(
        outcome["reason"]
            .as_str()
            .unwrap()
            .contains("no source is configured"),
        "{outcome}"
    );
    app.accept_unique("course.completed.50").await;
}
