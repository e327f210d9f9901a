//! The senders' own libraries against a running relay: `tests/interop/run.py` signs with the
//! Standard Webhooks, Svix, Slack, Stripe, GitHub (@octokit/webhooks-methods) and Shopify
//! libraries, asks each library's verifier about valid and tampered requests, requires the relay
//! to agree, and reads the records back with confluent-kafka and the CloudEvents Kafka binding.
//! `scripts/test` installs the pinned libraries (`ensure_interop` in `scripts/lib.sh`).

use std::process::Command;

use crate::auth::spawn_signed_relay;
use crate::helpers::{broker, repo_path};

#[tokio::test]
async fn the_senders_own_libraries_and_the_relay_agree() {
    let (Ok(python), Ok(node_dir)) = (
        std::env::var("INTEROP_PYTHON"),
        std::env::var("INTEROP_NODE_DIR"),
    ) else {
        panic!(
            "the interop test needs the senders' libraries: run scripts/test, which installs them \
             (or set INTEROP_PYTHON and INTEROP_NODE_DIR as scripts/lib.sh ensure_interop does)"
        );
    };
    let relay = spawn_signed_relay().await;
    let output = tokio::task::spawn_blocking({
        let (url, prefix) = (relay.app.address.clone(), relay.prefix.clone());
        move || {
            Command::new(python)
                .arg(repo_path("tests/interop/run.py"))
                .env("RELAY_URL", url)
                .env("KAFKA_BROKERS", &broker().address)
                .env("TOPIC_PREFIX", prefix)
                .env("SECRET", crate::auth::NEW_SECRET)
                .env("WHSEC", crate::auth::NEW_WHSEC)
                .env("INTEROP_NODE_DIR", node_dir)
                .output()
                .expect("python runs")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the relay and a sender's library disagree:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}
