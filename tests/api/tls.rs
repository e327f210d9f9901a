//! HTTPS on the ingress (`server.tls`): events arrive over TLS and reach Kafka, and a reload to
//! renewed certificate files serves new connections without dropping the open ones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hookrelay::settings::TlsSettings;

use crate::helpers::{
    read_records, sample, spawn_from_config, Options, TestApp, TestConfig, TOKEN,
};

/// A self-signed certificate for `localhost` and 127.0.0.1, with its key, as PEM.
struct Identity {
    cert: String,
    key: String,
}

fn new_identity() -> Identity {
    identity_expiring(None)
}

/// As [`new_identity`], valid until `not_after` (Unix seconds) when given, else rcgen's default
/// (4096-01-01).
fn identity_expiring(not_after: Option<i64>) -> Identity {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    if let Some(not_after) = not_after {
        params.not_after =
            rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(not_after as u64);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Identity {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes `identity` to `cert.pem` and `key.pem` in `dir` (replacing what is there).
fn install(dir: &Path, identity: &Identity) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &identity.cert).unwrap();
    std::fs::write(&key, &identity.key).unwrap();
    (cert, key)
}

/// A relay serving HTTPS with `identity`, whose files are in `dir` (returned: to replace them).
async fn spawn_https_app(dir: &Path, identity: &Identity) -> (TestApp, PathBuf, PathBuf) {
    let (cert, key) = install(dir, identity);
    let mut config = TestConfig::new(&Options::default());
    config.settings.server.tls = Some(TlsSettings {
        cert: format!("file:{}", cert.display()),
        key: format!("file:{}", key.display()),
    });
    let app = spawn_from_config(config).await;
    (app, cert, key)
}

/// A client that trusts exactly the given certificates and reports the one it was served.
fn client_trusting(identities: &[&Identity]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .timeout(Duration::from_secs(10));
    for identity in identities {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(identity.cert.as_bytes()).unwrap(),
        );
    }
    builder.build().unwrap()
}

fn der_of(identity: &Identity) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(identity.cert.as_bytes())
        .unwrap()
        .to_vec()
}

/// A course-progress body of its own (its own event id).
fn progress(step: &str) -> Vec<u8> {
    format!(
        "{{\"email\":\"tls-{}@example.com\",\"courseId\":\"c{step}\",\"lastProgressOn\":\"2026-12-01T10:00Z\"}}",
        uuid::Uuid::now_v7().simple()
    )
    .into_bytes()
}

/// Posts `body` over HTTPS; returns the status and the certificate the server presented.
async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("HTTPS request answered");
    let served = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the server's certificate")
        .to_vec();
    (response.status().as_u16(), served)
}

