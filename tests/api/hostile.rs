//! Hostile input: every odd body or request head gets its defined answer (docs/api.md, "Hostile
//! input"), never a crash, a stall, a secret or an internal error text.

use std::time::Duration;

use crate::helpers::{raw_exchange, spawn_app, status_of, TOKEN};

/// (what, body, content type, status, code)
type Case = (
    &'static str,
    Vec<u8>,
    Option<&'static str>,
    u16,
    Option<&'static str>,
);

fn cases() -> Vec<Case> {
    let json = Some("application/json");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    vec![
        (
            "invalid UTF-8",
            b"{\"a\":\"\xff\"}".to_vec(),
            json,
            400,
            Some("invalid_json"),
        ),
        (
            "lone surrogate",
            br#"{"a":"\ud800"}"#.to_vec(),
            json,
            400,
            Some("invalid_json"),
        ),
        (
            "duplicate keys",
            br#"{"email":"a@x","email":"b@x"}"#.to_vec(),
            json,
            200,
            None,
        ),
        (
            "10 000 levels deep",
            deep.into_bytes(),
            json,
            400,
            Some("invalid_json"),
        ),
        (
            "128 levels deep (one more than serde_json parses)",
            format!("{}{}", "[".repeat(128), "]".repeat(128)).into_bytes(),
            json,
            400,
            Some("invalid_json"),
        ),
        (
            "127 levels deep",
            format!("{}{}", "[".repeat(127), "]".repeat(127)).into_bytes(),
            json,
            200,
            None,
        ),
        ("top-level array", b"[1,2]".to_vec(), json, 200, None),
        ("top-level string", br#""x""#.to_vec(), json, 200, None),
        (
            "raw NUL byte in a string",
            b"{\"a\":\"\x00\"}".to_vec(),
            json,
            400,
            Some("invalid_json"),
        ),
        (
            "raw NUL byte after the value",
            b"{}\x00".to_vec(),
            json,
            400,
            Some("invalid_json"),
        ),
        (
            "escaped NUL",
            br#"{"a":"\u0000"}"#.to_vec(),
            json,
            200,
            None,
        ),
        (
            "huge exponent",
            br#"{"n":1e999999}"#.to_vec(),
            json,
            200,
            None,
        ),
        (
            "10 000-digit integer",
            format!("{{\"n\":{}}}", "9".repeat(10_000)).into_bytes(),
            json,
            200,
            None,
        ),
        ("empty body", Vec::new(), json, 400, Some("empty_body")),
        (
            "whitespace body",
            b"  \n".to_vec(),
            json,
            400,
            Some("empty_body"),
        ),
        (
            "two values",
            b"{} {}".to_vec(),
            json,
            400,
            Some("invalid_json"),
        ),
        (
            "missing content type",
            b"{}".to_vec(),
            None,
            415,
            Some("unsupported_media_type"),
        ),
        (
            "wrong content type",
            b"{}".to_vec(),
            Some("text/plain"),
            415,
            Some("unsupported_media_type"),
        ),
        (
            "content type with charset",
            b"{}".to_vec(),
            Some("application/json; charset=utf-8"),
            200,
            None,
        ),
        (
            "content type with a charset that is not UTF-8",
            b"{}".to_vec(),
            Some("application/json; charset=utf-16"),
            415,
            Some("unsupported_media_type"),
        ),
    ]
}

#[tokio::test]
async fn each_hostile_body_gets_its_defined_answer() {
    let app = spawn_app().await;
    for (what, body, content_type, status, code) in cases() {
        let mut request = app
            .client
            .post(app.hook_url("course.completed.50"))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let text = response.text().await.unwrap();
        if let Some(code) = code {
            let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(problem["code"], code, "{what}: {text}");
        }
        assert!(
            !text.contains(TOKEN) && !text.contains("panicked"),
            "{what}: {text}"
        );
    }
    // The relay still serves after all of them.
    app.accept_sample("course.completed.50").await;
}

fn request_head(extra_headers: &str) -> Vec<u8> {
    format!(
        "POST /hooks/tagmango/course.completed.50?token={TOKEN} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra_headers}content-length: 2\r\n\r\n{{}}"
    )
    .into_bytes()
}

#[tokio::test]
async fn oversized_request_heads_get_a_clean_4xx_without_a_hang() {
    let app = spawn_app().await;
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let giant = format!("x-giant: {}\r\n", "a".repeat(1024 * 1024));
    for (what, head) in [("150 headers", many), ("a 1 MiB header value", giant)] {
        let address = app.socket_address();
        let head = request_head(&head);
        let response = tokio::task::spawn_blocking(move || {
            raw_exchange(address, &[(&head, Duration::ZERO)], Duration::from_secs(5))
        })
        .await
        .unwrap();
        let status = status_of(&response);
        assert!((400..500).contains(&status), "{what}: {response}");
        assert!(!response.contains(TOKEN), "{what}");
    }
    app.accept_sample("course.completed.50").await;
}
