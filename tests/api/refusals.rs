//! Every refusal answers with its status and a problem-details body with a stable code.

use std::time::{Duration, Instant};

use crate::helpers::{
    assert_problem, raw_exchange, sample, spawn_app, spawn_app_with, status_of, Options, TOKEN,
};

#[tokio::test]
async fn unknown_source_gets_404() {
    let app = spawn_app().await;
    let url = format!(
        "{}/hooks/nosuch/course.completed.50?token={TOKEN}",
        app.address
    );
    assert_problem(
        app.post_json(&url, sample("course.completed.50")).await,
        404,
        "unknown_source",
    )
    .await;
}

#[tokio::test]
async fn event_outside_the_allowed_list_gets_404() {
    let app = spawn_app().await;
    let url = app.hook_url("course.started");
    assert_problem(
        app.post_json(&url, sample("course.completed.50")).await,
        404,
        "unknown_event",
    )
    .await;
    let url = format!("{}/hooks/tagmango?token={TOKEN}", app.address);
    assert_problem(
        app.post_json(&url, sample("course.completed.50")).await,
        404,
        "unknown_event",
    )
    .await;
}

#[tokio::test]
async fn paths_outside_hooks_get_404() {
    let app = spawn_app().await;
    let url = format!("{}/elsewhere", app.address);
    assert_problem(app.post_json(&url, b"{}".to_vec()).await, 404, "not_found").await;
}

#[tokio::test]
async fn other_methods_get_405_with_allow_post() {
    let app = spawn_app().await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = app
            .client
            .request(method.clone(), app.hook_url("course.completed.50"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok()),
            Some("POST"),
            "{method}"
        );
        assert_problem(response, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401() {
    let app = spawn_app().await;
    let base = format!("{}/hooks/tagmango/course.completed.50", app.address);
    let missing = app.post_json(&base, sample("course.completed.50")).await;
    assert_problem(missing, 401, "missing_credentials").await;
    let wrong = app
        .post_json(
            &format!("{base}?token=not-the-token"),
            sample("course.completed.50"),
        )
        .await;
    let body = assert_problem(wrong, 401, "invalid_credentials").await;
    assert!(
        !body.to_string().contains(TOKEN),
        "the answer never echoes a token"
    );
    let prefix = app
        .post_json(
            &format!("{base}?token={}", &TOKEN[..TOKEN.len() - 1]),
            sample("course.completed.50"),
        )
        .await;
    assert_problem(prefix, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn wrong_or_missing_content_type_gets_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.hook_url("course.completed.50"))
        .header("content-type", "text/plain")
        .body(sample("course.completed.50"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 415, "unsupported_media_type").await;
    let response = app
        .client
        .post(app.hook_url("course.completed.50"))
        .body(sample("course.completed.50"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 415, "unsupported_media_type").await;
    // Parameters do not matter, but for a charset other than UTF-8.
    let response = app
        .client
        .post(app.hook_url("course.completed.50"))
        .header("content-type", "application/json; charset=utf-8")
        .body(sample("course.completed.50"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn body_over_the_limit_by_content_length_gets_413() {
    let app = spawn_app_with(Options {
        max_body_bytes: 1024,
        ..Options::default()
    })
    .await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2000)).into_bytes();
    let response = app
        .post_json(&app.hook_url("course.completed.50"), big)
        .await;
    assert_problem(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn chunked_body_growing_past_the_limit_gets_413() {
    let app = spawn_app_with(Options {
        max_body_bytes: 1024,
        ..Options::default()
    })
    .await;
    let head = format!(
        "POST /hooks/tagmango/course.completed.50?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let chunk = format!("200\r\n{}\r\n", "x".repeat(0x200));
    let address = app.socket_address();
    let response = tokio::task::spawn_blocking(move || {
        let mut parts: Vec<(&[u8], Duration)> = vec![(head.as_bytes(), Duration::ZERO)];
        for _ in 0..4 {
            parts.push((chunk.as_bytes(), Duration::from_millis(20)));
        }
        raw_exchange(address, &parts, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert_eq!(status_of(&response), 413, "{response}");
    assert!(response.contains("payload_too_large"), "{response}");
}

#[tokio::test]
async fn trickled_body_gets_408_within_the_deadline() {
    let app = spawn_app_with(Options {
        body_timeout_ms: 1_000,
        ..Options::default()
    })
    .await;
    let body = sample("course.completed.50");
    let head = format!(
        "POST /hooks/tagmango/course.completed.50?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let address = app.socket_address();
    let started = Instant::now();
    let response = tokio::task::spawn_blocking(move || {
        let mut parts: Vec<(&[u8], Duration)> = vec![(head.as_bytes(), Duration::ZERO)];
        // One byte every 300 ms: the whole body would take about a minute.
        for byte in body.chunks(1) {
            parts.push((byte, Duration::from_millis(300)));
        }
        raw_exchange_until_answer(address, &parts)
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(response.contains("body_timeout"), "{response}");
    assert!(
        elapsed < Duration::from_millis(1_000 + 1_000),
        "answered after {elapsed:?}"
    );
}

/// Like `raw_exchange`, but stops sending as soon as the server has answered.
fn raw_exchange_until_answer(address: std::net::SocketAddr, parts: &[(&[u8], Duration)]) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_nonblocking(false).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let answer = std::thread::spawn(move || {
        reader
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        crate::helpers::read_response(&mut reader)
    });
    for (bytes, pause) in parts {
        if answer.is_finished() || stream.write_all(bytes).is_err() {
            break;
        }
        std::thread::sleep(*pause);
    }
    answer.join().unwrap()
}

#[tokio::test]
async fn malformed_json_gets_400() {
    let app = spawn_app().await;
    let url = app.hook_url("course.completed.50");
    for body in [
        &b"{\"name\": "[..],
        b"{\"a\":1,}",
        b"not json",
        b"{\"a\":1} trailing",
    ] {
        let response = app.post_json(&url, body.to_vec()).await;
        let problem = assert_problem(response, 400, "invalid_json").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("line"),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn invalid_utf8_gets_400() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            &app.hook_url("course.completed.50"),
            b"{\"name\":\"\xc3\x28\"}".to_vec(),
        )
        .await;
    let problem = assert_problem(response, 400, "invalid_json").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("UTF-8"),
        "{problem}"
    );
}

#[tokio::test]
async fn empty_body_gets_400() {
    let app = spawn_app().await;
    let response = app
        .post_json(&app.hook_url("course.completed.50"), Vec::new())
        .await;
    assert_problem(response, 400, "empty_body").await;
}

#[tokio::test]
async fn deep_nesting_gets_400_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let deep = "[".repeat(20_000).into_bytes();
    let response = app
        .post_json(&app.hook_url("course.completed.50"), deep)
        .await;
    assert_problem(response, 400, "invalid_json").await;
    let balanced = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes();
    let response = app
        .post_json(&app.hook_url("course.completed.50"), balanced)
        .await;
    assert!(
        response.status().as_u16() < 500,
        "deep but balanced JSON is answered"
    );

    let response = app.post_sample("course.completed.50").await;
    assert_eq!(response.status().as_u16(), 200);
}