#[tokio::test]
async fn events_sent_over_https_reach_kafka_and_a_renewed_certificate_serves_new_connections() {
    let files = tempfile::tempdir().unwrap();
    let renewed_until = now() + 90 * 86_400;
    let (first, second) = (new_identity(), identity_expiring(Some(renewed_until)));
    let (app, cert, key) = spawn_https_app(files.path(), &first).await;
    let port = app.socket_address().port();
    let url =
        |event: &str| format!("https://localhost:{port}/hooks/tagmango/{event}?token={TOKEN}");

    // Accepted over TLS, and the raw bytes are what Kafka holds.
    let old_client = client_trusting(&[&first]);
    let body = sample("course.completed.50");
    let (status, served) = post(&old_client, &url("course.completed.50"), body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(served, der_of(&first));
    let records = read_records(
        app.config.topic("course.completed.50"),
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value, body);

    // Plain HTTP on the TLS port gets no answer a sender could take for an acceptance.
    let plain = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/hooks/tagmango/course.completed.50?token={TOKEN}"
        ))
        .header("content-type", "application/json")
        .body(sample("course.completed.50"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP accepted on the HTTPS listener"
    );

    assert!(
        app.metrics()
            .await
            .contains("hookrelay_tls_certificate_expiry_timestamp_seconds 67090118400"),
        "the first certificate's expiry"
    );

    // Renewed files, then a reload: new connections get the new certificate ...
    install(files.path(), &second);
    let outcome = app.reload().await;
    assert_eq!(outcome["status"], "reloaded", "{outcome}");
    assert_eq!(
        outcome["restart_required"],
        serde_json::json!([]),
        "{outcome}"
    );
    let new_client = client_trusting(&[&first, &second]);
    let (status, served) = post(&new_client, &url("course.completed.50"), progress("75")).await;
    assert_eq!(status, 200);
    assert_eq!(served, der_of(&second), "a new connection after the reload");
    assert!(
        app.metrics().await.contains(&format!(
            "hookrelay_tls_certificate_expiry_timestamp_seconds {renewed_until}"
        )),
        "the renewed certificate's expiry"
    );
    // ... and a client that trusts only the old one can no longer connect anew,
    let error = client_trusting(&[&first])
        .post(url("course.completed.50"))
        .header("content-type", "application/json")
        .body(progress("100"))
        .send()
        .await
        .expect_err("the old certificate is no longer served");
    assert!(error.is_connect(), "{error:?}");
    // ... while the connection opened before the reload goes on with the old one.
    let (status, served) = post(&old_client, &url("course.completed.50"), progress("100")).await;
    assert_eq!(status, 200);
    assert_eq!(served, der_of(&first), "the open connection was kept");

    // A key that is not the certificate's is refused by the reload; the running one stays.
    let third = new_identity();
    std::fs::write(&cert, &third.cert).unwrap();
    std::fs::write(&key, &second.key).unwrap();
    let outcome = app.reload().await;
    assert_eq!(outcome["status"], "failed", "{outcome}");
    let reason = outcome["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("server.tls: the private key does not belong"),
        "{reason}"
    );
    let (status, served) = post(
        &client_trusting(&[&second]),
        &url("course.completed.50"),
        progress("25"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(served, der_of(&second));

    let delivered = read_records(
        app.config.topic("course.completed.50"),
        5,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(delivered.len(), 4, "every event answered 200 is in Kafka");
}

#[test]
fn check_config_refuses_unreadable_and_mismatched_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let (one, other) = (new_identity(), new_identity());
    let (cert, _) = install(dir.path(), &one);
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, &other.key).unwrap();
    let config = |cert: &str, key: &str| {
        let path = dir.path().join("hookrelay.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[server]
tls = {{ cert = "{cert}", key = "{key}" }}
[sources.tagmango]
auth = {{ type = "none" }}
"#
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let cert_ref = format!("file:{}", cert.display());

    let mismatched = config(&cert_ref, &format!("file:{}", other_key.display()));
    assert_eq!(mismatched.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&mismatched.stderr);
    assert!(
        stderr.contains("server.tls: the private key does not belong to the certificate"),
        "{stderr}"
    );

    let unreadable = config(&cert_ref, "file:/nonexistent/key.pem");
    assert_eq!(unreadable.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unreadable.stderr);
    assert!(stderr.contains("server.tls: key: cannot read"), "{stderr}");
    assert!(stderr.contains("/nonexistent/key.pem"), "{stderr}");

    let expiring = identity_expiring(Some(now() + 3 * 86_400 + 3_600));
    let (soon_cert, soon_key) = (dir.path().join("soon.pem"), dir.path().join("soon-key.pem"));
    std::fs::write(&soon_cert, &expiring.cert).unwrap();
    std::fs::write(&soon_key, &expiring.key).unwrap();
    let output = config(
        &format!("file:{}", soon_cert.display()),
        &format!("file:{}", soon_key.display()),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("warning: server.tls: the certificate expires at ")
            && stdout.contains(", in 3 days: renew it and reload"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let matching = config(
        &cert_ref,
        &format!("file:{}", dir.path().join("key.pem").display()),
    );
    let stdout = String::from_utf8_lossy(&matching.stdout);
    assert_eq!(
        matching.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&matching.stderr)
    );
    assert!(
        stdout.contains("tls: certificate valid until 4096-01-01T00:00:00Z")
            && !stdout.contains("warning"),
        "{stdout}"
    );
}

#[tokio::test]
async fn idle_connections_on_the_https_port_do_not_keep_senders_out() {
    let files = tempfile::tempdir().unwrap();
    let identity = new_identity();
    let (app, _, _) = spawn_https_app(files.path(), &identity).await;
    let address = app.socket_address();
    let url = format!(
        "https://localhost:{}/hooks/tagmango/course.completed.50?token={TOKEN}",
        address.port()
    );
    let (status, _) = post(&client_trusting(&[&identity]), &url, progress("first")).await;
    assert_eq!(status, 200, "serving");
    // More sockets that never start a handshake than actix-tls's default limit of handshakes in
    // progress (256 per worker, 2 workers here). Opened off the runtime, which runs the relay.
    let idle: Vec<std::net::TcpStream> = tokio::task::spawn_blocking(move || {
        (0..1200)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new sender's connection (a new client: no pooled connection).
    let (status, _) = post(&client_trusting(&[&identity]), &url, progress("idle")).await;
    assert_eq!(status, 200);
    // Answered before the idle sockets' handshake timeout (3 s) let it in: with actix-tls's
    // default limit (256 handshakes per worker, 2 workers) the sender gets in only once all but
    // 512 of the idle sockets have been closed. Fewer close by then (none on a quiet machine;
    // some where the host is loaded, as it is while Kafka nodes start beside the test) when the
    // limit no longer keeps the sender out.
    const DEFAULT_LIMIT: usize = 2 * 256;
    let closed = idle
        .iter()
        .filter(|socket| {
            socket.set_nonblocking(true).unwrap();
            matches!(std::io::Read::read(&mut &**socket, &mut [0u8; 1]), Ok(0))
        })
        .count();
    assert!(
        closed < idle.len() - DEFAULT_LIMIT,
        "the sender got in only after {closed} of {} idle sockets timed out",
        idle.len()
    );
}
