//! Per-source IP allowlists (`allow_ips`), and `X-Forwarded-For` believed only from
//! `server.trusted_proxies`. The tests connect from 127.0.0.1.

use crate::helpers::{assert_problem, sample, spawn_from_config, Options, TestApp, TestConfig};

async fn spawn_allowing(allow_ips: &[&str], trusted_proxies: &[&str]) -> TestApp {
    let owned = |list: &[&str]| list.iter().map(|item| (*item).to_owned()).collect();
    let mut config = TestConfig::new(&Options::default());
    config.tagmango().allow_ips = Some(owned(allow_ips));
    config.settings.server.trusted_proxies = owned(trusted_proxies);
    spawn_from_config(config).await
}

async fn post_forwarded_for(app: &TestApp, url: &str, forwarded_for: &str) -> reqwest::Response {
    app.client
        .post(url)
        .header("content-type", "application/json")
        .header("x-forwarded-for", forwarded_for)
        .body(sample("course.completed.50"))
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn a_client_inside_the_allowlist_is_accepted() {
    let app = spawn_allowing(&["10.0.0.0/8", "127.0.0.0/8", "2001:db8::/32"], &[]).await;

    let response = app.post_sample("course.completed.50").await;

    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_client_outside_the_allowlist_gets_403_before_its_credentials_are_checked() {
    let app = spawn_allowing(&["10.0.0.0/8", "203.0.113.7"], &[]).await;
    let wrong_token = format!(
        "{}/hooks/tagmango/course.completed.50?token=wrong",
        app.address
    );

    let refused = app.post_sample("course.completed.50").await;
    let refused_without_credentials = app
        .post_json(&wrong_token, sample("course.completed.50"))
        .await;

    assert_eq!(
        refused.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..]),
        "an early refusal closes the connection"
    );
    assert_problem(refused, 403, "forbidden_ip").await;
    assert_problem(refused_without_credentials, 403, "forbidden_ip").await;
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let app = spawn_allowing(&["203.0.113.7"], &["127.0.0.1/32", "10.0.0.0/8"]).await;
    let url = app.hook_url("course.completed.50");

    let allowed = post_forwarded_for(&app, &url, "203.0.113.7, 10.1.2.3").await;
    let spoofed_on_the_left = post_forwarded_for(&app, &url, "203.0.113.7, 198.51.100.9").await;

    assert_eq!(allowed.status().as_u16(), 200);
    assert_problem(spoofed_on_the_left, 403, "forbidden_ip").await;
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_allowing(&["203.0.113.7"], &[]).await;
    let url = app.hook_url("course.completed.50");

    let spoofed = post_forwarded_for(&app, &url, "203.0.113.7").await;

    assert_problem(spoofed, 403, "forbidden_ip").await;
}
