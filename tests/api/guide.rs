//! `docs/tagmango.md` as a creator follows it: every `sh` block, in order, in one shell, against a
//! real broker and a stand-in for TagMango's registration API. Only the guide's host names, ports
//! and certificate paths are swapped for the test's own, so a command that changes or breaks in
//! the code fails here until the guide says what the code does.

use std::process::Command;

use crate::helpers::{broker, free_port, repo_path, sample};
use crate::register::FakeApi;

/// The `sh` code blocks of a Markdown text, in order (fences may be indented, as in a list).
fn shell_blocks(markdown: &str) -> Vec<String> {
    enum State {
        Text,
        Shell(String),
        OtherBlock,
    }
    let mut blocks = Vec::new();
    let mut state = State::Text;
    for line in markdown.lines() {
        let line = line.trim_start();
        let fence = line.starts_with("```");
        state = match state {
            State::Text if fence && line.trim_start_matches('`').trim() == "sh" => {
                State::Shell(String::new())
            }
            State::Text if fence => State::OtherBlock,
            State::Text => State::Text,
            State::Shell(block) if fence => {
                blocks.push(block);
                State::Text
            }
            State::Shell(mut block) => {
                block.push_str(line);
                block.push('\n');
                State::Shell(block)
            }
            State::OtherBlock if fence => State::Text,
            State::OtherBlock => State::OtherBlock,
        };
    }
    blocks
}

/// The `events = [...]` list of `[sources.tagmango]` in the shipped configuration.
fn shipped_events() -> Vec<String> {
    let text = std::fs::read_to_string(repo_path("config/hookrelay.toml")).unwrap();
    let source = &text[text.find("[sources.tagmango]").unwrap()..];
    let open = source.find("events = [").unwrap() + "events = [".len();
    let close = open + source[open..].find(']').unwrap();
    source[open..close]
        .split(',')
        .map(|event| event.trim().trim_matches('"').to_owned())
        .filter(|event| !event.is_empty())
        .collect()
}

#[tokio::test]
async fn the_creators_guide_runs_as_written() {
    let guide = std::fs::read_to_string(repo_path("docs/tagmango.md")).unwrap();
    let blocks = shell_blocks(&guide);
    assert!(blocks.len() >= 9, "the guide's shell blocks: {blocks:?}");

    let api = FakeApi::start(&[201]);
    let work = tempfile::tempdir().unwrap();
    for shared in ["config", "samples"] {
        std::os::unix::fs::symlink(repo_path(shared), work.path().join(shared)).unwrap();
    }
    let tls = work.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let names = vec!["localhost".to_owned()];
    let pair = rcgen::generate_simple_self_signed(names).unwrap();
    std::fs::write(tls.join("fullchain.pem"), pair.cert.pem()).unwrap();
    std::fs::write(tls.join("privkey.pem"), pair.signing_key.serialize_pem()).unwrap();
    let (ingress, admin) = (free_port(), free_port());

    let public = format!("https://localhost:{ingress}");
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join(".tagmango-api-key"), "tm-key-from-your-dashboard").unwrap();
    let mut script =
        String::from("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    for block in &blocks {
        script.push_str(
            &block
                .replace("https://relay.example.com:8443", &public)
                .replace("0.0.0.0:8443", &format!("127.0.0.1:{ingress}"))
                .replace("127.0.0.1:9464", &format!("127.0.0.1:{admin}"))
                .replace("127.0.0.1:9092", &broker().address)
                .replace("/etc/hookrelay/tls/", &format!("{}/", tls.display())),
        );
    }
    let binaries = std::path::Path::new(env!("CARGO_BIN_EXE_hookrelay"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        binaries.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("timeout");
    command
        .args(["240", "bash", "-c", &script])
        .current_dir(work.path())
        .env("PATH", path)
        .env("HOME", &home)
        .env(
            "HOOKRELAY__SERVER__ADMIN_LISTEN",
            format!("127.0.0.1:{admin}"),
        )
        .env("HOOKRELAY__SOURCES__TAGMANGO__REGISTER__API_URL", &api.url)
        .env("CURL_CA_BUNDLE", tls.join("fullchain.pem"))
        .env_remove("RUST_LOG");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let log = std::fs::read_to_string(work.path().join("hookrelay.log")).unwrap_or_default();
    assert_eq!(
        output.status.code(),
        Some(0),
        "the guide failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- hookrelay.log\n{log}"
    );

    // Step 3: the dry run hides both secrets; then every shipped event is registered, with the
    // key and a hook URL on the public HTTPS address.
    assert!(
        stdout.contains("-H 'x-api-key: <api key hidden>'"),
        "{stdout}"
    );
    assert!(stdout.contains("?token=<token hidden>"), "{stdout}");
    let calls = api.calls();
    let registered: Vec<String> = calls
        .iter()
        .map(|call| call.body["event"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = shipped_events();
    expected.sort();
    assert_eq!(expected.len(), 17);
    assert_eq!(registered, expected, "every event, once, in name order");
    let token = calls[0].body["hookUrl"]
        .as_str()
        .unwrap()
        .rsplit_once("?token=")
        .unwrap()
        .1
        .to_owned();
    assert_eq!(token.len(), 48, "the guide's random token");
    for call in &calls {
        let event = call.body["event"].as_str().unwrap();
        assert_eq!(call.headers["x-api-key"], "tm-key-from-your-dashboard");
        assert_eq!(
            call.body["hookUrl"],
            format!("{public}/hooks/tagmango/{event}?token={token}")
        );
        assert!(
            stdout.contains(&format!("{event} 201 ok ")),
            "{event}: {stdout}"
        );
    }

    // Step 4: accepted over HTTPS with the answer the guide shows; the resend is a duplicate.
    let shown_answer = guide
        .lines()
        .find(|line| line.starts_with("{\"id\":"))
        .expect("the guide shows the answer");
    assert!(stdout.contains(shown_answer), "{shown_answer} in\n{stdout}");
    let duplicate = shown_answer.replace("accepted", "duplicate");
    assert!(stdout.contains(&duplicate), "{duplicate} in\n{stdout}");
    // The token was made once, kept for the next shell, readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let token_file = std::fs::metadata(home.join(".hookrelay-token")).unwrap();
    assert_eq!(token_file.permissions().mode() & 0o077, 0);

    // Step 5: the raw bytes in Kafka, keyed by the student's email.
    let body = String::from_utf8(sample("course.completed.50")).unwrap();
    assert!(stdout.contains(body.trim_end()), "the sample in\n{stdout}");
    assert!(stdout.contains("ce_type: course.completed.50"), "{stdout}");

    // Step 6: the metric line as the guide shows it.
    let shown_metric = guide
        .lines()
        .find(|line| line.starts_with("hookrelay_events_accepted_total{"))
        .expect("the guide shows the metric");
    assert!(stdout.contains(shown_metric), "{shown_metric} in\n{stdout}");

    // Step 7 ran `spool status` and `spool dead list`; the relay stopped cleanly (exit 0 above).
    assert!(!log.contains(&token), "the token in the relay's log");
    assert!(
        !stdout.contains("tm-key-from-your-dashboard"),
        "the API key printed"
    );
}

#[test]
fn shell_blocks_are_read_in_order_and_other_blocks_skipped() {
    let text = "a\n```sh\none\n  two\n```\n```text\nnot me\n```\n```sh\nthree\n```\n";
    assert_eq!(shell_blocks(text), ["one\ntwo\n", "three\n"]);
}
